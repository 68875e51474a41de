"""engine="auto": the engine chosen per CPU kind (/proc/cpuinfo faked), the fast paths against float32 eager, the
cached export, and the fallbacks when ONNX Runtime or the exporter is missing or the export fails."""

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from pconv_hf import engines, runtime
from pconv_hf.cli.inpaint import main as inpaint_cli
from pconv_hf.engines import EngineChoice, cached_onnx_path, choose_engine, cpu_kind, cpu_name, model_fingerprint
from pconv_hf.inpainting import inpaint

BF16_CPU = "fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16"
AVX2_CPU = "fpu sse2 avx avx2 fma"
MAX_PSNR_LOSS_DB = 0.05  # the engine's quality budget against float32 eager (issue 32)


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """Call with a flags line: /proc/cpuinfo then reads as that CPU's."""

    def use(flags: str) -> None:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Fake CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        monkeypatch.setattr(runtime, "CPUINFO", str(cpuinfo))
        runtime._cpu_flags.cache_clear()

    yield use
    runtime._cpu_flags.cache_clear()


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    """Exports go to a fresh cache folder, and test-sized networks count as full-size."""
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(engines, "MIN_ONNX_PARAMETERS", 0)
    return tmp_path / "home" / "onnx"


@pytest.fixture
def photo_and_hole(astronaut) -> tuple[np.ndarray, np.ndarray]:
    photo = np.asarray(Image.fromarray(astronaut).resize((150, 110)))
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[30:70, 40:100] = 255
    hole[80:90, 10:140] = 255
    return photo, hole


def hole_psnr(result: np.ndarray, photo: np.ndarray, hole: np.ndarray) -> float:
    error = (result.astype(np.float64) - photo)[hole > 0]
    return 10 * np.log10(255**2 / np.mean(error**2))


def test_cpu_kind_reads_the_flags(fake_cpu):
    fake_cpu(BF16_CPU)
    assert cpu_kind() == "bf16-native" and cpu_name() == "Fake CPU"
    fake_cpu("avx2 avx512f amx_tile amx_bf16")
    assert cpu_kind() == "bf16-native"
    fake_cpu("avx2 fma avx512f avx512bw")
    assert cpu_kind() == "avx512"
    fake_cpu(AVX2_CPU)
    assert cpu_kind() == "avx2"
    fake_cpu("fpu sse2")
    assert cpu_kind() == "other"


def test_auto_engine_on_both_cpu_kinds(fake_cpu, onnx_cache, tiny_model):
    fake_cpu(BF16_CPU)
    choice = choose_engine(tiny_model)
    assert (choice.engine, choice.dtype) == ("torch", torch.bfloat16)
    assert choice.describe() == "engine: PyTorch bfloat16 (CPU with native bf16)"

    fake_cpu(AVX2_CPU)
    choice = choose_engine(tiny_model)
    assert (choice.engine, choice.dtype) == ("onnx", None)
    assert choice.describe().startswith("engine: ONNX Runtime float32 (avx2 CPU without native bf16")
    # Named precisions and engines are obeyed on either kind.
    assert choose_engine(tiny_model, dtype="float32") == EngineChoice("torch", None, "dtype='float32'")
    assert choose_engine(tiny_model, engine="torch").engine == "torch"
    fake_cpu(BF16_CPU)
    assert choose_engine(tiny_model, engine="onnx").engine == "onnx"


def test_auto_keeps_small_networks_in_pytorch(fake_cpu, tiny_model):
    fake_cpu(AVX2_CPU)
    choice = choose_engine(tiny_model)
    assert (choice.engine, choice.dtype) == ("torch", None)
    assert "small network" in choice.describe()


def test_bad_engine_is_refused(tiny_model, photo_and_hole):
    photo, hole = photo_and_hole
    with pytest.raises(ValueError, match="engine must be one of 'auto', 'torch', 'onnx', got 'tensorrt'"):
        inpaint(tiny_model, photo, hole, engine="tensorrt")
    with pytest.raises(ValueError, match="engine='onnx' runs float32"):
        choose_engine(tiny_model, engine="onnx", dtype="bfloat16")


def test_onnx_fast_path_matches_float32_eager(fake_cpu, onnx_cache, tiny_model, photo_and_hole, monkeypatch):
    fake_cpu(AVX2_CPU)
    photo, hole = photo_and_hole
    reference = inpaint(tiny_model, photo, hole, engine="torch", dtype="float32")
    exports = []
    export = type(tiny_model).export_onnx
    monkeypatch.setattr(type(tiny_model), "export_onnx", lambda self, path: exports.append(path) or export(self, path))

    fast = inpaint(tiny_model, photo, hole)
    assert len(exports) == 1 and cached_onnx_path(tiny_model).parent == onnx_cache
    assert cached_onnx_path(tiny_model).is_file()
    assert np.array_equal(fast[hole == 0], photo[hole == 0])
    assert np.abs(fast.astype(int) - reference)[hole > 0].max() <= 1
    assert abs(hole_psnr(fast, photo, hole) - hole_psnr(reference, photo, hole)) <= MAX_PSNR_LOSS_DB
    # Again, and from another object holding the same weights: the cached export, not a new one.
    inpaint(tiny_model, photo, hole)
    twin = type(tiny_model)(**tiny_model.config)
    twin.load_state_dict(tiny_model.state_dict())
    assert np.array_equal(inpaint(twin.eval(), photo, hole), fast)
    assert len(exports) == 1


def test_bf16_fast_path_stays_close_to_float32_eager(fake_cpu, tiny_model, photo_and_hole):
    fake_cpu(BF16_CPU)
    photo, hole = photo_and_hole
    reference = inpaint(tiny_model, photo, hole, engine="torch", dtype="float32")
    fast = inpaint(tiny_model, photo, hole)
    assert np.array_equal(fast[hole == 0], photo[hole == 0])
    assert not np.array_equal(fast, reference)  # bf16 did run
    assert np.abs(fast.astype(int) - reference)[hole > 0].mean() < 1.0
    assert abs(hole_psnr(fast, photo, hole) - hole_psnr(reference, photo, hole)) <= MAX_PSNR_LOSS_DB


def test_changed_weights_get_a_new_export(tiny_model):
    before = model_fingerprint(tiny_model)
    with torch.no_grad():
        tiny_model.encoder[0].conv.weight[0, 0, 0, 0] += 1
    assert model_fingerprint(tiny_model) != before


def test_fallback_without_onnxruntime(fake_cpu, onnx_cache, tiny_model, photo_and_hole, monkeypatch):
    fake_cpu(AVX2_CPU)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else find_spec(name))
    choice = choose_engine(tiny_model)
    assert (choice.engine, choice.dtype) == ("torch", None)
    assert "onnxruntime is not installed" in choice.describe()
    photo, hole = photo_and_hole
    expected = inpaint(tiny_model, photo, hole, engine="torch", dtype="float32")
    assert np.array_equal(inpaint(tiny_model, photo, hole), expected)
    with pytest.raises(ValueError, match="engine='onnx' cannot run this model: onnxruntime is not installed"):
        inpaint(tiny_model, photo, hole, engine="onnx")


def test_fallback_without_exporter_or_cached_export(fake_cpu, onnx_cache, tiny_model, monkeypatch):
    fake_cpu(AVX2_CPU)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxscript" else find_spec(name))
    choice = choose_engine(tiny_model)
    assert (choice.engine, choice.dtype) == ("torch", None)
    assert "no cached ONNX export" in choice.reason


def test_failed_export_falls_back_with_a_warning(fake_cpu, onnx_cache, tiny_model, photo_and_hole, monkeypatch):
    fake_cpu(AVX2_CPU)
    photo, hole = photo_and_hole
    expected = inpaint(tiny_model, photo, hole, engine="torch", dtype="float32")

    def fail(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(type(tiny_model), "export_onnx", fail)
    with pytest.warns(UserWarning, match="ONNX export failed, running PyTorch float32 instead: disk full"):
        result = inpaint(tiny_model, photo, hole)
    assert np.array_equal(result, expected)
    assert not any(onnx_cache.glob("*"))  # no half-written file left behind
    with warnings.catch_warnings(), pytest.raises(OSError, match="disk full"):
        warnings.simplefilter("error")
        inpaint(tiny_model, photo, hole, engine="onnx")


def test_cli_says_which_engine_runs(fake_cpu, model_dir, photo_and_hole, tmp_path, capsys):
    fake_cpu(AVX2_CPU)
    photo, hole = photo_and_hole
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(hole).save(tmp_path / "mask.png")
    files = ["--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "-o", tmp_path / "out.png"]
    inpaint_cli([str(arg) for arg in [*files, "--model", model_dir]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("engine: PyTorch float32 (avx2; a small network") and "Inpainted 1 photo" in lines[1]
