"""The bad-input corpus: every kind of wrong or odd input, through pconv-inpaint, the Python API, pconv-evaluate and
pconv-anomaly. Each case asserts its outcome: a correct result, or a one-line error naming the problem with a
non-zero exit status and nothing half-written. (The app's own bad inputs are in tests/test_app.py.)"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.torch
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
        ["--image", "{folder}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE], "no images"
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
    "--format against the extension": Case([*SINGLE, "--format", "webp"], "--format webp does not match"),
    "--format not written": Case([*SINGLE, "--format", "gif"], "--format: invalid choice: 'gif'", code=2),
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
        ("gif", "--format: invalid choice: 'gif'"),
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
        "resolution 8": (lambda: fill(photo, hole, model=model, resolution=8), "resolution must be from 16 to 8192"),
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


# --- model folders, devices and API arguments (issue 33) ---------------------------------------------------


def _rewrite_weights(folder: Path, change: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    path = folder / "model.safetensors"
    weights = safetensors.torch.load_file(path)
    path.write_bytes(safetensors.torch.save({name: change(name, tensor) for name, tensor in weights.items()}))


def _poisoned(value: float) -> Callable[[str, torch.Tensor], torch.Tensor]:
    def change(name: str, tensor: torch.Tensor) -> torch.Tensor:
        if name != "encoder.0.conv.weight":
            return tensor
        tensor = tensor.clone()
        tensor.view(-1)[5] = value
        return tensor

    return change


def _as_dtype(dtype: torch.dtype) -> Callable[[str, torch.Tensor], torch.Tensor]:
    return lambda name, tensor: tensor.to(dtype) if tensor.is_floating_point() else tensor


def _rewrite_config(folder: Path, change: Callable[[dict], object]) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config)))


MODEL_FOLDER_FAULTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    # name: (how the folder is broken, words the one-line message must hold besides the file's path)
    "NaN weight": (lambda f: _rewrite_weights(f, _poisoned(math.nan)), ["'encoder.0.conv.weight'", "NaN"]),
    "infinite weight": (lambda f: _rewrite_weights(f, _poisoned(-math.inf)), ["'encoder.0.conv.weight'", "infinite"]),
    "bool weights": (lambda f: _rewrite_weights(f, _as_dtype(torch.bool)), ["'encoder.0.conv.weight' is bool"]),
    "int32 weights": (lambda f: _rewrite_weights(f, _as_dtype(torch.int32)), ["'encoder.0.conv.weight' is int32"]),
    "weights of another config": (
        lambda f: _rewrite_config(f, lambda c: {**c, "base_channels": 16}),
        ["do not fit its config", "'encoder.0.conv.weight'", "(8, 3, 7, 7)", "(16, 3, 7, 7)"],
    ),
    "config.json a list": (lambda f: (f / "config.json").write_text("[1, 2]"), ["JSON object", "got [1, 2]"]),
    "config.json null": (lambda f: (f / "config.json").write_text("null"), ["JSON object", "got null"]),
    "config.json empty": (lambda f: (f / "config.json").write_text(""), ["config.json is empty"]),
    "config.json UTF-16": (
        lambda f: (f / "config.json").write_bytes((f / "config.json").read_text().encode("utf-16")),
        ["config.json is not UTF-8"],
    ),
    "config.json without layer_size": (
        lambda f: _rewrite_config(f, lambda c: {k: v for k, v in c.items() if k != "layer_size"}),
        ["config.json", "'layer_size'"],
    ),
    "config.json with an unknown key": (
        lambda f: _rewrite_config(f, lambda c: {**c, "colour": "red"}),
        ["config.json has unknown keys ['colour']"],
    ),
    "base_channels 1000000": (
        lambda f: _rewrite_config(f, lambda c: {**c, "base_channels": 1_000_000}),
        ["config.json", "base_channels 1000000", "GiB", "more memory than this machine has"],
    ),
}


@pytest.mark.parametrize("name", list(MODEL_FOLDER_FAULTS))
def test_broken_model_folders_are_refused_in_one_line_naming_file_and_key(name, model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("pconv_hf.model.free_memory", lambda: 64 * 2**30)  # the same verdict on any machine
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    breaks, words = MODEL_FOLDER_FAULTS[name]
    breaks(folder)
    for load in (lambda: PConvUNet.from_pretrained(folder), lambda: pconv_hf.load_model(folder, device="cpu")):
        with pytest.raises(ValueError) as error:
            load()
        message = str(error.value)
        assert "\n" not in message and str(folder) in message, message
        assert all(word in message for word in words), (words, message)


def test_pconv_inpaint_refuses_nan_weights_instead_of_filling_black(files, model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    _rewrite_weights(folder, _poisoned(math.nan))
    out = tmp_path / "out"
    argv = ["--image", files["photo.png"], "--mask", files["mask.png"], "-o", out / "result.png", "--model", folder]
    code, _, err = run_main(inpaint_main, argv, capsys)
    assert_refused(code, err, "NaN or infinite values", "pconv-inpaint")
    assert not out.exists() or not any(out.iterdir())


def _device_cases(model_dir: Path) -> dict[str, tuple[Callable, str]]:
    """name -> (call, the message's expected words); every device named here is absent on any machine."""
    cases = {
        "device='gpu'": (lambda: pconv_hf.load_model(model_dir, device="gpu"), "device='gpu': not a device name"),
        "device='cuda:99'": (lambda: pconv_hf.load_model(model_dir, device="cuda:99"), "device='cuda:99'"),
        "device=99": (lambda: pconv_hf.load_model(model_dir, device=99), "device=99"),
        "device=True": (lambda: pconv_hf.load_model(model_dir, device=True), "expected a device name"),
        "device='meta'": (lambda: pconv_hf.load_model(model_dir, device="meta"), "not a device that runs models"),
        "map_location='bogus'": (
            lambda: PConvUNet.from_pretrained(model_dir, map_location="bogus"),
            "map_location='bogus': not a device name",
        ),
        "map_location='meta'": (lambda: PConvUNet.from_pretrained(model_dir, map_location="meta"), "meta device"),
    }
    if not torch.cuda.is_available():  # "cuda" itself is refused only where there is no GPU
        cases["device='cuda' without a GPU"] = (
            lambda: pconv_hf.load_model(model_dir, device="cuda"),
            "device='cuda': CUDA is not available",
        )
    return cases


def test_devices_that_cannot_run_the_model_are_refused_in_one_line(model_dir):
    for name, (call, words) in _device_cases(model_dir).items():
        with pytest.raises(ValueError) as error:
            call()
        assert words in str(error.value) and "\n" not in str(error.value), (name, str(error.value))
    assert pconv_hf.load_model(model_dir, device=torch.device("cpu")).device.type == "cpu"


def _closed(image: Image.Image) -> Image.Image:
    image.close()
    return image


def _argument_cases(photo: np.ndarray, hole: np.ndarray, model: PConvUNet) -> dict[str, tuple[Callable, str]]:
    """name -> (call, the message's expected words) for inpaint() arguments of a kind it cannot read."""
    fill = pconv_hf.inpaint
    hole_tensor = torch.from_numpy(hole.astype(np.float32))
    photo_tensor = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255
    return {
        "refine='no'": (lambda: fill(photo, hole, model=model, refine="no"), "refine must be True or False"),
        "refine=None": (lambda: fill(photo, hole, model=model, refine=None), "refine must be True or False"),
        "reach=np.bool_": (lambda: fill(photo, hole, model=model, reach=np.bool_(True)), "reach must be a number"),
        "max_pixels=np.float64": (
            lambda: fill(photo, hole, model=model, max_pixels=np.float64(2**20)),
            "max_pixels must be an int",
        ),
        "numpy string mask": (lambda: fill(photo, np.where(hole, "x", ""), model=model), "mask dtype must be"),
        "numpy object mask": (lambda: fill(photo, hole.astype(object), model=model), "mask dtype must be"),
        "complex mask tensor": (lambda: fill(photo, hole_tensor.to(torch.complex64), model=model), "complex64"),
        "mask tensor on the meta device": (
            lambda: fill(photo, torch.empty(hole.shape, device="meta"), model=model),
            "mask tensor is on the meta device",
        ),
        "sparse mask": (lambda: fill(photo, hole_tensor.to_sparse(), model=model), "mask tensor is a sparse tensor"),
        "sparse image": (lambda: fill(photo_tensor.to_sparse(), hole, model=model), "image tensor is a sparse tensor"),
        "nested mask": (
            lambda: fill(photo, torch.nested.nested_tensor([hole_tensor]), model=model),
            "mask tensor is a nested tensor",
        ),
        "nested image": (
            lambda: fill(torch.nested.nested_tensor([photo_tensor]), hole, model=model),
            "image tensor is a nested tensor",
        ),
        "closed PIL image": (
            lambda: fill(_closed(Image.fromarray(photo)), hole, model=model),
            "image is a closed PIL image",
        ),
        "closed PIL mask": (
            lambda: fill(photo, _closed(Image.fromarray(hole.view(np.uint8) * 255)), model=model),
            "mask is a closed PIL image",
        ),
    }


ARGUMENT_NAMES = list(_argument_cases(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), None))


@pytest.mark.parametrize("name", ARGUMENT_NAMES)
def test_python_api_refuses_arguments_it_cannot_read_in_one_line(name, files, tiny_model):
    photo = np.asarray(Image.open(files["photo.png"]))
    call, words = _argument_cases(photo, _box_mask() > 0, tiny_model)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's "nested tensors are in prototype stage"
        with pytest.raises(ValueError) as error:
            call()
    assert words in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_python_api_takes_numpy_numbers_for_reach_max_pixels_and_refine(files, tiny_model):
    photo = np.asarray(Image.open(files["photo.png"]))
    hole = _box_mask() > 0
    options = {"reach": 16, "max_pixels": 2**16, "refine": False}  # small: the tiny photo is downscaled
    expected = pconv_hf.inpaint(photo, hole, model=tiny_model, **options)
    for numpy_options in (
        {"reach": np.int64(16), "max_pixels": np.int64(2**16), "refine": np.bool_(False)},
        {"reach": np.float32(16), "max_pixels": np.int32(2**16), "refine": np.False_},
    ):
        assert np.array_equal(pconv_hf.inpaint(photo, hole, model=tiny_model, **numpy_options), expected)


ANOMALY_JSON_FAULTS = {
    # anomaly.json's text: words of the one-line message besides the file's path
    "[]": "must hold a JSON object",
    "null": "must hold a JSON object",
    '{"mse_weight": "x"}': "mse_weight must be a number",
    '{"resolution": true}': "resolution must be an integer",
    '{"mean": [0.5, 0.5]}': "mean must be a list of 3 numbers",
    '{"thresholds": {"best_f1": "high"}}': "thresholds must be an object of numbers",
    '{"mode": "diffusion"}': "mode must be one of",
}


def test_broken_anomaly_json_is_refused_in_one_line_naming_file_and_key(tmp_path):
    path = tmp_path / "anomaly.json"
    for text, words in ANOMALY_JSON_FAULTS.items():
        path.write_text(text)
        with pytest.raises(ValueError) as error:
            anomaly.AnomalyConfig.load(tmp_path)
        assert str(path) in str(error.value) and words in str(error.value), (text, str(error.value))
        assert "\n" not in str(error.value)
    path.write_bytes(json.dumps({"mode": "autoencoder"}).encode("utf-16"))
    with pytest.raises(ValueError, match="anomaly.json is not UTF-8 text"):
        anomaly.AnomalyConfig.load(tmp_path)
    assert set(anomaly.config._JSON_TYPES) == {field.name for field in dataclasses.fields(anomaly.AnomalyConfig)}


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


# --- train_accelerate.py: settings, output folders, damaged checkpoints --------------------------------------

TRAIN_TINY = ["--resolution", "64", "--layer_size", "5", "--base_channels", "8", "--train_batch_size", "2",
              "--report_to", "none", "--mixed_precision", "no", "--num_validation_images", "2",
              "--perceptual_network", "none", "--validation_steps", "100"]  # fmt: skip


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(scope="module")
def train_photos(tmp_path_factory, astronaut) -> Path:
    folder = tmp_path_factory.mktemp("train-photos")
    for i, (top, left) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256)]):
        Image.fromarray(astronaut[top : top + 256, left : left + 256]).save(folder / f"crop{i}.png")
    return folder


@pytest.fixture(scope="module")
def trained_run(train_photos, tmp_path_factory) -> Path:
    """A finished 2-step run with its checkpoint-2, to be copied and damaged."""
    from pconv_hf.cli import train as train_cli

    out = tmp_path_factory.mktemp("run") / "out"
    argv = [*TRAIN_TINY, "--train_data", train_photos, "--output_dir", out, "--max_train_steps", "2",
            "--checkpointing_steps", "2"]  # fmt: skip
    train_cli.main([str(arg) for arg in argv])
    _reset_accelerate()
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewrite_json(path: Path, change: Callable[[dict], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _without_manifest(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """A checkpoint written before manifests existed, then damaged."""

    def apply(checkpoint: Path) -> None:
        (checkpoint / "checkpoint_manifest.json").unlink()
        damage(checkpoint)

    return apply


@pytest.mark.usefixtures("fresh_accelerate_state")
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda c: _truncate(c / "random_states_0.pkl"), "random_states_0.pkl is truncated or damaged"),
        (lambda c: _truncate(c / "model.safetensors"), "model.safetensors is truncated or damaged"),
        (lambda c: _truncate(c / "optimizer.bin"), "optimizer.bin is truncated or damaged"),
        (lambda c: (c / "optimizer.bin").unlink(), "optimizer.bin is missing"),
        (lambda c: (c / "training_state.json").write_text('{"global_step": 2'),
         "training_state.json is truncated or damaged"),
        (_without_manifest(lambda c: _truncate(c / "random_states_0.pkl")), "random_states_0.pkl is truncated"),
        (_without_manifest(lambda c: _truncate(c / "model.safetensors")), "model.safetensors is truncated"),
        (_without_manifest(lambda c: _truncate(c / "optimizer.bin")), "optimizer.bin is truncated"),
        (_without_manifest(lambda c: (c / "training_state.json").write_text('{"global_step": 2')),
         "training_state.json is not valid JSON"),
        (_without_manifest(lambda c: (c / "training_state.json").write_text("[2]")),
         "training_state.json must hold a JSON object, got list"),
        (_without_manifest(lambda c: _rewrite_json(c / "training_state.json", lambda d: {"global_step": "2"})),
         "training_state.json: 'global_step' must be an integer >= 0, got '2'"),
        (_without_manifest(lambda c: _rewrite_json(c / "data_state_rank0.json", lambda d: {**d, "batches": -1})),
         "data_state_rank0.json: 'batches' must be an integer >= 0, got -1"),
        (_without_manifest(lambda c: _rewrite_json(c / "data_state_rank0.json",
                                                   lambda d: {**d, "workers": {"0": {"epoch": None}}})),
         "data_state_rank0.json: workers.0.'epoch' must be an integer >= 0, got None"),
        (lambda c: _rewrite_json(c / "checkpoint_manifest.json", lambda d: {"files": []}),
         "checkpoint_manifest.json: 'files' must map file names"),
    ],
    ids=["rng-truncated", "model-truncated", "optimizer-truncated", "optimizer-missing", "state-edited",
         "old-rng-truncated", "old-model-truncated", "old-optimizer-truncated", "old-state-broken-json",
         "old-state-list", "old-state-string-step", "old-data-negative", "old-data-null-epoch", "manifest-bad"],
)  # fmt: skip
def test_resume_from_a_damaged_checkpoint_is_refused_naming_the_file(
    damage, message, trained_run, train_photos, tmp_path, capsys
):
    from pconv_hf.cli import train as train_cli

    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    damage(out / "checkpoint-2")
    before = snapshot(out)
    code, _, err = run_main(
        train_cli.main,
        [*TRAIN_TINY, "--train_data", train_photos, "--output_dir", out, "--max_train_steps", "3",
         "--resume_from_checkpoint", "latest"],
        capsys,
    )  # fmt: skip
    assert_refused(code, err, message, "train_accelerate.py")
    assert "checkpoint-2" in err.splitlines()[-1]
    assert snapshot(out) == before  # nothing loaded, trained or written


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_train_accelerate_refusals(train_photos, tmp_path, capsys):
    from pconv_hf.cli import train as train_cli

    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    base = [*TRAIN_TINY, "--train_data", train_photos, "--max_train_steps", "1"]
    for extra, message in [
        (["--output_dir", a_file], f"--output_dir '{a_file}' is a file, not a folder"),
        (["--output_dir", a_file / "sub"], f"cannot be made: {a_file} is a file, not a folder"),
        (["--output_dir", tmp_path / "o", "--train_batch_size", "1"],
         "--train_batch_size 1 trains BatchNorm on one image's statistics: give --freeze_bn"),
        (["--output_dir", tmp_path / "o", "--lambda_feature_matching", "1"],
         "--lambda_feature_matching 1.0 needs --lambda_adversarial > 0"),
        (["--output_dir", tmp_path / "o", "--lambda_adversarial", "nan"], "--lambda_adversarial must be >= 0, got nan"),
        (["--output_dir", tmp_path / "o", "--discriminator_layers", "0"], "--discriminator_layers must be >= 1, got 0"),
    ]:  # fmt: skip
        code, _, err = run_main(train_cli.main, [*base, *extra], capsys)
        assert_refused(code, err, message, "train_accelerate.py")
        _reset_accelerate()
    assert a_file.read_text() == "keep me" and not (tmp_path / "o").exists()


# --- issue 33: output names, 16-bit, frames, CMYK masks, interrupted runs, one mask for a folder, export ----------


@pytest.fixture(scope="module")
def odd_files(files, tmp_path_factory) -> dict[str, Path]:
    """More corpus files (beside the module's, so a symlink loop stays out of the inputs' snapshot)."""
    root = tmp_path_factory.mktemp("odd")
    rgb = np.asarray(Image.open(files["photo.png"]))
    grey = np.asarray(Image.open(files["photo.png"]).convert("L")).astype(np.uint16)
    paths: dict[str, Path] = {}
    deep = grey * 257 + np.arange(grey.size, dtype=np.uint16).reshape(grey.shape) % 200  # not multiples of 257
    for mode, name in (("I;16B", "grey16_big.tif"), ("I;16L", "grey16_little.tif")):
        paths[name] = root / name
        Image.frombytes(mode, (WIDTH, HEIGHT), deep.astype(">u2" if mode == "I;16B" else "<u2").tobytes()).save(
            paths[name]
        )
    paths["deep.npy"] = root / "deep.npy"
    np.save(paths["deep.npy"], deep)
    paths["rgb16.png"] = root / "rgb16.png"
    cv2.imwrite(str(paths["rgb16.png"]), rgb[..., ::-1].astype(np.uint16) * 257)
    frames = [Image.fromarray(rgb)] + [Image.fromarray(255 - rgb), Image.fromarray(rgb[::-1].copy())]
    for suffix in (".gif", ".png", ".webp", ".tif"):
        paths[f"frames{suffix}"] = root / f"frames{suffix}"
        options = {"lossless": True} if suffix == ".webp" else {}
        frames[0].save(paths[f"frames{suffix}"], save_all=True, append_images=frames[1:], **options)
    for suffix in (".jpg", ".tif"):
        paths[f"cmyk_mask{suffix}"] = root / f"cmyk_mask{suffix}"
        Image.fromarray(_box_mask()).convert("CMYK").save(paths[f"cmyk_mask{suffix}"])
    paths["loop"] = root / "loop"
    os.symlink(root / "loop_back", paths["loop"])
    os.symlink(paths["loop"], root / "loop_back")
    paths["loop/result.png"] = paths["loop"] / "result.png"
    return paths


def deep_grey_kept(name: str):
    """16-bit grey, big- or little-endian, comes back with every value outside the hole exact (not clipped to
    255), as 16-bit grey and without a note."""

    def check(out: Path, err: str) -> None:
        with Image.open(out / "result.tif") as image:
            assert image.mode == "I;16", image.mode
            values = np.asarray(image).astype(np.uint16)
        expected = np.load(_FILES[0]["deep.npy"])
        np.testing.assert_array_equal(values[OUTSIDE], expected[OUTSIDE])
        assert values.max() > 255 and "note" not in err, err

    return check


def deep_colour_kept(result: Path, photo: Path, err: str) -> None:
    """16-bit colour (RGB or RGBA) comes back as 16-bit colour, every value outside the hole exact (alpha exact
    everywhere), the hole filled, and no warning or note."""
    before, after = (cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in (photo, result))
    assert after.dtype == np.uint16 and after.shape == before.shape, (after.dtype, after.shape)
    np.testing.assert_array_equal(after[OUTSIDE], before[OUTSIDE])
    if before.shape[2] == 4:
        np.testing.assert_array_equal(after[..., 3], before[..., 3])
    assert (after[BOX] != before[BOX]).any(axis=-1).mean() > 0.5
    assert "warning" not in err and "note" not in err, err


def first_frame_filled(name: str):
    def check(out: Path, err: str) -> None:
        warnings = [line for line in err.splitlines() if "warning" in line]
        assert len(warnings) == 1 and f"{name}' has 3 frames" in warnings[0] and "first frame" in warnings[0], err
        with Image.open(_FILES[0][name]) as first:
            before = np.asarray(first.convert("RGB"))
        with Image.open(out / "result.png") as result:
            after = np.asarray(result.convert("RGB"))
        changed = (before != after).any(axis=-1)
        assert not changed[OUTSIDE].any() and changed[BOX].mean() > 0.5

    return check


def filled_near_box(out: Path, err: str) -> None:
    """The box filled, and nothing beyond the JPEG blocks around it (a JPEG mask's ringing is nonzero: it fills)."""
    before, after = np.asarray(Image.open(_FILES[0]["photo.png"])), written(out)
    changed = (before != after).any(axis=-1)
    near = np.zeros_like(changed)
    near[BOX[0].start - 8 : BOX[0].stop + 8, BOX[1].start - 8 : BOX[1].stop + 8] = True
    assert changed[BOX].mean() > 0.5 and not changed[~near].any()


LONG_NAME = "n" * 246 + ".png"  # 250 characters: fits the file system's 255

ISSUE_33_CASES = {
    "--format a path": Case([*SINGLE[:5], "{out}", *BASE, "--format", "a/b.png"], "invalid choice: 'a/b.png'", code=2),
    "--format out of -o": Case([*SINGLE[:5], "{out}", *BASE, "--format", "/../one.png"], "invalid choice", code=2),
    "-o in a symlink loop": Case([*SINGLE[:5], "{loop/result.png}", *BASE], "is a symlink loop"),
    "-o a symlink loop": Case([*SINGLE[:5], "{loop}", *BASE], "is a symlink loop"),
    "250-character output name": Case(
        [*SINGLE[:5], f"{{out}}/{LONG_NAME}", *BASE],
        check=lambda out, err: [p.name for p in out.iterdir()] == [LONG_NAME] or pytest.fail(str(list(out.iterdir()))),
    ),
    "16-bit grey big-endian tiff": Case(
        ["--image", "{grey16_big.tif}", "--mask", "{mask.png}", "-o", "{out}/result.tif", *BASE],
        check=deep_grey_kept("grey16_big.tif"),
    ),
    "16-bit grey little-endian tiff": Case(
        ["--image", "{grey16_little.tif}", "--mask", "{mask.png}", "-o", "{out}/result.tif", *BASE],
        check=deep_grey_kept("grey16_little.tif"),
    ),
    "16-bit colour png keeps 16 bits": Case(
        ["--image", "{rgb16.png}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE],
        check=lambda out, err: deep_colour_kept(out / "result.png", _FILES[0]["rgb16.png"], err),
    ),
    **{
        f"multi-frame {suffix}": Case(
            ["--image", f"{{frames{suffix}}}", "--mask", "{mask.png}", "-o", "{out}/result.png", *BASE],
            check=first_frame_filled(f"frames{suffix}"),
        )
        for suffix in (".gif", ".png", ".webp", ".tif")
    },
    **{
        f"cmyk mask {suffix}": Case(
            ["--image", "{photo.png}", "--mask", f"{{cmyk_mask{suffix}}}", "-o", "{out}/result.png", *BASE],
            check=filled_near_box,
        )
        for suffix in (".jpg", ".tif")
    },
}


@pytest.mark.parametrize("name", list(ISSUE_33_CASES))
def test_pconv_inpaint_issue_33(name, files, odd_files, model_variants, model_dir, tmp_path, capsys):
    everything = {**files, **odd_files}
    _FILES[:] = [everything]
    case = ISSUE_33_CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    inputs = snapshot(files["photo.png"].parent)
    argv = [_expand(arg, everything, model_variants, model_dir, out) for arg in case.args]
    code, _, err = run_main(inpaint_main, argv, capsys)
    if case.message is None:
        assert code == 0 and "Traceback" not in err, err
        case.check(out, err)
    else:
        assert code == case.code and "Traceback" not in err, err
        assert case.message in err, err
        assert not any(out.iterdir()), list(out.iterdir())
    assert snapshot(files["photo.png"].parent) == inputs


def _deep_colour_photo(files: dict[str, Path], folder: Path, channels: int, suffix: str) -> Path:
    """The corpus photo at 16 bits: values above 255 and odd (no multiple of 257), a varied 16-bit alpha."""
    rgb = np.asarray(Image.open(files["photo.png"]).convert("RGB")).astype(np.uint16)
    deep = (rgb * 256 + np.arange(rgb.size, dtype=np.uint16).reshape(rgb.shape) % 256) | 1
    if channels == 4:
        alpha = (np.linspace(300, 65535, WIDTH).astype(np.uint16) | 1)[None, :].repeat(HEIGHT, axis=0)
        deep = np.dstack([deep, alpha])
    path = folder / f"rgb{'a' if channels == 4 else ''}16{suffix}"
    assert cv2.imwrite(str(path), deep[..., [2, 1, 0, 3][:channels]])  # OpenCV writes BGR(A)
    return path


@pytest.mark.parametrize(
    ("channels", "suffix", "out_suffix"), [(4, ".png", ".png"), (3, ".tif", ".tif"), (4, ".tif", ".png")]
)
def test_pconv_inpaint_keeps_sixteen_bit_colour(files, model_dir, tmp_path, capsys, channels, suffix, out_suffix):
    """Issue 33 item 4: 16-bit RGB(A) PNG / TIFF through pconv-inpaint comes back at 16 bits, exact outside the
    hole (it came back 8-bit)."""
    photo = _deep_colour_photo(files, tmp_path, channels, suffix)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--image", photo, "--mask", files["mask.png"], "-o", out / f"result{out_suffix}", "--model", model_dir]
    code, _, err = run_main(inpaint_main, argv, capsys)
    assert code == 0 and "Traceback" not in err, err
    deep_colour_kept(out / f"result{out_suffix}", photo, err)


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_pconv_inpaint_says_a_lossy_output_of_sixteen_bit_colour_is_eight_bit(
    files, model_dir, tmp_path, capsys, suffix
):
    """A JPEG / WebP of a 16-bit photo: one note that it is written at 8 bits, the values divided by 257."""
    photo = _deep_colour_photo(files, tmp_path, 3, ".png")
    out = tmp_path / f"result{suffix}"
    code, _, err = run_main(
        inpaint_main, ["--image", photo, "--mask", files["mask.png"], "-o", out, "--model", model_dir], capsys
    )
    assert code == 0 and "Traceback" not in err, err
    notes = [line for line in err.splitlines() if "note" in line]
    assert len(notes) == 1 and f"{out.name} is written at 8 bits" in notes[0], err
    eight = (cv2.imread(str(photo), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.uint32) + 128) // 257
    with Image.open(out) as result:
        assert result.mode == "RGB"
        if suffix == ".webp":  # lossless by default: exact
            np.testing.assert_array_equal(np.asarray(result)[OUTSIDE], eight[OUTSIDE])
        else:  # the 8-bit pixels through the same JPEG encoder differ only where the fill's blocks reach
            Image.fromarray(eight.astype(np.uint8)).save(tmp_path / "eight.jpg", quality=95)
            near = np.asarray(Image.open(tmp_path / "eight.jpg"), np.int16) - np.asarray(result, np.int16)
            assert np.abs(near[:8]).max() == 0 and np.abs(near[OUTSIDE]).mean() < 1  # rows 0-7: far from the hole


def test_folder_outputs_that_collide_after_resolving_are_refused(folder_job, model_dir, capsys):
    photos, masks, out = folder_job
    out.mkdir()
    (out / "c.png").symlink_to(out / "d.png")  # c's and d's results would land in one file
    code, _, err = run_main(inpaint_main, ["--image", photos, "--mask", masks, "-o", out, "--model", model_dir], capsys)
    assert_refused(code, err, "c.jpg and d.jpg would both be written", "pconv-inpaint")
    (out / "c.png").unlink()
    shutil.copy(photos / "a.jpg", photos / "a.png")  # two photos, one NAME.png
    code, _, err = run_main(inpaint_main, ["--image", photos, "--mask", masks, "-o", out, "--model", model_dir], capsys)
    assert_refused(code, err, "would both be written", "pconv-inpaint")
    assert not any(out.iterdir())


def test_one_mask_for_a_folder_of_photos(folder_job, files, model_dir, capsys):
    """--mask FILE with --image DIR: the mask of every photo; one of another size is listed, the rest written."""
    photos, _, out = folder_job
    (photos / "b.jpg").unlink()  # the truncated one
    shutil.copy(files["small_mask.png"], photos / "watermark.png")  # the mask among the photos is not a photo
    (photos / "e.jpg").unlink()
    Image.open(files["photo.jpg"]).resize((WIDTH // 2, HEIGHT // 2)).save(photos / "e.jpg")
    Image.fromarray(_box_mask()[: HEIGHT // 2, : WIDTH // 2]).save(photos / "watermark.png")
    argv = ["--image", photos, "--mask", photos / "watermark.png", "-o", out, "--model", model_dir]
    code, stdout, err = run_main(inpaint_main, argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert "3 photos failed" in err and "a.jpg" in err and "must match" in err  # 128x96 photos, 64x48 mask
    assert "Inpainted 1 photo " in stdout and sorted(p.name for p in out.iterdir()) == ["e.png"]
    shutil.copy(files["mask.png"], photos / "watermark.png")
    code, stdout, err = run_main(inpaint_main, [*argv, "--skip_existing"], capsys)
    assert code == 0 and "Inpainted 3 photos" in stdout and "skipped 1" in stdout  # a, c, d now; e was done
    for name in ("a", "c", "d"):
        after = written(out, f"{name}.png")
        before = np.asarray(Image.open(photos / f"{name}.jpg").convert("RGB"))
        changed = (before != after).any(axis=-1)
        assert not changed[OUTSIDE].any() and changed[BOX].mean() > 0.5
    code, _, err = run_main(inpaint_main, ["--image", photos / "a.jpg", "--mask", photos, "-o", out], capsys)
    assert_refused(code, err, "is a folder but --image", "pconv-inpaint")


def test_ctrl_c_in_a_folder_run_says_what_was_written_and_exits_130(folder_job, files, model_dir, capsys, monkeypatch):
    photos, masks, out = folder_job
    shutil.copy(photos / "a.jpg", photos / "b.jpg")
    (masks / "e.png").unlink()
    shutil.copy(masks / "a.png", masks / "e.png")
    real_save = Image.Image.save
    calls = []

    def save_then_ctrl_c(image, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # Ctrl+C while the second result is half-written
            Path(path).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        return real_save(image, path, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_ctrl_c)
    argv = ["--image", photos, "--mask", masks, "-o", out, "--model", model_dir]
    code, _, err = run_main(inpaint_main, argv, capsys)
    assert code == 130 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("pconv-inpaint:")]
    assert len(lines) == 1 and "interrupted: wrote 1 of 5 photos" in lines[0] and "--skip_existing" in lines[0], err
    assert [p.name for p in out.iterdir()] == ["a.png"]  # complete; nothing half-written, no temporary file
    assert Image.open(out / "a.png").size == (WIDTH, HEIGHT)
    monkeypatch.setattr(Image.Image, "save", real_save)
    code, stdout, _ = run_main(inpaint_main, [*argv, "--skip_existing"], capsys)
    assert code == 0 and "Inpainted 4 photos" in stdout and "skipped 1" in stdout


# pconv-export


def fake_pconv_onnx(path: Path, config: dict) -> Path:
    """A small ONNX file with a pconv export's inputs and metadata (not a network): stands in where only the
    file handling is tested, so no test waits for a real export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pconv_hf.onnx import CONFIG_KEY

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("image", "mask")]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    weight = numpy_helper.from_array(np.linspace(-1, 1, 4096, dtype=np.float32).reshape(16, 16, 4, 4), "w")
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["output"])], "g", inputs, [output], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key=CONFIG_KEY, value=json.dumps(config))
    onnx.save(model, path)
    return path


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
if sys.argv[2] == "stand-in":  # the export's own file: 4 MB, written the way torch writes it
    import torch, types
    class Program:
        model = types.SimpleNamespace(metadata_props={}, doc_string="")
        def save(self, path, external_data=False):
            with open(path, "wb") as file:
                file.write(bytes(4_000_000))
    torch.onnx.export = lambda *args, **kwargs: Program()
from pconv_hf.cli.export import main
main(sys.argv[3:])
"""


def run_with_file_size_limit(limit: int, stand_in: bool, argv: list) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", FULL_DISK, str(limit), "stand-in" if stand_in else "-", *map(str, argv)]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)


def test_pconv_export_on_a_full_disk_leaves_no_partial_onnx(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the earlier export")
    done = run_with_file_size_limit(1_000_000, True, [model_dir, out / "model.onnx"])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    expected = f"pconv-export: error: cannot write {out / 'model.onnx'}: File too large"
    assert done.stderr.strip().splitlines() == [expected]
    assert [p.name for p in out.iterdir()] == ["model.onnx"]  # no partial file, no temporary one
    assert (out / "model.onnx").read_bytes() == b"the earlier export"


@pytest.fixture
def web_sources(model_dir, tmp_path) -> tuple[Path, Path]:
    """A stand-in pconv .onnx file and an ONNX Runtime Web dist folder of placeholder files (1 MB each)."""
    from pconv_hf.web import ORT_FILES

    onnx_file = fake_pconv_onnx(tmp_path / "model.onnx", json.loads((model_dir / "config.json").read_text()))
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ORT_FILES:
        (dist / name).write_bytes(bytes(1_000_000))
    return onnx_file, dist


def test_pconv_export_web_on_a_full_disk_keeps_the_folder_as_it_was(web_sources, tmp_path, capsys):
    from pconv_hf.cli.export import main as export_main

    onnx_file, dist = web_sources
    site = tmp_path / "sites" / "site"
    argv = ["--web", site, "--model", onnx_file, "--ort-dist", dist]
    code, stdout, _ = run_main(export_main, argv, capsys)
    assert code == 0 and "Storing the model's weights" in stdout and "Copying the page" in stdout  # progress
    before = snapshot(site)
    done = run_with_file_size_limit(500_000, False, argv)  # the runtime files are 1 MB each: the disk fills
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("pconv-export: error: ") and "File too large" in done.stderr
    assert snapshot(site) == before  # the earlier page is whole
    assert [p.name for p in (tmp_path / "sites").iterdir()] == ["site"]  # no hidden half-built folder either
    code, _, err = run_main(export_main, argv, capsys)  # room again: the rerun is not refused
    assert code == 0, err


def test_web_folder_cut_short_by_an_older_version_is_rebuilt(web_sources, tmp_path):
    from pconv_hf.web import MANIFEST_FILE, build_web

    onnx_file, dist = web_sources
    site = tmp_path / "site"
    (site / "ort").mkdir(parents=True)
    (site / "index.html").write_text("half")  # no model.json: an earlier build stopped by a full disk
    assert build_web(onnx_file, site, ort_dist_dir=dist) == site and (site / MANIFEST_FILE).is_file()
    (site / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an earlier pconv web folder.*notes.txt"):
        build_web(onnx_file, site, ort_dist_dir=dist)


@pytest.fixture
def web_folder(tmp_path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "index.html").write_text("<html></html>")
    (folder / "model.json").write_text("{}")
    return folder


def test_pconv_export_serve_refusals(web_folder, capsys):
    from pconv_hf.cli.export import main as export_main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for argv, message, code in [
            (["--serve", web_folder, "--port", "70000"], "--port: must be from 0 to 65,535, got 70,000", 2),
            (["--serve", web_folder, "--port", "-1"], "--port: must be from 0 to 65,535, got -1", 2),
            (["--serve", web_folder, "--port", busy.getsockname()[1]], "Address already in use; pick another", 1),
            (["--serve", web_folder, "--host", "no-such-host.invalid"], "--host must name this machine", 1),
        ]:
            code_seen, _, err = run_main(export_main, argv, capsys)
            assert_refused(code_seen, err, message, "pconv-export")
            assert code_seen == code
    finally:
        busy.close()


def test_pconv_export_to_a_folder_is_refused_before_exporting(model_dir, tmp_path, capsys, monkeypatch):
    from pconv_hf.cli.export import main as export_main

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: pytest.fail("exported before the check"))
    (tmp_path / "models.onnx").mkdir()
    code, _, err = run_main(export_main, [model_dir, tmp_path / "models.onnx"], capsys)
    assert_refused(code, err, "models.onnx is a folder; name the .onnx file", "pconv-export")
    (tmp_path / "file").write_text("x")
    code, _, err = run_main(export_main, [model_dir, tmp_path / "file" / "m.onnx"], capsys)
    assert_refused(code, err, "is a file, not a folder", "pconv-export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "models.onnx"]


# The addresses the cards may link, each checked to exist; the package has no published repository to link.
CARD_ADDRESSES = {"https://arxiv.org/abs/1804.07723"}


def test_model_cards_link_only_addresses_that_exist():
    for card in (Path(__file__).parents[1] / "model_card.md", pconv_hf.DEFAULT_CHECKPOINT / "README.md"):
        addresses = set(re.findall(r"https?://[^\s)>\]\"']+", card.read_text(encoding="utf-8")))
        assert addresses <= CARD_ADDRESSES, (card, addresses - CARD_ADDRESSES)
