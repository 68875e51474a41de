"""inpaint(): any size, mode and type in; same out, with every pixel outside the hole untouched."""

import numpy as np
import pytest
import torch
from PIL import Image

from pconv_hf.windows import plan_windows


@pytest.fixture
def photo(astronaut) -> Image.Image:
    """A real photo at an odd size, so padding and cropping are exercised."""
    return Image.fromarray(astronaut).resize((203, 157))


@pytest.fixture
def hole(photo) -> np.ndarray:
    """A user mask: white = fill. Two separate holes, one touching the border."""
    mask = np.zeros((photo.height, photo.width), np.uint8)
    mask[40:70, 50:95] = 255
    mask[140:157, 180:203] = 255
    return mask


def assert_only_hole_changed(before: np.ndarray, after: np.ndarray, hole: np.ndarray) -> None:
    hole = hole.astype(bool)
    assert after.shape == before.shape and after.dtype == before.dtype
    assert np.array_equal(after[~hole], before[~hole]), "pixels outside the hole changed"
    assert not np.array_equal(after[hole], before[hole]), "the hole was not filled"


def sixteen_bit(photo: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p,
        lambda p: p.convert("RGBA"),
        lambda p: p.convert("L"),
        lambda p: p.convert("LA"),
        lambda p: p.convert("P"),
        lambda p: p.convert("CMYK"),
        lambda p: p.convert("1"),
        sixteen_bit,
        lambda p: p.convert("L").convert("I"),
        lambda p: Image.fromarray(np.asarray(p.convert("L"), np.float32) / 255),
    ],
    ids=["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "I;16", "I", "F"],
)
@pytest.mark.parametrize("strategy", ["crop", "resize", "full"])
def test_pil_modes_keep_mode_size_and_unmasked_pixels(tiny_model, photo, hole, make, strategy):
    image = make(photo)
    result = tiny_model.inpaint(image, Image.fromarray(hole), strategy=strategy)
    assert isinstance(result, Image.Image)
    assert result.mode == image.mode and result.size == image.size
    if image.mode == "P":
        assert result.getpalette() == image.getpalette()
    if image.mode == "1":  # a black-and-white fill may legitimately equal the original
        assert np.array_equal(np.asarray(result)[hole == 0], np.asarray(image)[hole == 0])
    else:
        assert_only_hole_changed(np.asarray(image), np.asarray(result), hole)


def test_rgba_alpha_is_kept_in_the_hole(tiny_model, photo, hole):
    image = photo.convert("RGBA")
    image.putalpha(Image.fromarray(np.full((photo.height, photo.width), 77, np.uint8)))
    result = tiny_model.inpaint(image, hole)
    assert np.all(np.asarray(result)[..., 3] == 77)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_numpy_arrays_come_back_as_the_same_array_type(tiny_model, astronaut, dtype, channels):
    rgb = astronaut[:97, :131]
    if channels is None:
        base = rgb[..., 0]
    elif channels == 4:
        base = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], axis=2)
    else:
        base = rgb[..., :channels]
    scale = {np.uint8: 1, np.uint16: 257, np.float32: 1 / 255, np.float64: 1 / 255}[dtype]
    image = (base.astype(np.float64) * scale).astype(dtype)
    mask = np.zeros(image.shape[:2], bool)
    mask[30:60, 40:90] = True
    result = tiny_model.inpaint(image, mask)
    assert_only_hole_changed(image, result, mask)
    if channels == 4:
        assert np.array_equal(result[..., 3], image[..., 3])


@pytest.mark.parametrize("layout", ["CHW", "HW", "1CHW"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.bfloat16])
def test_tensors_come_back_as_tensors(tiny_model, astronaut, layout, dtype):
    chw = torch.from_numpy(astronaut[:70, :90]).permute(2, 0, 1)
    chw = chw if dtype == torch.uint8 else (chw.float() / 255).to(dtype)
    image = {"CHW": chw, "HW": chw[0], "1CHW": chw[None]}[layout]
    mask = torch.zeros(70, 90)
    mask[20:40, 30:60] = 1
    result = tiny_model.inpaint(image, mask)
    assert isinstance(result, torch.Tensor) and result.shape == image.shape and result.dtype == image.dtype
    hole = (mask > 0).expand_as(image)
    assert torch.equal(result[~hole], image[~hole])
    assert not torch.equal(result[hole], image[hole])


def test_paths_are_read(tiny_model, photo, hole, tmp_path):
    photo.save(tmp_path / "photo.png")
    Image.fromarray(hole).save(tmp_path / "mask.png")
    result = tiny_model.inpaint(tmp_path / "photo.png", str(tmp_path / "mask.png"))
    assert_only_hole_changed(np.asarray(photo), np.asarray(result), hole)


def test_empty_mask_returns_the_image_unchanged(tiny_model, photo):
    result = tiny_model.inpaint(photo, np.zeros((photo.height, photo.width), np.uint8))
    assert result is not photo and np.array_equal(np.asarray(result), np.asarray(photo))


def test_transparent_mask_pixels_are_not_filled(tiny_model, photo):
    layer = np.zeros((photo.height, photo.width, 4), np.uint8)
    layer[..., :3] = 255  # white everywhere, but only opaque where painted
    layer[10:30, 10:30, 3] = 255
    result = tiny_model.inpaint(photo, Image.fromarray(layer, "RGBA"))
    changed = np.any(np.asarray(result) != np.asarray(photo), axis=-1)
    assert changed.any() and not changed[:10].any() and not changed[30:].any()


def test_dilate_grows_the_hole(tiny_model, photo, hole):
    plain = np.asarray(tiny_model.inpaint(photo, hole))
    grown = np.asarray(tiny_model.inpaint(photo, hole, dilate=3))
    original = np.asarray(photo)
    ring = np.zeros_like(hole, bool)
    ring[37:73, 47:98] = True
    ring[40:70, 50:95] = False
    assert np.array_equal(plain[ring], original[ring])
    assert not np.array_equal(grown[ring], original[ring])


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.zeros((10, 10)), "mask size 10x10 \\(WxH\\) does not match image size 203x157"),
        (np.full((157, 203), np.nan), "NaN"),
        ("no-such-mask.png", "cannot read mask file 'no-such-mask.png'"),
        (12, "mask must be a PIL image"),
    ],
)
def test_bad_masks_raise_value_error(tiny_model, photo, mask, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.inpaint(photo, mask)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((20, 20, 3), 2.0), "values from 2.0 to 2.0"),
        (np.zeros((20, 20, 3), np.int64), "dtype must be uint8, uint16 or float"),
        (np.zeros((20, 20, 2), np.uint8), "shape \\(20, 20, 2\\)"),
        (Image.new("HSV", (20, 20)), "unsupported PIL image mode 'HSV'"),
    ],
)
def test_bad_images_raise_value_error(tiny_model, image, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.inpaint(image, np.ones((20, 20)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(strategy="tile"), "strategy"),
        (dict(resolution=8), "resolution must be from 16"),
        (dict(dilate=-1), "dilate"),
    ],
)
def test_bad_options_raise_value_error(tiny_model, photo, hole, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.inpaint(photo, hole, **kwargs)


def test_large_photo_with_small_hole_costs_one_window_pass(tiny_model):
    """A 12-megapixel photo with one small hole: the crop strategy runs the model once, at its working size."""
    image = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    mask = np.zeros((3000, 4000), np.uint8)
    mask[1500:1520, 2000:2030] = 255
    shapes = []
    handle = tiny_model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    try:
        result = tiny_model.inpaint(image, mask, strategy="crop")
    finally:
        handle.remove()
    assert shapes == [(1, 3, 64, 64)]
    assert_only_hole_changed(image, result, mask)


def test_windows_cover_every_hole_and_never_overlap():
    rng = np.random.default_rng(0)
    hole = np.zeros((900, 1300), bool)
    for _ in range(12):
        top, left = rng.integers(0, 880), rng.integers(0, 1280)
        hole[top : top + rng.integers(2, 60), left : left + rng.integers(2, 60)] = True
    windows = plan_windows(hole, 128)
    covered = np.zeros_like(hole, np.int32)
    for top, left, height, width in windows:
        assert height <= 900 and width <= 1300
        covered[top : top + height, left : left + width] += 1
    assert covered.max() == 1
    assert np.all(covered[hole] == 1)


def test_bfloat16_autocast_runs(tiny_model, photo, hole):
    result = tiny_model.inpaint(photo, hole, dtype=torch.bfloat16)
    assert_only_hole_changed(np.asarray(photo), np.asarray(result), hole)


def test_model_training_mode_is_restored(tiny_model, photo, hole):
    tiny_model.train()
    tiny_model.inpaint(photo, hole)
    assert tiny_model.training
