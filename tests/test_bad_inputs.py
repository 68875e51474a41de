"""The bad-input corpus: every kind of wrong or odd input, through pconv-inpaint, the Python API, pconv-evaluate and
pconv-anomaly. Each case asserts its outcome: a correct result, or a one-line error naming the problem with a
non-zero exit status and nothing half-written. (The app's own bad inputs are in tests/test_app.py.)"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import pconv_hf
from pconv_hf import PConvUNet, anomaly
from pconv_hf.cli import anomaly as anomaly_cli
from pconv_hf.cli import evaluate as evaluate_cli
from pconv_hf.cli.inpaint import main as inpaint_main
from pconv_hf.inpainting import grow_mask

HEIGHT, WIDTH = 96, 128
BOX = (slice(30, 60), slice(40, 80))  # the painted hole of every corpus mask


# --- the files ---------------------------------------------------------------------------------------------


def _photo(astronaut: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(astronaut).resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS))


def _box_mask(value: int = 255, background: int = 0) -> np.ndarray:
    mask = np.full((HEIGHT, WIDTH), background, np.uint8)
    mask[BOX] = value
    return mask


@pytest.fixture(scope="module")
def files(tmp_path_factory, astronaut) -> dict[str, Path]:
    """Every input file of the corpus, written once."""
    root = tmp_path_factory.mktemp("corpus")
    rgb = _photo(astronaut)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    paths: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options) -> None:
        paths[name] = root / name
        image.save(paths[name], **options)

    save("photo.png", Image.fromarray(rgb))
    save("mask.png", Image.fromarray(_box_mask()))
    save("photo.jpg", Image.fromarray(rgb), quality=92)
    save("white.png", Image.fromarray(np.full((HEIGHT, WIDTH), 255, np.uint8)))
    black3 = _box_mask(255, background=3)  # a JPEG's "black" ...
    black3[:, :2] = 0  # ... with a few pixels of true black
    save("black3.png", Image.fromarray(black3))
    black_paint = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    black_paint[BOX] = (0, 0, 0, 255)  # black paint on a transparent layer
    save("black_paint.png", Image.fromarray(black_paint))
    save("transparent.png", Image.new("RGBA", (WIDTH, HEIGHT), (255, 255, 255, 0)))  # an unpainted layer
    save("small_mask.png", Image.fromarray(_box_mask()[:50, :60]))
    save("float01.tif", Image.fromarray(grey.astype(np.float32) / 255))
    save("float255.tif", Image.fromarray(grey.astype(np.float32)))
    save("gray16.png", Image.fromarray(grey.astype(np.uint16) * 257))
    save("rgba.png", Image.fromarray(np.dstack([rgb, np.full((HEIGHT, WIDTH), 200, np.uint8)])))
    save("la.png", Image.fromarray(grey).convert("LA"))
    save("palette.png", Image.fromarray(rgb).convert("P"), transparency=0)
    save("bilevel.png", Image.fromarray(grey).convert("1"))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    exif = Image.Exif()
    exif[271], exif[0x0112] = "Corpus camera", 1
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save("phone.heic", Image.fromarray(rgb), exif=exif.tobytes(), icc_profile=icc, quality=95)
    save("tiny.png", Image.fromarray(rgb[:2, :3]))
    tiny_mask = np.zeros((2, 3), np.uint8)
    tiny_mask[0, 0] = 255
    save("tiny_mask.png", Image.fromarray(tiny_mask))
    save("unicode фото ü.png", Image.fromarray(rgb))

    paths["empty.jpg"] = root / "empty.jpg"
    paths["empty.jpg"].write_bytes(b"")
    paths["text.jpg"] = root / "text.jpg"
    paths["text.jpg"].write_text("this is not a JPEG\n")
    paths["truncated.jpg"] = root / "truncated.jpg"
    paths["truncated.jpg"].write_bytes(paths["photo.jpg"].read_bytes()[:1500])
    paths["folder"] = root / "a folder.png"
    paths["folder"].mkdir()
    paths["link.png"] = root / "link.png"
    paths["link.png"].symlink_to(paths["photo.png"])
    return paths


@pytest.fixture(scope="module")
def model_variants(tmp_path_factory, model_dir) -> dict[str, Path]:
    """Broken copies of the tiny model folder."""
    root = tmp_path_factory.mktemp("models")
    variants = {}
    for name in ("truncated", "no_config", "bad_json", "bad_config"):
        variants[name] = root / name
        shutil.copytree(model_dir, variants[name])
    weights = variants["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (variants["no_config"] / "config.json").unlink()
    (variants["bad_json"] / "config.json").write_text("{ not json")
    config = json.loads((variants["bad_config"] / "config.json").read_text())
    (variants["bad_config"] / "config.json").write_text(json.dumps({**config, "layer_size": 0}))
    return variants


# --- running and judging -----------------------------------------------------------------------------------


def run_main(main: Callable, argv: list, capsys) -> tuple[int, str, str]:
    """A console command in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        main([str(arg) for arg in argv])
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(code: int, err: str, message: str, prog: str) -> None:
    """Non-zero exit, no traceback, one error line that names the problem."""
    assert code != 0, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1, err
    assert message in errors[0], (message, err)


@dataclass
class Case:
    """One corpus entry for pconv-inpaint: its arguments (with {name} placeholders for corpus files, {out} for
    the output folder, {model} for the tiny model) and either an error message or a check of the written file."""

    args: list[str]
    message: str | None = None  # None: must succeed
    check: Callable[[Path, str], None] | None = None  # (output folder, stderr)
    code: int = 1


def written(out: Path, name: str = "result.png") -> np.ndarray:
    with Image.open(out / name) as image:
        return np.asarray(image)


def filled_only_in_box(original: Path, result_name: str = "result.png"):
    def check(out: Path, err: str) -> None:
        before, after = np.asarray(Image.open(original).convert("RGB")), written(out, result_name)
        changed = (before != after[..., :3]).any(axis=-1)
        assert changed[BOX].mean() > 0.5 and not changed[OUTSIDE].any()

    return check


OUTSIDE = np.ones((HEIGHT, WIDTH), bool)
OUTSIDE[BOX] = False


def grey_kept(name: str, scale: float, mode: str, note: str | None = None, tolerance: float = 1.0):
    """The written file holds the photo's grey values times ``scale`` outside the hole (not clipped white or
    black), in ``mode``; ``note`` is the conversion printed."""

    def check(out: Path, err: str) -> None:
        with Image.open(out / name) as image:
            assert image.mode == mode, image.mode
            values = np.asarray(image, dtype=float)
        grey = np.asarray(Image.open(_FILES[0]["photo.png"]).convert("L"), float)
        assert np.abs(values - grey * scale)[OUTSIDE].mean() <= tolerance * scale
        assert note is None or note in err, err

    return check


BASE = ["--model", "{model}"]
SINGLE = ["--image", "{photo.png}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE]

CLI_CASES = {
    # unreadable or wrong inputs
    "empty file": Case(
        ["--image", "{empty.jpg}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE], "cannot read image file"
    ),
    "text as jpeg": Case(
        ["--image", "{text.jpg}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE], "text.jpg"
    ),
    "truncated jpeg": Case(
        ["--image", "{truncated.jpg}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE], "truncated"
    ),
    "missing photo": Case(
        ["--image", "{out}/nowhere.jpg", "--mask", "{mask.png}", "-o", "{out}/r.png", *BASE], "does not exist"
    ),
    "folder as photo": Case(
        ["--image", "{folder}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE], "both be files"
    ),
    "mask of another size": Case(
        ["--image", "{photo.png}", "--mask", "{small_mask.png}", "-o", "{out}/r.png", *BASE], "must match"
    ),
    "all-white mask": Case(
        ["--image", "{photo.png}", "--mask", "{white.png}", "-o", "{out}/result.png", *BASE], "covers the whole image"
    ),
    "float tiff in 0..255": Case(
        ["--image", "{float255.tif}", "--mask", "{mask.png}", "-o", "{out}/r.png", *BASE], "divide 0..255 values by 255"
    ),
    # outputs and flags
    "unknown output extension": Case([*SINGLE[:5], "{out}/result.xyz", *BASE], "image format"),
    "output is the photo": Case([*SINGLE[:5], "{photo.png}", *BASE, "--overwrite"], "one of the inputs"),
    "--format against the extension": Case([*SINGLE, "--format", "gif"], "--format gif does not match"),
    "--quality for png": Case([*SINGLE, "--quality", "80"], "lossy formats"),
    "--quality 0": Case([*SINGLE[:5], "{out}/result.jpg", *BASE, "--quality", "0"], "from 1 to 100"),
    "--dilate 100000": Case([*SINGLE, "--dilate", "100000"], "dilate must be from 0 to 4096"),
    "--dilate -1": Case([*SINGLE, "--dilate", "-1"], "dilate must be from 0 to 4096"),
    "--dilate text": Case([*SINGLE, "--dilate", "lots"], "--dilate: invalid int value", code=2),
    "--strategy unknown": Case([*SINGLE, "--strategy", "magic"], "invalid choice", code=2),
    "--device meta": Case([*SINGLE, "--device", "meta"], "not a device"),
    "--device bogus": Case([*SINGLE, "--device", "gpu9"], "--device gpu9"),
    "--overwrite with --skip_existing": Case([*SINGLE, "--overwrite", "--skip_existing"], "not allowed", code=2),
    # model folders
    "missing model folder": Case([*SINGLE[:6], "--model", "{out}/no-model"], "no-model"),
    "truncated safetensors": Case([*SINGLE[:6], "--model", "{m:truncated}"], "truncated or not safetensors"),
    "model without config.json": Case([*SINGLE[:6], "--model", "{m:no_config}"], "config.json"),
    "config.json not json": Case([*SINGLE[:6], "--model", "{m:bad_json}"], "--model"),
    "config.json with a bad value": Case([*SINGLE[:6], "--model", "{m:bad_config}"], "layer_size"),
    # odd but valid inputs: a correct result
    "float tiff in 0..1 as png": Case(
        ["--image", "{float01.tif}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE],
        check=grey_kept("result.png", 257, "I;16", "scaled to 0..65535"),
    ),
    "float tiff in 0..1 as jpeg": Case(
        ["--image", "{float01.tif}", "--mask", "{mask.png}", "-o", "{out}/result.jpg", *BASE],
        check=grey_kept("result.jpg", 1, "L", "0..1 scaled to 0..255", tolerance=3),
    ),
    "16-bit grey as jpeg": Case(
        ["--image", "{gray16.png}", "--mask", "{mask.png}", "-o", "{out}/result.jpg", *BASE],
        check=grey_kept("result.jpg", 1, "L", "0..65535 scaled to 0..255", tolerance=3),
    ),
    "16-bit grey as bmp": Case(
        ["--image", "{gray16.png}", "--mask", "{mask.png}", "-o", "{out}/result.bmp", *BASE],
        check=grey_kept("result.bmp", 1, "L", "BMP cannot hold 16-bit grey"),
    ),
    "rgba as jpeg": Case(
        ["--image", "{rgba.png}", "--mask", "{mask.png}", "-o", "{out}/result.jpg", *BASE],
        check=lambda out, err: (
            Image.open(out / "result.jpg").mode == "RGB" or pytest.fail("not RGB"),
            "composited on white" in err or pytest.fail(err),
        ),
    ),
    "grey + alpha as jpeg": Case(
        ["--image", "{la.png}", "--mask", "{mask.png}", "-o", "{out}/result.jpg", *BASE],
        check=lambda out, err: Image.open(out / "result.jpg").mode == "L" or pytest.fail("not L"),
    ),
    "transparent palette as png": Case(
        ["--image", "{palette.png}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: Image.open(out / "result.png").mode == "P" or pytest.fail("not P"),
    ),
    "bilevel as webp": Case(
        ["--image", "{bilevel.png}", "--mask", "{mask.png}", "-o", "{out}/result.webp", *BASE],
        check=lambda out, err: "WEBP cannot hold 1-bit" in err or pytest.fail(err),
    ),
    "cmyk as tiff": Case(
        ["--image", "{cmyk.jpg}", "--mask", "{mask.png}", "-o", "{out}/result.tif", *BASE],
        check=lambda out, err: Image.open(out / "result.tif").mode == "CMYK" or pytest.fail("not CMYK"),
    ),
    "black paint on a transparent layer": Case(
        ["--image", "{photo.png}", "--mask", "{black_paint.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: filled_only_in_box(_FILES[0]["photo.png"])(out, err),
    ),
    "mask whose black is 3": Case(
        ["--image", "{photo.png}", "--mask", "{black3.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: (
            [line for line in err.splitlines() if "warning" in line]
            == [
                "pconv-inpaint: warning: the mask fills 98.4 % of the image (white / nonzero = fill); most of the "
                "filled pixels are nearly black (median 3): a JPEG's black is often not 0, so save masks as PNG"
            ]
            or pytest.fail(err)
        ),
    ),
    "fully transparent mask": Case(
        ["--image", "{photo.png}", "--mask", "{transparent.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: (
            np.array_equal(written(out), np.asarray(Image.open(_FILES[0]["photo.png"]))) or pytest.fail("changed"),
            [line for line in err.splitlines() if "warning" in line]
            == [
                "pconv-inpaint: warning: the mask fills nothing (no white / nonzero, opaque pixel): the image comes "
                "back unchanged"
            ]
            or pytest.fail(err),
        ),
    ),
    "unicode path": Case(
        ["--image", "{unicode фото ü.png}", "--mask", "{mask.png}", "-o", "{out}/résultat.png", *BASE],
        check=lambda out, err: (out / "résultat.png").is_file() or pytest.fail("missing"),
    ),
    "symlinked photo": Case(
        ["--image", "{link.png}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: filled_only_in_box(_FILES[0]["photo.png"])(out, err),
    ),
    "2x3 photo": Case(
        ["--image", "{tiny.png}", "--mask", "{tiny_mask.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: written(out).shape == (2, 3, 3) or pytest.fail("size"),
    ),
    "heic photo as jpeg keeps exif and icc": Case(
        ["--image", "{phone.heic}", "--mask", "{mask.png}", "-o", "{out}/result.jpg", *BASE, "--quality", "90"],
        check=lambda out, err: (
            Image.open(out / "result.jpg").getexif().get(271) == "Corpus camera" or pytest.fail("exif"),
            Image.open(out / "result.jpg").info.get("icc_profile") or pytest.fail("icc"),
        ),
    ),
    "output folder gets NAME.webp": Case(
        ["--image", "{photo.png}", "--mask", "{mask.png}", "-o", "{out}", *BASE, "--format", "webp"],
        check=lambda out, err: Image.open(out / "photo.webp").size == (WIDTH, HEIGHT) or pytest.fail("size"),
    ),
}
_FILES: list[dict] = []  # the module's corpus files, for the checks above


def _expand(arg: str, files: dict[str, Path], models: dict[str, Path], model_dir: Path, out: Path) -> str:
    if arg.startswith("{") and arg.endswith("}") and arg[1:-1] in files:
        return str(files[arg[1:-1]])
    if arg.startswith("{m:"):
        return str(models[arg[3:-1]])
    return arg.replace("{model}", str(model_dir)).replace("{out}", str(out))


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_pconv_inpaint(name, files, model_variants, model_dir, tmp_path, capsys):
    _FILES[:] = [files]
    case = CLI_CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    inputs = snapshot(files["photo.png"].parent)
    argv = [_expand(arg, files, model_variants, model_dir, out) for arg in case.args]
    code, _, err = run_main(inpaint_main, argv, capsys)
    if case.message is None:
        assert code == 0 and "Traceback" not in err, err
        case.check(out, err)
    else:
        assert_refused(code, err, case.message, "pconv-inpaint")
        assert code == case.code
        assert not any(out.iterdir()), list(out.iterdir())  # nothing written, not even a temporary file
    assert snapshot(files["photo.png"].parent) == inputs  # inputs untouched


def test_oversized_photo_is_refused_and_a_large_one_warns_in_one_line(files, model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", HEIGHT * WIDTH // 3)  # the photo is over twice the limit
    code, _, err = run_main(inpaint_main, [*_args(files, model_dir, out)], capsys)
    assert_refused(code, err, "limit", "pconv-inpaint")
    assert not any(out.iterdir())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", HEIGHT * WIDTH * 2 // 3)  # between the warning and the error
    code, _, err = run_main(inpaint_main, [*_args(files, model_dir, out)], capsys)
    assert code == 0 and "DecompressionBombWarning" not in err and "Traceback" not in err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 2 and "photo.png" in warnings[0] and "mask.png" in warnings[1], err
    assert all(line.startswith(("pconv-inpaint: warning: image file", "pconv-inpaint: warning: mask file"))
               for line in warnings), err  # fmt: skip
    assert (out / "result.png").is_file()


def _args(files, model_dir, out) -> list:
    return ["--image", files["photo.png"], "--mask", files["mask.png"], "-o", out / "result.png", "--model", model_dir]


# --- folders -----------------------------------------------------------------------------------------------


@pytest.fixture
def folder_job(files, tmp_path) -> tuple[Path, Path, Path]:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for name in ("a", "c", "d"):
        shutil.copy(files["photo.jpg"], photos / f"{name}.jpg")
        shutil.copy(files["mask.png"], masks / f"{name}.png")
    shutil.copy(files["truncated.jpg"], photos / "b.jpg")  # in the middle, by name
    shutil.copy(files["mask.png"], masks / "b.png")
    shutil.copy(files["photo.jpg"], photos / "e.jpg")
    shutil.copy(files["small_mask.png"], masks / "e.png")  # a mask of the wrong size
    return photos, masks, tmp_path / "out"


def test_folder_goes_on_past_bad_photos_and_reruns_skip_what_is_done(folder_job, model_dir, capsys):
    photos, masks, out = folder_job
    argv = ["--image", photos, "--mask", masks, "-o", out, "--model", model_dir]
    code, stdout, err = run_main(inpaint_main, argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "d.png"]  # every readable photo
    assert "2 photos failed" in err and "b.jpg" in err and "truncated" in err and "e.jpg" in err and "must match" in err
    assert "Inpainted 3 photos" in stdout
    first = snapshot(out)

    # A plain rerun refuses (outputs exist); --skip_existing does only what is missing.
    code, _, err = run_main(inpaint_main, argv, capsys)
    assert code == 1 and "--skip_existing" in err and snapshot(out) == first
    shutil.copy(photos / "a.jpg", photos / "b.jpg")  # b fixed; e still wrong
    code, stdout, err = run_main(inpaint_main, [*argv, "--skip_existing"], capsys)
    assert code == 1 and "1 photo failed" in err and "e.jpg" in err and "b.jpg" not in err
    assert "Inpainted 1 photo " in stdout and "skipped 3 already done" in stdout
    assert {k: v for k, v in snapshot(out).items() if k != "b.png"} == first and (out / "b.png").is_file()
    (masks / "e.png").unlink()
    shutil.copy(masks / "a.png", masks / "e.png")
    code, stdout, _ = run_main(inpaint_main, [*argv, "--skip_existing"], capsys)
    assert code == 0 and "Inpainted 1 photo " in stdout and "skipped 4" in stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unmatched", "no mask in"),
        ("empty", "no images"),
        ("gif", "--format: cannot tell"),
        ("quality png", "lossy formats"),
        ("dilate", "dilate must be from 0 to 4096"),
    ],
)
def test_folder_refusals_write_nothing(folder_job, model_dir, capsys, change, message):
    photos, masks, out = folder_job
    argv = ["--image", photos, "--mask", masks, "-o", out, "--model", model_dir]
    if change == "unmatched":
        (masks / "c.png").unlink()
    elif change == "empty":
        for path in photos.iterdir():
            path.unlink()
    elif change == "gif":
        argv += ["--format", "gif"]
    elif change == "quality png":
        argv += ["--quality", "90"]
    else:
        argv += ["--dilate", "5000"]
    code, _, err = run_main(inpaint_main, argv, capsys)
    assert_refused(code, err, message, "pconv-inpaint")
    assert not out.exists() or not any(out.iterdir())


# --- the Python API ----------------------------------------------------------------------------------------


def _api_cases(photo: np.ndarray, hole: np.ndarray, model: PConvUNet) -> dict[str, tuple[Callable, str]]:
    """name -> (call, the message's expected words)."""
    nan_photo = photo.astype(np.float32) / 255
    nan_photo[0, 0, 0] = np.nan
    meta_model = PConvUNet(layer_size=5, base_channels=8, sample_size=64).to("meta")
    fill = pconv_hf.inpaint
    return {
        "model given as a string": (lambda: fill(photo, hole, model="x"), "model must be a PConvUNet"),
        "dilate=True": (lambda: fill(photo, hole, model=model, dilate=True), "dilate must be an int"),
        "dilate=1.5": (lambda: fill(photo, hole, model=model, dilate=1.5), "dilate must be an int"),
        "dilate huge": (lambda: fill(photo, hole, model=model, dilate=10**6), "from 0 to 4096"),
        "resolution 2**20": (lambda: fill(photo, hole, model=model, resolution=2**20), "64 MP"),
        "resolution not a multiple": (lambda: fill(photo, hole, model=model, resolution=100), "multiple of 32"),
        "context inf": (lambda: fill(photo, hole, model=model, context=math.inf), "context must be a number"),
        "context nan": (lambda: fill(photo, hole, model=model, context=math.nan), "context must be a number"),
        "batch_size 0": (lambda: fill(photo, hole, model=model, batch_size=0), "batch_size must be from 1"),
        "NaN pixel": (lambda: fill(nan_photo, hole, model=model), "1 NaN values"),
        "float in 0..255": (lambda: fill(photo.astype(np.float32), hole, model=model), "divide 0..255"),
        "int32 array": (lambda: fill(photo.astype(np.int32), hole, model=model), "dtype must be uint8"),
        "bool tensor": (lambda: fill(torch.zeros(3, 8, 8, dtype=torch.bool), hole[:8, :8], model=model), "dtype"),
        "batch of two": (lambda: fill(torch.zeros(2, 3, 8, 8), hole[:8, :8], model=model), "(1, C, H, W)"),
        "meta tensor": (lambda: fill(torch.empty(3, 8, 8, device="meta"), hole[:8, :8], model=model), "meta"),
        "meta model": (lambda: fill(photo, hole, model=meta_model), "meta device"),
        "mask of another size": (lambda: fill(photo, hole[:50], model=model), "does not match image size"),
        "mask with NaN": (lambda: fill(photo, np.full(hole.shape, np.nan), model=model), "NaN"),
        "all-white mask": (lambda: fill(photo, np.ones_like(hole), model=model), "covers the whole image"),
        "missing file": (lambda: fill("/nonexistent/photo.jpg", hole, model=model), "cannot read image file"),
        "strategy unknown": (lambda: fill(photo, hole, model=model, strategy="magic"), "strategy must be"),
    }


API_NAMES = list(_api_cases(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), None))


@pytest.mark.parametrize("name", API_NAMES)
def test_python_api_refusals(name, files, tiny_model):
    photo = np.asarray(Image.open(files["photo.png"]))
    hole = _box_mask() > 0
    call, words = _api_cases(photo, hole, tiny_model)[name]
    with pytest.raises(ValueError) as error:
        call()
    assert words in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_python_api_odd_but_valid_inputs(files, tiny_model, tmp_path):
    photo = np.asarray(Image.open(files["photo.png"]))
    hole = _box_mask() > 0
    with pytest.warns(UserWarning, match="the mask fills nothing"):
        same = pconv_hf.inpaint(photo, np.zeros_like(hole), model=tiny_model)
    assert np.array_equal(same, photo)  # an empty mask changes nothing
    by_numpy_int = pconv_hf.inpaint(photo, hole, model=tiny_model, dilate=np.int64(3))
    assert np.array_equal(by_numpy_int, pconv_hf.inpaint(photo, hole, model=tiny_model, dilate=3))
    heic = pconv_hf.inpaint(files["phone.heic"], files["mask.png"], model=tiny_model)
    assert heic.size == (WIDTH, HEIGHT)
    painted = pconv_hf.inpaint(photo, files["black_paint.png"], model=tiny_model)
    changed = (np.asarray(painted) != photo).any(axis=-1)
    assert changed[BOX].mean() > 0.5 and changed.sum() == changed[BOX].sum()
    with pytest.warns(UserWarning, match="median 3"):
        pconv_hf.inpaint(photo, files["black3.png"], model=tiny_model)
    with pytest.raises(ValueError, match="it is a folder"):
        pconv_hf.inpaint(files["folder"], hole, model=tiny_model)
    start = time.perf_counter()
    assert grow_mask(hole, 4096).all() and time.perf_counter() - start < 2  # the cost does not grow with dilate
    speckles = np.random.default_rng(0).random((HEIGHT, WIDTH)) > 0.999
    for pixels in (3, 64, 65, 100):  # both ways of growing are the square dilation
        kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
        assert np.array_equal(grow_mask(speckles, pixels), cv2.dilate(speckles.view(np.uint8), kernel).view(bool))


# --- pconv-evaluate ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_data(files, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval-data")
    shutil.copy(files["photo.png"], folder / "a.png")
    shutil.copy(files["truncated.jpg"], folder / "b.jpg")
    shutil.copy(files["photo.jpg"], folder / "c.jpg")
    return folder


def _eval_args(model_dir: Path, data: Path, out: Path) -> list:
    return ["--model", model_dir, "--data", data, "--baselines", "", "--num_images", "2", "--resolution", "64",
            "--border_margin", "0", "--no_lpips", "--device", "cpu", "--output_dir", out]  # fmt: skip


def test_pconv_evaluate_console_script_exits_0_and_names_skipped_files(model_dir, eval_data, tmp_path):
    executable = shutil.which("pconv-evaluate", path=str(Path(sys.executable).parent))
    assert executable, "pconv-evaluate is not installed: pip install -e ."
    out = tmp_path / "eval"
    done = subprocess.run([executable, *map(str, _eval_args(model_dir, eval_data, out))], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "b.jpg" in done.stderr and "truncated" in done.stderr  # the unreadable file, named
    assert "{'" not in done.stdout and "Traceback" not in done.stderr  # the results are in the files
    assert json.loads((out / "results.json").read_text())["meta"]["images"] == [
        str(eval_data / "a.png"),
        str(eval_data / "c.jpg"),
    ]


@pytest.mark.parametrize(
    ("change", "message", "code"),
    [
        (["--num_images", "0"], "--num_images: must be from 1", 2),
        (["--num_images", "-3"], "--num_images: must be from 1", 2),
        (["--resolution", "100000"], "--resolution: must be from 32 to 4,096", 2),
        (["--batch_size", "0"], "--batch_size: must be from 1", 2),
        (["--device", "meta"], "not a device", 1),
        (["--model", "{missing}"], "no-model", 1),
        (["--model", "{truncated}"], "truncated or not safetensors", 1),
        (["--data", "{empty}"], "", 1),
        (["--output_dir", "{file}"], "is a file", 1),
    ],
)
def test_pconv_evaluate_refusals(change, message, code, model_dir, model_variants, eval_data, tmp_path, capsys):
    out = tmp_path / "eval"
    (tmp_path / "empty").mkdir()
    names = {
        "{missing}": tmp_path / "no-model",
        "{truncated}": model_variants["truncated"],
        "{empty}": tmp_path / "empty",
        "{file}": tmp_path / "a-file",
    }
    names["{file}"].write_text("not a folder")
    argv = _eval_args(model_dir, eval_data, out)
    for flag, value in zip(change[::2], change[1::2]):
        argv += [flag, names.get(value, value)]  # argparse: the last one counts
    code_seen, _, err = run_main(evaluate_cli.main, argv, capsys)
    assert_refused(code_seen, err, message, "pconv-evaluate")
    assert code_seen == code and not out.exists()


# --- pconv-anomaly -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anomaly_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("anomaly-model")
    torch.manual_seed(0)
    PConvUNet(layer_size=5, base_channels=8, sample_size=64, conv_type="plain").save_pretrained(folder)
    anomaly.AnomalyConfig(mode="autoencoder", resolution=64, feature_network="none", mse_weight=1.0).save(folder)
    return folder


def test_pconv_anomaly_bad_inputs(anomaly_model, files, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(files["photo.png"], images / name)
    shutil.copy(files["truncated.jpg"], images / "b.jpg")
    out_folder = tmp_path / "existing-folder"
    out_folder.mkdir()

    # --output an existing folder: refused before any scoring, nothing left behind.
    code, _, err = run_main(
        anomaly_cli.main, ["score", "--model", anomaly_model, "--images", images, "--output", out_folder], capsys
    )
    assert_refused(code, err, "is a folder", "pconv-anomaly score")
    assert not any(out_folder.iterdir()) and not list(tmp_path.glob(".*tmp"))

    # One unreadable image among readable ones: the others scored and written, the bad one listed, status 1.
    scores = tmp_path / "scores.csv"
    code, _, err = run_main(
        anomaly_cli.main, ["score", "--model", anomaly_model, "--images", images, "--output", scores], capsys
    )
    assert_refused(code, err, "1 image(s) could not be read", "pconv-anomaly score")
    assert "b.jpg" in err and "truncated" in err
    assert [line.split(",")[0] for line in scores.read_text().splitlines()[1:]] == [
        str(images / "a.png"),
        str(images / "c.png"),
    ]

    # fit on images none of which can be read: stops before writing anything.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("x.jpg", "y.jpg", "z.jpg"):
        shutil.copy(files["truncated.jpg"], broken / name)
    fit_out = tmp_path / "fit-out"
    code, _, err = run_main(
        anomaly_cli.main,
        [
            "fit",
            "--train_dir",
            broken,
            "--output_dir",
            fit_out,
            "--mode",
            "autoencoder",
            "--feature_network",
            "none",
            "--resolution",
            "64",
            "--max_train_steps",
            "1",
        ],  # fmt: skip
        capsys,
    )
    assert_refused(code, err, "none of the", "pconv-anomaly fit")
    assert not fit_out.exists()

    # Size flags are bounded.
    for argv, message in [
        (["score", "--model", anomaly_model, "--images", images, "--output", scores, "--batch_size", "0"],
         "--batch_size: must be from 1"),
        (["fit", "--train_dir", images, "--output_dir", fit_out, "--mode", "autoencoder", "--resolution", "100000"],
         "--resolution: must be from 8 to 2,048"),
        (["score", "--model", anomaly_model, "--images", images, "--output", scores, "--device", "meta"],
         "not a device"),
        (["threshold", "--scores", tmp_path / "missing.csv", "--output", out_folder], "is a folder"),
    ]:  # fmt: skip
        code, _, err = run_main(anomaly_cli.main, argv, capsys)
        assert_refused(code, err, message, f"pconv-anomaly {argv[0]}")
    assert not fit_out.exists() and not any(out_folder.iterdir())


# --- pconv-export ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (["{out}/no-model", "{out}/x.onnx"], "is not a directory", 1),
        (["{model}", "{out}/x.txt"], "must end in .onnx", 1),
        (["{m:truncated}", "{out}/x.onnx"], "truncated or not safetensors", 1),
        (["{model}", "{out}/x.onnx", "--opset", "abc"], "--opset: invalid int value", 2),
    ],
)
def test_pconv_export_refusals(argv, message, code, model_dir, model_variants, tmp_path, capsys):
    from pconv_hf.cli.export import main as export_main

    out = tmp_path / "out"
    out.mkdir()
    argv = [_expand(arg, {}, model_variants, model_dir, out) for arg in argv]
    code_seen, _, err = run_main(export_main, argv, capsys)
    assert_refused(code_seen, err, message, "pconv-export")
    assert code_seen == code and not any(out.iterdir())
