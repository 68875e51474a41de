"""pconv-inpaint: single-file and folder modes on real photos, and every refusal with its message."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import pconv_hf
from pconv_hf.cli.inpaint import main


def box_mask(height: int, width: int, top: int, left: int, size: int) -> Image.Image:
    mask = np.zeros((height, width), np.uint8)
    mask[top : top + size, left : left + size] = 255
    return Image.fromarray(mask)


@pytest.fixture
def photos(tmp_path):
    """photos/{coffee.jpg, chelsea.png} and masks/{coffee.png, chelsea_mask.png}: both naming rules."""
    photo_dir, mask_dir = tmp_path / "photos", tmp_path / "masks"
    photo_dir.mkdir()
    mask_dir.mkdir()
    Image.fromarray(data.coffee()).save(photo_dir / "coffee.jpg", quality=90)
    Image.fromarray(data.chelsea()).save(photo_dir / "chelsea.png")
    box_mask(400, 600, 100, 200, 60).save(mask_dir / "coffee.png")
    box_mask(300, 451, 50, 50, 40).save(mask_dir / "chelsea_mask.png")
    return photo_dir, mask_dir


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Exit code (0 when main returns), stdout, stderr."""
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_filled(original: np.ndarray, result: np.ndarray, hole: np.ndarray) -> None:
    assert result.shape == original.shape
    np.testing.assert_array_equal(result[~hole], original[~hole])
    assert (result[hole] != original[hole]).any()


def test_single_file(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    out = tmp_path / "result.png"
    code, stdout, _ = run_cli(
        ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "-o", out, "--model", model_dir],
        capsys,
    )
    assert code == 0
    assert "Inpainted 1 photo" in stdout
    original = np.asarray(Image.open(photo_dir / "coffee.jpg"))
    hole = np.asarray(Image.open(mask_dir / "coffee.png")) > 0
    with Image.open(out) as result:
        assert result.format == "PNG"
        assert_filled(original, np.asarray(result), hole)


def test_single_file_dilate_and_strategy(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    out = tmp_path / "result.webp"
    code, _, _ = run_cli(
        ["--image", photo_dir / "chelsea.png", "--mask", mask_dir / "chelsea_mask.png", "-o", out]
        + ["--model", model_dir, "--dilate", "3", "--strategy", "resize", "--device", "cpu"],
        capsys,
    )
    assert code == 0
    original = data.chelsea()
    grown = np.zeros(original.shape[:2], bool)
    grown[47:93, 47:93] = True  # the 40 px box grown by 3 px on every side
    with Image.open(out) as result:
        assert result.format == "WEBP"  # written lossless, so untouched pixels survive exactly
        assert_filled(original, np.asarray(result), grown)


def test_folder_mode(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    out_dir = tmp_path / "out"
    code, stdout, _ = run_cli(["--image", photo_dir, "--mask", mask_dir, "-o", out_dir, "--model", model_dir], capsys)
    assert code == 0
    assert "Inpainted 2 photos" in stdout
    assert sorted(path.name for path in out_dir.iterdir()) == ["chelsea.png", "coffee.png"]
    for name, mask_name in (("coffee.jpg", "coffee.png"), ("chelsea.png", "chelsea_mask.png")):
        original = np.asarray(Image.open(photo_dir / name))
        hole = np.asarray(Image.open(mask_dir / mask_name)) > 0
        assert_filled(original, np.asarray(Image.open(out_dir / f"{name.rsplit('.', 1)[0]}.png")), hole)


def test_folder_mode_photos_and_masks_in_one_folder(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    shutil.copy(mask_dir / "chelsea_mask.png", photo_dir)
    (photo_dir / "coffee.jpg").unlink()
    code, _, _ = run_cli(
        ["--image", photo_dir, "--mask", photo_dir, "-o", tmp_path / "out", "--model", model_dir], capsys
    )
    assert code == 0
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["chelsea.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "{photos}/missing.jpg", "--mask", "{masks}/coffee.png", "-o", "{tmp}/x.png"], "does not exist"),
        (["--image", "{photos}/coffee.jpg", "--mask", "{masks}/chelsea_mask.png", "-o", "{tmp}/x.png"], "must match"),
        (["--image", "{photos}/coffee.jpg", "--mask", "{masks}/coffee.png", "-o", "{photos}/coffee.jpg"], "inputs"),
        (["--image", "{photos}", "--mask", "{masks}", "-o", "{photos}"], "is an input folder"),
        (["--image", "{photos}", "--mask", "{masks}", "-o", "{masks}"], "is an input folder"),
        (["--image", "{photos}/coffee.jpg", "--mask", "{masks}", "-o", "{tmp}/x.png"], "is a folder but --image"),
        (["--image", "{photos}/coffee.jpg", "--mask", "{masks}/coffee.png", "-o", "{tmp}/x.xyz"], "image format"),
        (
            ["--image", "{photos}/coffee.jpg", "--mask", "{masks}/coffee.png", "-o", "{tmp}/x.png", "--seed", "-1"],
            "seed must be from 0 to",
        ),
    ],
)
def test_refusals(tmp_path, photos, model_dir, capsys, args, message):
    photo_dir, mask_dir = photos
    args = [arg.format(photos=photo_dir, masks=mask_dir, tmp=tmp_path) for arg in args]
    before = {path: path.read_bytes() for path in [*photo_dir.iterdir(), *mask_dir.iterdir()]}
    code, _, stderr = run_cli([*args, "--model", model_dir, "--overwrite"], capsys)
    assert code == 1
    assert stderr.startswith("pconv-inpaint: error: ") and message in stderr
    assert "Traceback" not in stderr
    assert {path: path.read_bytes() for path in before} == before  # inputs untouched


def test_image_without_mask_is_named(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    (mask_dir / "coffee.png").unlink()
    code, _, stderr = run_cli(
        ["--image", photo_dir, "--mask", mask_dir, "-o", tmp_path / "out", "--model", model_dir], capsys
    )
    assert code == 1
    assert "no mask" in stderr and "coffee.jpg" in stderr and "chelsea" not in stderr
    assert not (tmp_path / "out").exists()  # nothing processed before the check


def test_existing_output_needs_overwrite(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    out = tmp_path / "result.png"
    out.write_bytes(b"keep me")
    args = ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "-o", out, "--model", model_dir]
    code, _, stderr = run_cli(args, capsys)
    assert code == 1 and "already exists" in stderr and "--overwrite" in stderr
    assert out.read_bytes() == b"keep me"
    code, _, _ = run_cli([*args, "--overwrite"], capsys)
    assert code == 0
    assert Image.open(out).size == (600, 400)


def test_missing_bundled_model_says_what_to_do(tmp_path, photos, capsys, monkeypatch):
    import pconv_hf

    monkeypatch.setattr(pconv_hf, "DEFAULT_CHECKPOINT", tmp_path / "no-such-model")
    photo_dir, mask_dir = photos
    code, _, stderr = run_cli(
        ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "-o", tmp_path / "x.png"], capsys
    )
    assert code == 1
    assert "bundled model is missing" in stderr and "--model DIR" in stderr


def test_console_script(tmp_path, photos, model_dir):
    """The installed entry point (pyproject [project.scripts]) runs the same main()."""
    # Installed beside this interpreter (the venv may not be on PATH when pytest runs as .venv/bin/python -m pytest).
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    executable = shutil.which("pconv-inpaint", path=search_path)
    assert executable, "pconv-inpaint is not installed: pip install -e . (--no-deps)"
    photo_dir, mask_dir = photos
    out = tmp_path / "out.png"
    args = ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "-o", out, "--model", model_dir]
    done = subprocess.run([executable, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (600, 400)
    again = subprocess.run([executable, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_two_masks_for_one_photo_is_refused(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    shutil.copy(mask_dir / "coffee.png", mask_dir / "coffee_mask.png")
    code, _, stderr = run_cli(
        ["--image", photo_dir, "--mask", mask_dir, "-o", tmp_path / "out", "--model", model_dir], capsys
    )
    assert code == 1
    assert "more than one mask" in stderr and "coffee.png" in stderr and "coffee_mask.png" in stderr


def test_quality_for_lossy_outputs(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    common = ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "--model", model_dir]
    sizes = {}
    for name, extra in [("q95.jpg", []), ("q30.jpg", ["--quality", "30"]), ("lossless.webp", []),
                        ("q50.webp", ["--quality", "50"]), ("reference.png", [])]:  # fmt: skip
        code, _, err = run_cli([*common, "-o", tmp_path / name, *extra], capsys)
        assert code == 0, err
        sizes[name] = (tmp_path / name).stat().st_size
    assert sizes["q30.jpg"] < 0.6 * sizes["q95.jpg"]  # JPEG defaults to quality 95
    reference = np.asarray(Image.open(tmp_path / "reference.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "lossless.webp")), reference)  # WebP: lossless
    assert (np.asarray(Image.open(tmp_path / "q50.webp")) != reference).any() and sizes["q50.webp"] < sizes[
        "lossless.webp"
    ]


def test_format_in_single_file_mode(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    common = ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "--model", model_dir]
    out = tmp_path / "out"
    out.mkdir()
    code, _, _ = run_cli([*common, "-o", out, "--format", "tiff"], capsys)  # a folder: NAME.<format>
    assert code == 0 and [p.name for p in out.iterdir()] == ["coffee.tiff"]
    code, _, err = run_cli([*common, "-o", tmp_path / "x.png", "--format", "webp"], capsys)  # used to be ignored
    assert code == 1 and "--format webp does not match -o x.png" in err and not (tmp_path / "x.png").exists()
    code, _, err = run_cli([*common, "-o", tmp_path / "x.png", "--format", "gif"], capsys)  # not a format it writes
    assert code == 2 and "--format: invalid choice: 'gif'" in err and not (tmp_path / "x.png").exists()
    code, _, _ = run_cli([*common, "-o", tmp_path / "x.jpg", "--format", "jpg"], capsys)  # agreeing is fine
    assert code == 0 and Image.open(tmp_path / "x.jpg").format == "JPEG"


def test_skip_existing_in_single_file_mode(tmp_path, photos, model_dir, capsys):
    photo_dir, mask_dir = photos
    out = tmp_path / "result.png"
    out.write_bytes(b"done before")
    args = ["--image", photo_dir / "coffee.jpg", "--mask", mask_dir / "coffee.png", "-o", out, "--model", model_dir]
    code, stdout, _ = run_cli([*args, "--skip_existing"], capsys)
    assert code == 0 and "skipped 1 already done" in stdout and out.read_bytes() == b"done before"


def test_texture_changes_hole_pixels_only(tmp_path, model_dir, capsys):
    """--texture (with --seed) is exactly inpaint(texture=True, seed=...): only hole pixels change, and they are not
    the network-only fill that --no-texture writes; without either flag the CLI follows inpaint()'s default."""
    photo = np.ascontiguousarray(data.coffee()[100:292, 150:406])  # 256×192: the texture stage is slow-ish
    Image.fromarray(photo).save(tmp_path / "photo.png")
    mask = box_mask(192, 256, 60, 100, 40)
    mask.save(tmp_path / "mask.png")
    common = ["--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--model", model_dir]
    results = {}
    for name, flags in [("texture", ["--texture", "--seed", "7"]), ("plain", ["--no-texture"]), ("default", [])]:
        code, _, err = run_cli([*common, "-o", tmp_path / f"{name}.png", *flags], capsys)
        assert code == 0, err
        results[name] = np.asarray(Image.open(tmp_path / f"{name}.png"))

    hole = np.asarray(mask) > 0
    model = pconv_hf.load_model(model_dir)
    expected = {
        "texture": pconv_hf.inpaint(photo, mask, model=model, texture=True, seed=7),
        "plain": pconv_hf.inpaint(photo, mask, model=model, texture=False),
        "default": pconv_hf.inpaint(photo, mask, model=model),  # inpaint()'s own texture and seed
    }
    for name, result in results.items():
        np.testing.assert_array_equal(result, np.asarray(expected[name]), err_msg=name)
    np.testing.assert_array_equal(results["texture"][~hole], photo[~hole])
    assert (results["texture"][hole] != results["plain"][hole]).any()
