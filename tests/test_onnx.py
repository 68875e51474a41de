"""ONNX export and ONNX Runtime inference: parity with eager PyTorch, inpaint() through ONNX, pconv-export."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pconv_hf  # noqa: E402
from pconv_hf import OnnxInpainter, PConvUNet  # noqa: E402
from pconv_hf.cli.export import main  # noqa: E402
from pconv_hf.onnx import CONFIG_KEY, SIZE_MULTIPLE_KEY, export_onnx  # noqa: E402

TOLERANCE = 1e-4


def tiny_network(boundary_blend: bool) -> PConvUNet:
    """3 levels, 4 base channels, 32 px; BatchNorm statistics made non-trivial so the export must carry them."""
    torch.manual_seed(0)
    model = PConvUNet(layer_size=3, base_channels=4, sample_size=32, boundary_blend=boundary_blend)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["paper-last-layer", "boundary-blend"])
def exported(request, tmp_path_factory) -> tuple[PConvUNet, Path]:
    model = tiny_network(request.param)
    path = model.export_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return model, path


@pytest.fixture
def photo(astronaut) -> Image.Image:
    return Image.fromarray(astronaut).resize((203, 157))


@pytest.fixture
def hole() -> np.ndarray:
    """A user mask (255 = fill) with a rectangle and a slanted stroke, so edges are not all axis-aligned."""
    mask = np.zeros((157, 203), np.uint8)
    mask[40:90, 60:130] = 255
    for step in range(60):
        mask[95 + step // 2 : 99 + step // 2, 20 + 2 * step : 24 + 2 * step] = 255
    return mask


def test_onnx_runtime_matches_eager_pytorch(exported):
    model, path = exported
    network = pconv_hf.load_model(path, device="cpu")
    assert isinstance(network, OnnxInpainter)
    assert network.config == model.config and network.size_multiple == model.size_multiple == 1
    generator = torch.Generator().manual_seed(2)
    for height, width in ((32, 32), (64, 96), (37, 53), (1, 2)):  # any size: odd levels pad in the graph too
        image = torch.rand(2, 3, height, width, generator=generator)
        valid_mask = (torch.rand(2, 1, height, width, generator=generator) > 0.3).float()
        with torch.no_grad():
            expected = model(image, valid_mask)
        output = network(image, valid_mask)
        assert output.shape == expected.shape == (2, 3, height, width)
        assert (output - expected).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("strategy", ["native", "crop", "resize", "full"])
def test_inpaint_through_onnx_matches_pytorch_and_keeps_known_pixels(exported, photo, hole, strategy):
    model, path = exported
    network = pconv_hf.load_model(path, device="cpu")
    result = network.inpaint(photo, hole, strategy=strategy)
    expected = model.inpaint(photo, hole, strategy=strategy, dtype="float32")  # eager float32 vs ORT float32
    assert isinstance(result, Image.Image) and result.mode == photo.mode and result.size == photo.size
    result, expected, original = (np.asarray(im).astype(np.int16) for im in (result, expected, photo))
    assert np.abs(result - expected).max() <= 1  # rounding to 8 bits may flip one grey level
    assert np.array_equal(result[hole == 0], original[hole == 0])
    assert np.any(result[hole > 0] != original[hole > 0])


def test_float_arrays_through_onnx_match_pytorch(exported, astronaut, hole):
    model, path = exported
    image = (astronaut[:157, :203] / 255).astype(np.float32)
    result = pconv_hf.inpaint(image, hole, model=pconv_hf.load_model(path, device="cpu"))
    expected = pconv_hf.inpaint(image, hole, model=model, dtype="float32")
    assert result.dtype == np.float32 and np.abs(result - expected).max() < TOLERANCE
    assert np.array_equal(result[hole == 0], image[hole == 0])


def test_onnx_network_checks_its_inputs(exported, tmp_path):
    network = OnnxInpainter(exported[1], providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="only 0 \\(hole\\) and 1"):
        network(torch.rand(1, 3, 32, 32), torch.full((1, 1, 32, 32), 0.5))
    with pytest.raises(ValueError, match="expected image"):
        network(torch.rand(1, 3, 32, 32), torch.ones(1, 3, 32, 32))
    with pytest.raises(ValueError, match="dtype \\(autocast\\) needs a PyTorch model"):
        network.inpaint(np.zeros((32, 32, 3), np.uint8), np.ones((32, 32)), dtype=torch.bfloat16)


def test_an_export_without_the_size_multiple_key_needs_multiples(exported, tmp_path):
    """Exports written before any size worked lack ``pconv_hf.size_multiple``: their graphs need multiples of
    2**layer_size, so OnnxInpainter asks for them and inpaint() pads to them; it still fills like PyTorch."""
    import onnx

    model, path = exported
    old = onnx.load(path)
    kept = [entry for entry in old.metadata_props if entry.key != SIZE_MULTIPLE_KEY]
    assert len(kept) == len(old.metadata_props) - 1
    del old.metadata_props[:]
    old.metadata_props.extend(kept)
    onnx.save(old, tmp_path / "old.onnx")
    network = OnnxInpainter(tmp_path / "old.onnx", providers=["CPUExecutionProvider"])
    assert network.size_multiple == 8
    with pytest.raises(ValueError, match="multiples of 8 for this export"):
        network(torch.rand(1, 3, 36, 32), torch.ones(1, 1, 36, 32))
    photo = np.random.default_rng(0).integers(0, 256, (45, 61, 3), np.uint8)
    hole = np.zeros((45, 61), np.uint8)
    hole[10:30, 20:40] = 255
    result = network.inpaint(photo, hole)
    expected = model.inpaint(photo, hole, dtype="float32")
    difference = np.abs(result.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and np.array_equal(result[hole == 0], photo[hole == 0])


def test_load_model_refuses_what_is_not_a_pconv_export(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ValueError, match="no ONNX file"):
        pconv_hf.load_model(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        pconv_hf.load_model(garbage)
    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in ("x", "y"))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    foreign = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), foreign)
    with pytest.raises(ValueError, match=f"not a PConvUNet export \\(no '{CONFIG_KEY}' metadata"):
        pconv_hf.load_model(foreign)


@pytest.mark.parametrize(
    ("name", "opset", "message"),
    [
        ("model.onnx", 12, "opset must be an int >= 17"),
        ("model.onnx", "18", "opset must be"),
        ("model.onnx", 99, "opset 99 is newer than the installed onnx package knows"),
        ("model.pt", None, ".onnx"),
    ],
)
def test_export_refuses_bad_arguments(tmp_path, name, opset, message):
    with pytest.raises(ValueError, match=message):
        export_onnx(tiny_network(False), tmp_path / name, opset=opset)


def test_without_onnxruntime_the_package_imports_and_says_what_to_install(tmp_path):
    code = (
        "import sys\n"
        "for name in ('onnx', 'onnxruntime', 'onnxscript'): sys.modules[name] = None\n"
        "import pconv_hf\n"
        "try:\n"
        f"    pconv_hf.load_model({str(tmp_path / 'model.onnx')!r})\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pip install 'pconv_hf[onnx]'" in done.stdout


# --- pconv-export --------------------------------------------------------------------------------------------


def test_cli_exports_the_default_model(tmp_path, model_dir, capsys, monkeypatch):
    # The tiny model stands in for the bundled one, which takes minutes to export on a busy CPU.
    monkeypatch.setattr(pconv_hf, "DEFAULT_CHECKPOINT", model_dir)
    out = tmp_path / "exported" / "model.onnx"
    main([str(out), "--opset", "18"])
    assert f"Exported the bundled model ({model_dir.name}) to {out} (opset 18" in capsys.readouterr().out
    network = pconv_hf.load_model(out, device="cpu")
    assert network.config == PConvUNet.from_pretrained(model_dir).config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/no-such-model", "{tmp}/out.onnx"], "is not a directory"),
        (["{model}", "{tmp}/out.pt"], "must end in .onnx"),
        (["{tmp}/already.onnx", "{tmp}/out.onnx"], "is already an ONNX file"),
    ],
)
def test_cli_errors_are_one_line_and_exit_1(tmp_path, model_dir, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(tmp=tmp_path, model=model_dir) for arg in args])
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("pconv-export: error: ") and message in stderr
    assert not (tmp_path / "out.onnx").exists()


def test_console_script(tmp_path, model_dir):
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    executable = shutil.which("pconv-export", path=search_path)
    assert executable, "pconv-export is not installed: pip install -e . (--no-deps)"
    out = tmp_path / "model.onnx"
    done = subprocess.run([executable, str(model_dir), str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert OnnxInpainter(out, providers=["CPUExecutionProvider"]).config == PConvUNet.from_pretrained(model_dir).config
