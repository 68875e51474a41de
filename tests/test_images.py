"""pconv_hf.images: one rule for user masks everywhere, EXIF orientation, modes the output can't hold, bombs."""

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from skimage import data

import pconv_hf
from pconv_hf import PartialConv2d, PConvUNet
from pconv_hf.cli.inpaint import main as cli_main
from pconv_hf.evaluation import mask_settings
from pconv_hf.images import (
    displayed_size,
    list_images,
    open_full_depth,
    open_image,
    save_image,
    simplest_mode,
    to_eight_bit,
    to_hole_mask,
    to_rgb,
)
from pconv_hf.masks import MaskFolder, load_mask, make_mask_source

SIZE = 64


def soft_edged_disc() -> np.ndarray:
    """(64, 64) uint8: a disc at 255 with an anti-aliased rim of faint values (1-254), zero elsewhere."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    distance = np.hypot(yy - 30.3, xx - 33.7)
    return np.clip((14 - distance) * 60, 0, 255).astype(np.uint8)


def mask_files(folder: Path) -> dict[str, Path]:
    """The same disc as a soft-edged JPEG, RGBA (transparent outside), 16-bit PNG and palette PNG."""
    folder.mkdir()
    disc = soft_edged_disc()
    files = {}
    files["jpeg"] = folder / "disc.jpg"
    Image.fromarray(disc).save(files["jpeg"], quality=75)
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the opaque pixels count
    rgba[..., 3] = disc
    files["rgba"] = folder / "disc_rgba.png"
    Image.fromarray(rgba).save(files["rgba"])
    files["16-bit"] = folder / "disc16.png"
    Image.fromarray(disc.astype(np.uint16) * 257).save(files["16-bit"])
    files["palette"] = folder / "disc_palette.png"
    Image.fromarray(disc).convert("P").save(files["palette"])
    return files


def test_one_rule_nonzero_fills_transparent_never():
    disc = soft_edged_disc()
    np.testing.assert_array_equal(to_hole_mask(disc), disc != 0)
    faint = np.zeros((4, 4), np.uint8)
    faint[1, 2] = 40  # a JPEG or anti-aliased edge pixel: filled, everywhere
    assert to_hole_mask(faint).sum() == 1
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[..., 3] = 0
    assert not to_hole_mask(rgba).any()
    assert to_hole_mask(np.where(faint == 0, 255, 0).astype(np.uint8), holes_are="black").sum() == 1
    with pytest.raises(ValueError, match="does not match image size 5x4"):
        to_hole_mask(faint, 4, 5)


def test_same_mask_file_gives_the_same_hole_everywhere(tmp_path, tiny_model):
    """inpaint(), the CLI, evaluate --masks and a training mask folder read a mask file by one rule."""
    files = mask_files(tmp_path / "masks")
    photo = data.astronaut()[:SIZE, 200 : 200 + SIZE]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    for kind, path in files.items():
        expected = to_hole_mask(path)
        # JPEG noise may add faint pixels, never lose the disc or its rim.
        assert expected[soft_edged_disc() != 0].all(), kind
        # inpaint(): exactly the hole pixels change.
        result = np.asarray(pconv_hf.inpaint(tmp_path / "photo.png", path, model=tiny_model))
        changed = (result != photo).any(axis=-1)
        assert not changed[~expected].any() and changed[expected].mean() > 0.9, kind
        # The CLI writes the same thing.
        out = tmp_path / f"cli-{kind}.png"
        code = _run_cli(
            ["--image", tmp_path / "photo.png", "--mask", path, "-o", out, "--model", _saved(tiny_model, tmp_path)]
        )
        assert code == 0
        np.testing.assert_array_equal(np.asarray(Image.open(out)), result)
        # evaluate --masks, a training mask folder (--mask_source DIR) and load_mask: the same hole.
        single = tmp_path / f"folder-{kind}"
        single.mkdir()
        (single / path.name).write_bytes(path.read_bytes())
        np.testing.assert_array_equal(load_mask(path) == 0, expected)
        np.testing.assert_array_equal(MaskFolder(single)[0] == 0, expected)
        training_mask = make_mask_source(str(single), SIZE)(np.random.default_rng(0))
        assert (training_mask == 0).sum() == expected.sum()  # flipped / transposed, same hole
        args = type("Args", (), {"masks": str(single)})()
        ((_, evaluated),) = next(iter(mask_settings(args, SIZE, 1).values()))
        np.testing.assert_array_equal(evaluated == 0, expected)


_SAVED: dict[int, Path] = {}


def _saved(model: PConvUNet, tmp_path: Path) -> Path:
    if id(model) not in _SAVED:
        model.save_pretrained(tmp_path / "model")
        _SAVED[id(model)] = tmp_path / "model"
    return _SAVED[id(model)]


def _run_cli(args) -> int:
    try:
        cli_main([str(arg) for arg in args])
    except SystemExit as exit:
        return exit.code
    return 0


def exif_rotated_photo(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A phone-style JPEG stored 300 wide x 451 high... displayed turned (EXIF orientation 6: 451 x 300), and a
    mask drawn on the displayed photo. Returns (photo, mask, displayed pixels)."""
    displayed = data.chelsea()  # (300, 451, 3): as the person sees it
    stored = np.ascontiguousarray(np.rot90(displayed, k=-1))  # rotated so orientation 6 shows it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "exif.jpg"
    Image.fromarray(stored).save(photo, exif=exif, quality=100, subsampling=0)
    mask = np.zeros(displayed.shape[:2], np.uint8)
    mask[40:90, 300:380] = 255  # the cat's ear region, away from the centre
    mask_path = tmp_path / "exif_mask.png"
    Image.fromarray(mask).save(mask_path)
    upright = np.asarray(open_image(photo).convert("RGB"))
    return photo, mask_path, upright


def test_exif_rotated_photo_fills_where_the_mask_was_drawn(tmp_path, tiny_model, model_dir):
    photo, mask_path, upright = exif_rotated_photo(tmp_path)
    assert displayed_size(photo) == (451, 300) and Image.open(photo).size == (300, 451)
    hole = to_hole_mask(mask_path)
    result = np.asarray(pconv_hf.inpaint(photo, mask_path, model=tiny_model))
    assert result.shape == (300, 451, 3)
    changed = (result != upright).any(axis=-1)
    assert not changed[~hole].any() and changed[hole].mean() > 0.9

    # The CLI (which used to refuse: "exif_mask.png is 451x300 but exif.jpg is 300x451") writes the same pixels,
    # upright, with no orientation tag left to turn them again.
    model = PConvUNet.from_pretrained(model_dir)
    out = tmp_path / "out.png"
    assert _run_cli(["--image", photo, "--mask", mask_path, "-o", out, "--model", model_dir, "--strategy", "crop"]) == 0
    with Image.open(out) as written:
        assert written.size == (451, 300) and written.getexif().get(0x0112, 1) == 1
        cli_result = np.asarray(written)
    np.testing.assert_array_equal(
        cli_result, np.asarray(pconv_hf.inpaint(photo, mask_path, model=model, strategy="crop"))
    )

    # The app on the same files: Gradio turns the upload upright, the person paints on what they see.
    from gradio.data_classes import FileData
    from gradio.image_utils import preprocess_image

    import app

    background = preprocess_image(FileData(path=str(photo), orig_name="exif.jpg"), str(tmp_path), "png", "RGBA", "pil")
    layer = Image.open(mask_path).convert("RGBA")
    done = app.predict(
        {"background": background, "layers": [layer], "composite": None}, "crop", 0, models={"tiny": model}
    )
    np.testing.assert_array_equal(np.asarray(done.result.convert("RGB")), cli_result)


def test_cmyk_photo_is_written_as_rgb_png_with_a_note(tmp_path, model_dir, capsys):
    rgb = data.coffee()[:128, :128]
    photo = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(photo, quality=95)
    mask = np.zeros((128, 128), np.uint8)
    mask[40:70, 50:90] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert _run_cli(["--image", photo, "--mask", tmp_path / "mask.png", "-o", out, "--model", model_dir]) == 0
    with Image.open(out) as written:
        assert written.mode == "RGB" and written.size == (128, 128)
        filled = np.asarray(written)
    original = np.asarray(Image.open(photo).convert("RGB"))
    np.testing.assert_array_equal(filled[mask == 0], original[mask == 0])
    assert "cannot hold CMYK" in capsys.readouterr().err


def bomb_png(path: Path, side: int = 60000) -> Path:
    """A small PNG whose header claims ``side`` x ``side`` pixels."""
    Image.new("L", (1, 1)).save(path)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"IHDR")
    raw[start + 4 : start + 12] = struct.pack(">II", side, side)
    raw[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(raw[start : start + 17])))
    path.write_bytes(bytes(raw))
    return path


def test_decompression_bomb_is_a_one_line_error(tmp_path, model_dir, capsys):
    bomb = bomb_png(tmp_path / "bomb.png")
    code = _run_cli(["--image", bomb, "--mask", bomb, "-o", tmp_path / "out.png", "--model", model_dir])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bomb.png" in err and "limit" in err and f"{Image.MAX_IMAGE_PIXELS:,}" in err
    with pytest.raises(ValueError, match="bomb.png.*MAX_IMAGE_PIXELS"):
        pconv_hf.inpaint(bomb, bomb, model=PConvUNet.from_pretrained(model_dir))


def test_partial_conv_buffer_follows_the_requested_device():
    layer = PartialConv2d(3, 4, 3, padding=1, device="meta")
    assert layer.weight.device.type == "meta" and layer.window_ones.device.type == "meta"
    model = PConvUNet(layer_size=3, base_channels=4, sample_size=8)
    assert model.config == {
        "layer_size": 3, "base_channels": 4, "in_channels": 3, "upsampling_mode": "nearest",
        "conv_type": "partial", "sample_size": 8, "boundary_blend": False,
    }  # fmt: skip
    assert PConvUNet(**model.config).config == model.config
    if torch.cuda.is_available():
        assert PartialConv2d(3, 4, 3, padding=1, device="cuda").window_ones.is_cuda


def test_list_images_one_suffix_list(tmp_path):
    for name in ("a.PNG", "b.jpeg", "c.webp", "d.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jpg").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.jpeg", "c.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.PNG", "b.jpeg", "c.webp", "e.jpg"]


# --- writing: save_image keeps what each format can hold and says what it cannot ----------------------------


def exif_with_thumbnail(orientation: int = 6) -> tuple[bytes, bytes]:
    """APP1 EXIF bytes as a camera writes them: IFD0 (Make, Orientation, a pointer to the Exif IFD with
    DateTimeOriginal) and IFD1 holding a JPEG thumbnail; returns (exif, thumbnail)."""
    buffer = __import__("io").BytesIO()
    Image.new("RGB", (16, 12), (250, 10, 200)).save(buffer, format="JPEG")
    thumbnail = buffer.getvalue()
    make, date = b"PhoneMaker\0", b"2024:05:06 07:08:09\0"
    # Layout (offsets from the TIFF header): header 8 | IFD0 at 8 (3 entries: 2 + 36 + 4 = 42) | Make at 50 |
    # Exif IFD at 61 (1 entry: 18) | date at 79 | IFD1 at 99 (3 entries: 42) | thumbnail at 141.
    ifd0 = struct.pack("<H", 3)
    ifd0 += struct.pack("<HHII", 271, 2, len(make), 50)
    ifd0 += struct.pack("<HHIHH", 274, 3, 1, orientation, 0)
    ifd0 += struct.pack("<HHII", 34665, 4, 1, 61) + struct.pack("<I", 99)
    exif_ifd = struct.pack("<H", 1) + struct.pack("<HHII", 36867, 2, len(date), 79) + struct.pack("<I", 0)
    ifd1 = struct.pack("<H", 3)
    ifd1 += struct.pack("<HHIHH", 259, 3, 1, 6, 0)
    ifd1 += struct.pack("<HHII", 513, 4, 1, 141) + struct.pack("<HHII", 514, 4, 1, len(thumbnail))
    ifd1 += struct.pack("<I", 0)
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd0 + make + exif_ifd + date + ifd1 + thumbnail
    assert len(b"II*\0" + struct.pack("<I", 8) + ifd0 + make + exif_ifd + date) == 99
    return b"Exif\0\0" + tiff, thumbnail


def display_p3_like_profile() -> bytes:
    """An RGB ICC profile that is not sRGB (so dropping it would shift colours)."""
    from PIL import ImageCms

    profile = ImageCms.createProfile("sRGB")
    return ImageCms.ImageCmsProfile(profile).tobytes()[:-4] + b"P3\0\0"


@pytest.fixture
def camera_photo(tmp_path) -> tuple[Path, bytes, bytes]:
    """A JPEG with EXIF (orientation 6, Make, DateTimeOriginal, a thumbnail) and an ICC profile."""
    exif, thumbnail = exif_with_thumbnail()
    icc = display_p3_like_profile()
    path = tmp_path / "camera.jpg"
    Image.fromarray(data.coffee()[:96, :128]).save(path, exif=exif, icc_profile=icc, quality=95)
    with Image.open(path) as check:  # the fixture is what a camera writes
        assert check.getexif().get_ifd(0x8769)[36867] == "2024:05:06 07:08:09"
        assert check.getexif()._info.next != 0  # IFD1 (the thumbnail) is there
    return path, icc, thumbnail


def assert_metadata_kept(path: Path, icc: bytes, thumbnail: bytes) -> None:
    with Image.open(path) as written:
        assert written.info.get("icc_profile") == icc, path.suffix
        exif = written.getexif()
        assert exif.get(271) == "PhoneMaker" and exif.get_ifd(0x8769).get(36867) == "2024:05:06 07:08:09"
        assert exif.get(0x0112, 1) == 1  # pixels are upright; nothing left to turn them again
        assert written.size == (96, 128)  # the stored 128x96 turned upright
    assert thumbnail not in path.read_bytes()  # the camera's thumbnail (of the unedited photo) is dropped


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_cli_outputs_keep_icc_and_exif(camera_photo, model_dir, tmp_path, capsys, suffix):
    photo, icc, thumbnail = camera_photo
    mask = np.zeros((128, 96), np.uint8)  # drawn on the upright photo
    mask[40:70, 30:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / f"out{suffix}"
    assert _run_cli(["--image", photo, "--mask", tmp_path / "mask.png", "-o", out, "--model", model_dir]) == 0
    assert_metadata_kept(out, icc, thumbnail)
    assert "note" not in capsys.readouterr().err  # nothing had to change


def test_bmp_output_says_it_drops_the_metadata(camera_photo, model_dir, tmp_path, capsys):
    photo, _, _ = camera_photo
    mask = np.zeros((128, 96), np.uint8)
    mask[40:70, 30:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.bmp"
    assert _run_cli(["--image", photo, "--mask", tmp_path / "mask.png", "-o", out, "--model", model_dir]) == 0
    assert "BMP cannot hold an ICC profile or EXIF" in capsys.readouterr().err


def test_save_image_metadata_from_like_or_its_info(camera_photo, tmp_path):
    photo_path, icc, thumbnail = camera_photo
    photo = open_image(photo_path)
    bare = Image.fromarray(np.asarray(photo))  # e.g. an array result: no metadata of its own
    assert save_image(bare, tmp_path / "a.jpg", like=photo) == []
    assert_metadata_kept(tmp_path / "a.jpg", icc, thumbnail)
    assert save_image(bare, tmp_path / "b.webp", like=dict(photo.info)) == []
    assert_metadata_kept(tmp_path / "b.webp", icc, thumbnail)
    save_image(bare, tmp_path / "c.png")  # no like: the image's own (none)
    with Image.open(tmp_path / "c.png") as plain:
        assert "icc_profile" not in plain.info and not plain.getexif()
    grey = save_image(bare.convert("L"), tmp_path / "d.jpg", like=photo)  # an RGB profile cannot describe grey
    assert grey == ["the source's RGB colour profile does not fit L pixels; d.jpg has none"]


@pytest.mark.parametrize(
    ("mode", "suffix", "expected_mode", "note"),
    [
        ("I;16", ".jpg", "L", "0..65535 scaled to 0..255"),
        ("I;16", ".webp", "RGB", "0..65535 scaled to 0..255"),
        ("I;16", ".png", "I;16", None),
        ("I", ".png", "I;16", "same values"),
        ("F", ".png", "I;16", "0..1 scaled to 0..65535"),
        ("F", ".jpg", "L", "0..1 scaled to 0..255"),
        ("F", ".tif", "F", None),
        ("RGBA", ".jpg", "RGB", "transparency composited on white"),
        ("RGBA", ".bmp", "RGB", "transparency composited on white"),
        ("LA", ".jpg", "L", "transparency composited on white"),
        ("P", ".jpg", "RGB", "palette images"),
        ("CMYK", ".png", "RGB", "CMYK images"),
    ],
)
def test_save_image_converts_modes_with_a_note_and_the_right_scale(tmp_path, mode, suffix, expected_mode, note):
    grey = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    if mode in ("I;16", "I"):
        image = Image.fromarray((grey * 65535).round().astype(np.uint16))
        image = image if mode == "I;16" else image.convert("I")
    elif mode == "F":
        image = Image.fromarray(grey.astype(np.float32))
    else:
        image = Image.fromarray((grey * 255).round().astype(np.uint8)).convert(mode)
    notes = save_image(image, tmp_path / f"out{suffix}")
    assert (notes == []) if note is None else (len(notes) == 1 and note in notes[0]), notes
    with Image.open(tmp_path / f"out{suffix}") as written:
        assert written.mode == expected_mode
        values = np.asarray(written.convert("L") if written.mode in ("RGB", "CMYK") else written, dtype=float)
    if mode == "RGBA" or mode == "LA":
        return  # opaque, so composited on white changes nothing: checked by the mean below for the others
    peak = {"L": 255, "I;16": 65535, "F": 1.0}[written.mode if written.mode in ("I;16", "F") else "L"]
    assert abs(values.mean() / peak - 0.5) < 0.02  # the same picture: neither black nor white
    assert not list(tmp_path.glob(".*tmp"))


def test_save_image_refusals_leave_nothing(tmp_path):
    image = Image.new("RGB", (8, 8))
    existing = tmp_path / "keep.jpg"
    existing.write_bytes(b"keep")
    for kwargs, path, words in [
        ({"quality": 80}, tmp_path / "a.png", "lossy formats"),
        ({"quality": 0}, tmp_path / "a.jpg", "from 1 to 100"),
        ({"quality": True}, tmp_path / "a.jpg", "from 1 to 100"),
        ({"compress_level": 10}, tmp_path / "a.png", "from 0 to 9"),
        ({"compress_level": 1}, tmp_path / "a.jpg", "PNG only"),
        ({}, tmp_path / "a.gif", "cannot tell the image format"),
        ({}, tmp_path / "missing-folder" / "a.png", "cannot write"),
        ({"like": {"exif": b"garbage"}}, existing, None),
    ]:
        if words is None:
            assert save_image(image, path, **kwargs) == []  # unreadable source EXIF is left out, not fatal
            continue
        with pytest.raises(ValueError, match=words):
            save_image(image, path, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jpg"]
    with pytest.raises(ValueError, match="float image must hold values in"):
        save_image(Image.fromarray(np.full((4, 4), 2.0, np.float32)), tmp_path / "f.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jpg"]


def test_heic_photo_reads_everywhere(tmp_path, tiny_model):
    exif, _ = exif_with_thumbnail(orientation=1)
    icc = display_p3_like_profile()
    photo = tmp_path / "phone.HEIC"
    Image.fromarray(data.coffee()[:96, :128]).save(photo, exif=exif, icc_profile=icc, quality=95)
    assert photo in list_images(tmp_path)
    opened = open_image(photo)
    assert opened.size == (128, 96) and opened.info.get("icc_profile") == icc
    mask = np.zeros((96, 128), np.uint8)
    mask[30:60, 40:80] = 255
    result = pconv_hf.inpaint(photo, mask, model=tiny_model)
    assert result.size == (128, 96)
    assert save_image(result, tmp_path / "out.jpg", like=opened) == []
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.info["icc_profile"] == icc and written.getexif().get(271) == "PhoneMaker"
    from pconv_hf.images import decode_image

    assert decode_image(photo).size == (128, 96)  # training and evaluation folders


def test_save_image_png_compress_level_changes_size_not_pixels(astronaut, tmp_path):
    image = Image.fromarray(astronaut)
    save_image(image, tmp_path / "fast.png", compress_level=1)
    save_image(image, tmp_path / "small.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "fast.png")), astronaut)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "small.png")), astronaut)
    assert (tmp_path / "fast.png").stat().st_size > (tmp_path / "small.png").stat().st_size


def test_simplest_mode():
    assert simplest_mode(Image.new("RGBA", (4, 4), (10, 20, 30, 255))).mode == "RGB"
    assert simplest_mode(Image.new("RGBA", (4, 4), (10, 20, 30, 254))).mode == "RGBA"
    assert simplest_mode(Image.new("RGBA", (4, 4), (7, 7, 7, 255))).mode == "L"


def test_deep_grey_reads_by_one_rule():
    # 16/32-bit integer grey scales by 65535, float grey is [0, 1]: the network's RGB (to_rgb) and the app's 8-bit
    # copy (to_eight_bit) hold the same levels, rounded to nearest and clipped, never wrapped.
    levels = np.array([[0, 128, 129, 385, 65535, 70000, -5]], dtype=np.int32)
    expected = np.array([[0, 0, 1, 1, 255, 255, 0]], dtype=np.uint8)
    floats = np.array([[0.0, 0.5, 1 / 255, 0.999, 1.5, -0.2, np.nan]], dtype=np.float32)
    expected_floats = np.array([[0, 128, 1, 255, 255, 0, 0]], dtype=np.uint8)
    for image, want in [
        (Image.fromarray(levels[:, :5].astype(np.uint16)), expected[:, :5]),  # "I;16"
        (Image.fromarray(levels), expected),  # "I"
        (Image.fromarray(floats), expected_floats),  # "F"
    ]:
        eight = to_eight_bit(image)
        assert eight.mode == "L" and np.array_equal(np.asarray(eight), want), image.mode
        assert np.array_equal(np.asarray(to_rgb(image))[..., 0], want), image.mode


# --- issue 33: 16-bit byte orders, 16-bit colour, frames, CMYK masks, long names ---------------------------------


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_sixteen_bit_grey_in_either_byte_order_keeps_its_values(tiny_model, tmp_path, mode):
    """Values above 255 come back exactly outside the hole (they were clipped to 255), in the same mode, and a
    TIFF / PNG holds them without a note."""
    values = np.random.default_rng(0).integers(256, 65536, (64, 64)).astype(np.uint16)
    photo = Image.frombytes(mode, (64, 64), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    hole = np.zeros((64, 64), bool)
    hole[20:40, 20:40] = True
    result = pconv_hf.inpaint(photo, hole, tiny_model)
    assert result.mode == mode
    np.testing.assert_array_equal(np.asarray(result).astype(np.uint16)[~hole], values[~hole])
    for suffix in (".tif", ".png"):
        assert save_image(result, tmp_path / f"out{suffix}") == []
        with Image.open(tmp_path / f"out{suffix}") as written:
            np.testing.assert_array_equal(np.asarray(written).astype(np.uint16)[~hole], values[~hole])


def deep_colour(height: int, width: int, channels: int = 3) -> np.ndarray:
    """(H, W, C) uint16 RGB(A): a photo at 16 bits with values above 255 and odd (no multiple of 257, so an 8-bit
    round trip cannot give them back); the alpha of RGBA varies too."""
    rgb = data.coffee()[:height, :width].astype(np.uint16)
    deep = (rgb * 256 + np.arange(rgb.size, dtype=np.uint16).reshape(rgb.shape) % 256) | 1
    if channels == 4:
        alpha = (np.linspace(300, 65535, width).astype(np.uint16) | 1)[None, :].repeat(height, axis=0)
        deep = np.dstack([deep, alpha])
    return deep


def write_deep(path: Path, rgb: np.ndarray, exif: bytes | None = None, icc: bytes | None = None) -> Path:
    """A 16-bit colour PNG / TIFF written by OpenCV (BGR order), with an EXIF (APP1 bytes) and ICC profile if given."""
    bgr = rgb[..., [2, 1, 0, 3][: rgb.shape[2]]]
    kinds, chunks = [], []
    for kind, chunk in (
        (cv2.IMAGE_METADATA_EXIF, exif and exif.removeprefix(b"Exif\0\0")),
        (cv2.IMAGE_METADATA_ICCP, icc),
    ):
        if chunk:
            kinds.append(kind)
            chunks.append(np.frombuffer(chunk, np.uint8))
    assert cv2.imwriteWithMetadata(str(path), bgr, kinds, chunks) if kinds else cv2.imwrite(str(path), bgr)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_is_read_at_sixteen_bits(tmp_path, channels, suffix):
    """open_full_depth reads 16-bit RGB(A) PNG / TIFF exactly, as uint16 RGB(A), without a warning; open_image
    (Pillow) still reads it at 8 bits and says so; 8-bit colour stays a PIL image, without a warning."""
    values = deep_colour(48, 64, channels)
    path = write_deep(tmp_path / f"deep{suffix}", values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels, like = open_full_depth(path)
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, values)
    assert isinstance(like, dict)
    with pytest.warns(UserWarning, match=f"deep{suffix}' has 16 bits per channel.*8 bits.*pconv-inpaint keeps"):
        assert open_image(path).mode == ("RGBA" if channels == 4 else "RGB")
    write_deep(path, (values // 257).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, like = open_full_depth(path)  # 8-bit colour: no warning
    assert isinstance(image, Image.Image) and like is image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_colour_is_turned_upright_as_pillow_turns_it(tmp_path, orientation):
    """The EXIF orientation (which OpenCV's IMREAD_UNCHANGED ignores) turns the 16-bit pixels as open_image turns
    the 8-bit ones (Pillow keeps a 16-bit value's high byte)."""
    path = write_deep(tmp_path / "turned.png", deep_colour(48, 64), exif=exif_with_thumbnail(orientation)[0])
    pixels, _ = open_full_depth(path)
    with pytest.warns(UserWarning, match="8 bits"):
        eight = np.asarray(open_image(path))
    np.testing.assert_array_equal(pixels >> 8, eight)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_colour_tiff_is_never_turned_twice(tmp_path, orientation):
    """OpenCV turns a TIFF by its orientation tag itself (2-4) and cannot read the ones that swap the sides (5-8):
    the first come back turned once, as Pillow turns them; the others at 8 bits, with a warning that says why."""
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, deep_colour(48, 64), photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    with pytest.warns(UserWarning, match="8 bits"):
        eight = np.asarray(open_image(path))
    if orientation <= 4:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pixels, _ = open_full_depth(path)
        np.testing.assert_array_equal(pixels >> 8, eight)
    else:
        with pytest.warns(UserWarning, match=rf"turned.tif' has 16 bits.*orientation tag \({orientation}\).*8 bits"):
            image, _ = open_full_depth(path)
        np.testing.assert_array_equal(np.asarray(image), eight)


@pytest.mark.parametrize("channels", [3, 4])
def test_cli_keeps_sixteen_bit_colour_and_its_metadata(model_dir, tmp_path, capsys, channels):
    """pconv-inpaint on a 16-bit camera PNG (EXIF orientation 6, an ICC profile): a 16-bit PNG, upright, exact
    outside the hole (alpha exact everywhere), with the profile and the EXIF (orientation 1, no thumbnail)."""
    exif, thumbnail = exif_with_thumbnail(6)
    icc = display_p3_like_profile()
    stored = deep_colour(96, 128, channels)  # 128 wide x 96 high; orientation 6 shows it 96 x 128
    photo = write_deep(tmp_path / "camera16.png", stored, exif=exif, icc=icc)
    upright = np.rot90(stored, -1)
    hole = np.zeros(upright.shape[:2], bool)
    hole[40:70, 30:60] = True
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert _run_cli(["--image", photo, "--mask", tmp_path / "mask.png", "-o", out, "--model", model_dir]) == 0
    err = capsys.readouterr().err
    assert "note" not in err and "warning" not in err, err
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3][:channels]]
    assert result.dtype == np.uint16 and result.shape == upright.shape
    np.testing.assert_array_equal(result[~hole], upright[~hole])
    np.testing.assert_array_equal(result[..., 3:], upright[..., 3:])
    assert (result[hole][:, :3] != upright[hole][:, :3]).any(axis=-1).mean() > 0.5
    assert_metadata_kept(out, icc, thumbnail)


@pytest.mark.parametrize("suffix", [".tif", ".webp", ".jpg", ".bmp"])
def test_save_image_sixteen_bit_colour_says_what_it_cannot_keep(tmp_path, suffix):
    """A 16-bit TIFF keeps the values but not the metadata (OpenCV writes none), with a note; JPEG, WebP and BMP
    get 8 bits (value / 257, rounded) and a note saying so."""
    values = deep_colour(48, 64)
    like = {"icc_profile": display_p3_like_profile(), "exif": exif_with_thumbnail(1)[0]}
    path = tmp_path / f"out{suffix}"
    notes = save_image(values, path, like=like)
    if suffix == ".tif":
        assert notes == ["16-bit colour TIFF is written by OpenCV, without an ICC profile or EXIF: out.tif has none"]
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1], values)
        return
    assert notes[0] == f"{suffix[1:].upper().replace('JPG', 'JPEG')} holds 8 bits per channel: out{suffix} is " + (
        "written at 8 bits (0..65535 scaled to 0..255)"
    )
    with Image.open(path) as written:
        assert written.mode == "RGB"
        if suffix in (".webp", ".bmp"):  # lossless: exact
            np.testing.assert_array_equal(np.asarray(written), (values.astype(np.uint32) + 128) // 257)


def test_save_image_refuses_other_arrays_and_writes_sixteen_bit_colour_whole(tmp_path):
    for array in (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16), np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(ValueError, match="16-bit colour only.*uint16 .H, W, 3. RGB"):
            save_image(array, tmp_path / "out.png")
    with pytest.raises(ValueError, match="cannot write .*missing/out.png"):
        save_image(deep_colour(8, 8), tmp_path / "missing" / "out.png")
    assert not any(tmp_path.iterdir())  # nothing, not even a temporary file
    out = tmp_path / "out.png"
    assert save_image(deep_colour(8, 8), out) == [] and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def _frames(folder: Path, suffix: str) -> Path:
    frames = [Image.fromarray(np.full((48, 64, 3), level, np.uint8)) for level in (40, 200, 120)]
    path = folder / f"moving{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], **({"lossless": True} if suffix == ".webp" else {}))
    return path


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp", ".tif"])
def test_multi_frame_files_give_the_first_frame_and_say_so(tmp_path, suffix):
    path = _frames(tmp_path, suffix)
    with pytest.warns(UserWarning, match=r"moving\..* has 3 frames.*only the first frame"):
        image = open_image(path)
    assert np.asarray(image.convert("RGB"))[0, 0].tolist() == [40, 40, 40]


@pytest.mark.parametrize(
    "convert",
    [lambda image: image.convert("CMYK"), lambda image: image.convert("YCbCr"), lambda image: image.convert("RGBX")],
    ids=["CMYK", "YCbCr", "RGBX"],
)
def test_masks_in_other_colour_encodings_read_as_displayed(tmp_path, convert):
    """White (on display) fills and black does not, whatever the mode stores: CMYK's white is ink (0, 0, 0, 0)."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:30, 20:50] = 255
    shown = convert(Image.fromarray(mask).convert("RGB"))
    np.testing.assert_array_equal(to_hole_mask(shown), mask > 0)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_mask_files_read_as_displayed(tmp_path, suffix):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:30, 20:50] = 255
    path = tmp_path / f"mask{suffix}"
    Image.fromarray(mask).convert("CMYK").save(path, **({"quality": 100} if suffix == ".jpg" else {}))
    hole = to_hole_mask(path)
    assert hole[12:28, 22:48].all() and not hole[:5].any() and not hole[35:].any()  # JPEG edges may fill


def test_save_image_name_near_the_length_limit(tmp_path):
    """A 250-character name fits the file system, so its temporary name must too."""
    path = tmp_path / ("n" * 246 + ".png")
    assert save_image(Image.new("RGB", (4, 4)), path) == []
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
