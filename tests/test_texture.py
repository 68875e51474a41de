"""The texture stage: detail copied from the photo's own known pixels, guided by the network's fill."""

import numpy as np
import pytest
from PIL import Image

from pconv_hf.texture import PATCH_RADIUS, synthesize_texture


def textured_photo(seed: int = 0, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """Grey-brown noise with structure at several scales: something for patches to match."""
    rng = np.random.default_rng(seed)
    height, width = size
    base = rng.random((-(-height // 4), -(-width // 4), 1)).repeat(4, 0).repeat(4, 1)[:height, :width]
    fine = rng.random((height, width, 1))
    grey = 0.35 + 0.3 * base + 0.15 * fine
    return np.concatenate([grey, 0.9 * grey, 0.8 * grey], axis=2).astype(np.float32)


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, hole, smooth network-like fill). The hole's own pixels are pure green, a colour found nowhere else:
    what the user painted over, which must never come back."""
    photo = textured_photo()
    hole = np.zeros(photo.shape[:2], bool)
    hole[40:80, 50:100] = True
    photo[hole] = (0.0, 1.0, 0.0)
    fill = np.full_like(photo, 0.5)
    return photo, hole, fill


def test_the_same_seed_gives_the_same_texture_and_another_seed_another(scene):
    photo, hole, fill = scene
    first = synthesize_texture(photo, hole, fill, seed=3)
    assert np.array_equal(first, synthesize_texture(photo, hole, fill, seed=3))
    assert not np.array_equal(first[hole], synthesize_texture(photo, hole, fill, seed=4)[hole])


def test_only_hole_pixels_change_and_they_gain_texture(scene):
    photo, hole, fill = scene
    out = synthesize_texture(photo, hole, fill)
    assert np.array_equal(out[~hole], photo[~hole])
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # The network's flat fill gains detail like the photo's: a local standard deviation far above zero.
    assert out[hole].std(axis=0).mean() > 0.3 * photo[~hole].std(axis=0).mean()


def test_nothing_painted_over_comes_back(scene):
    """The hole held pure green (what the user removes); no trace of it may appear in the fill."""
    photo, hole, fill = scene
    out = synthesize_texture(photo, hole, fill)
    greenness = out[hole][:, 1] - out[hole][:, [0, 2]].max(axis=1)
    assert greenness.max() < 0.15


def test_a_colour_found_once_in_the_known_region_comes_only_from_there(scene):
    """A magenta square in the known region is the only source of magenta in the hole: every hole pixel that
    turns magenta was copied from it, and every copy's source is a known pixel whose patch is fully known."""
    photo, hole, fill = scene
    photo[8:30, 60:90] = (0.95, 0.05, 0.95)  # magenta, near enough to the hole to be a candidate
    fill[hole] = photo[~hole].mean(axis=0)
    out, sources = synthesize_texture(photo, hole, fill, seed=1, return_sources=True)
    assert sources.shape == (hole.sum(), 2)
    for row, col in sources[:: max(1, len(sources) // 500)]:
        footprint = hole[row - PATCH_RADIUS : row + PATCH_RADIUS + 1, col - PATCH_RADIUS : col + PATCH_RADIUS + 1]
        assert footprint.size and not footprint.any(), f"source ({row}, {col}) reads hole pixels"
    magenta = (out[hole][:, 0] > 0.7) & (out[hole][:, 1] < 0.3) & (out[hole][:, 2] > 0.7)
    if magenta.any():
        rows, cols = sources[magenta, 0], sources[magenta, 1]
        near_square = (rows >= 8 - 3) & (rows < 30 + 3) & (cols >= 60 - 3) & (cols < 90 + 3)
        assert near_square.all(), "a magenta hole pixel was copied from somewhere else"
    # And the network's colour sets the low frequencies: the fill's mean stays near the guide's.
    assert np.abs(out[hole].mean(axis=0) - fill[hole].mean(axis=0)).max() < 0.08


def test_refuses_mismatched_sizes(scene):
    photo, hole, fill = scene
    with pytest.raises(ValueError, match="one height and width"):
        synthesize_texture(photo, hole[:-1], fill)


@pytest.mark.parametrize("strategy", ["native", "crop", "resize", "full"])
@pytest.mark.parametrize("reach", [4096, 8], ids=["native scale", "downscaled"])
def test_inpaint_with_texture_changes_only_hole_pixels(tiny_model, strategy, reach):
    photo = (textured_photo(1, (150, 210)) * 255).astype(np.uint8)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[50:90, 70:130] = 255
    mask[130:150, 0:30] = 255
    out = tiny_model.inpaint(photo, mask, strategy=strategy, reach=reach, texture=True, seed=5)
    hole = mask > 0
    assert np.array_equal(out[~hole], photo[~hole])
    assert np.array_equal(out, tiny_model.inpaint(photo, mask, strategy=strategy, reach=reach, texture=True, seed=5))
    plain = tiny_model.inpaint(photo, mask, strategy=strategy, reach=reach, texture=False)
    assert not np.array_equal(out[hole], plain[hole])


def test_inpaint_refuses_a_texture_that_is_not_a_bool(tiny_model):
    photo = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:30] = 255
    with pytest.raises(ValueError, match="texture must be True or False, got 'yes'"):
        tiny_model.inpaint(photo, mask, texture="yes")
    with pytest.raises(ValueError, match="seed must be an int"):
        tiny_model.inpaint(photo, mask, texture=True, seed=1.5)


def test_texture_runs_on_a_pil_photo_and_keeps_its_mode(tiny_model):
    photo = Image.fromarray((textured_photo(2, (96, 128)) * 255).astype(np.uint8)).convert("L")
    mask = np.zeros((96, 128), np.uint8)
    mask[30:60, 40:80] = 255
    out = tiny_model.inpaint(photo, Image.fromarray(mask), texture=True)
    assert out.mode == "L" and out.size == photo.size
    assert np.array_equal(np.asarray(out)[mask == 0], np.asarray(photo)[mask == 0])


def test_finer_levels_start_from_the_coarse_matches_however_far_they_point():
    """A coarse level searches as far in its own pixels as a finer one does in its: doubled, its matches can point
    beyond the finer level's search radius. They must still start the finer level (a random source anywhere in the
    photo was taken instead, and at fine levels of big holes, where there is no search, it stayed: speckles)."""
    import torch

    from pconv_hf.texture import TextureOptions, _Level

    rng = np.random.default_rng(0)
    options = TextureOptions(search_radius=8)
    fine_hole = np.zeros((160, 160), bool)
    fine_hole[70:90, 70:90] = True
    coarse_hole = fine_hole.reshape(80, 2, 80, 2).any(axis=(1, 3))
    fine_image = rng.random((160, 160, 3), dtype=np.float32)
    coarse_image = fine_image.reshape(80, 2, 80, 2, 3).mean(axis=(1, 3))
    generator = torch.Generator().manual_seed(0)
    coarse = _Level(coarse_image, coarse_hole, options, generator)
    # Every coarse target matched to the coarse source farthest from the hole (12 coarse pixels away: 24 fine).
    far = int(np.argmax(np.abs(coarse.sources.numpy() - 40).max(axis=1)))
    nnf = torch.full((coarse.targets.shape[0],), far, dtype=torch.int64)
    fine = _Level(fine_image, fine_hole, options, generator, (coarse, nnf))
    matches = fine.sources[fine.matches_from(coarse, nnf)]
    expected = coarse.sources[far] * 2 + fine.targets % 2
    distance = (expected - torch.tensor([80, 80])).abs().max()
    assert distance > options.search_radius + PATCH_RADIUS + 10  # beyond this level's own search radius
    assert torch.equal(matches, expected)
