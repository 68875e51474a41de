"""Mask generation, hole-ratio buckets and mask files (pconv_hf.masks)."""

import pickle
import random
import re

import numpy as np
import pytest
from PIL import Image

from pconv_hf.masks import (
    HOLE_RATIO_BUCKETS,
    MaskFolder,
    MaskGenerator,
    box_mask,
    bucket_index,
    bucket_label,
    fixed_masks,
    hole_ratio,
    irregular_mask,
    load_mask,
    mask_in_bucket,
    save_mask_folder,
)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bucket_mask(height, width, generator, **kwargs):
    return mask_in_bucket(height, width, generator, (0.2, 0.3), **kwargs)


def mixed_mask(height, width, generator, **kwargs):
    return MaskGenerator(height, width, kind="mixed", **kwargs)(generator)


MAKERS = [irregular_mask, box_mask, bucket_mask, mixed_mask]


def assert_binary_float32(mask: np.ndarray, shape: tuple[int, int]) -> None:
    assert mask.shape == shape
    assert mask.dtype == np.float32
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------------------------------------------------
# Random masks


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("shape", [(64, 64), (48, 96), (100, 70)])
def test_masks_are_binary_float32_with_holes_and_valid_pixels(make, shape):
    valid_mask = make(*shape, rng(0))
    assert_binary_float32(valid_mask, shape)
    assert 0 < hole_ratio(valid_mask) < 1


@pytest.mark.parametrize("make", MAKERS)
def test_same_seed_same_mask_and_different_seeds_differ(make):
    first = make(96, 80, rng(7))
    np.testing.assert_array_equal(first, make(96, 80, rng(7)))
    others = [make(96, 80, rng(seed)) for seed in range(8, 12)]
    assert not any(np.array_equal(first, other) for other in others)


@pytest.mark.parametrize("make", MAKERS)
def test_global_random_state_is_neither_used_nor_consumed(make):
    np.random.seed(1)
    random.seed(1)
    numpy_state, python_state = pickle.dumps(np.random.get_state()), random.getstate()
    first = make(64, 64, rng(3))
    assert pickle.dumps(np.random.get_state()) == numpy_state
    assert random.getstate() == python_state
    np.random.seed(2)
    random.seed(2)
    np.testing.assert_array_equal(first, make(64, 64, rng(3)))


def test_irregular_masks_span_small_to_large_hole_ratios():
    ratios = np.array([hole_ratio(irregular_mask(128, 128, rng(seed))) for seed in range(50)])
    assert ratios.min() > 0
    assert (ratios < 0.1).sum() >= 3
    assert (ratios > 0.3).sum() >= 3
    assert len({bucket_index(r) for r in ratios} - {None}) >= 5


@pytest.mark.parametrize("make", [irregular_mask, box_mask])
def test_border_margin_keeps_the_band_along_the_border_valid(make):
    for seed in range(10):
        valid_mask = make(64, 80, rng(seed), border_margin=6)
        inner = valid_mask[6:-6, 6:-6]
        assert valid_mask.sum() == inner.sum() + (valid_mask.size - inner.size)
        assert hole_ratio(valid_mask) > 0


def test_one_box_is_one_filled_rectangle():
    for seed in range(10):
        hole_mask = box_mask(64, 96, rng(seed), max_boxes=1) == 0
        rows, cols = np.nonzero(hole_mask)
        assert hole_mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


@pytest.mark.parametrize("border_margin", [0, 6])
@pytest.mark.parametrize("kind", ["irregular", "box", "mixed"])
@pytest.mark.parametrize("index", range(len(HOLE_RATIO_BUCKETS)))
def test_mask_in_bucket_lands_in_its_bucket(index, kind, border_margin):
    m = border_margin
    for seed in range(3):
        valid_mask = mask_in_bucket(80, 112, rng(seed), HOLE_RATIO_BUCKETS[index], border_margin=m, kind=kind)
        assert_binary_float32(valid_mask, (80, 112))
        assert bucket_index(hole_ratio(valid_mask)) == index
        if m:
            band = np.ones_like(valid_mask, dtype=bool)
            band[m:-m, m:-m] = False
            assert valid_mask[band].all()


def test_mask_in_bucket_spreads_over_the_bucket():
    ratios = [hole_ratio(mask_in_bucket(128, 128, rng(seed), (0.3, 0.4))) for seed in range(20)]
    assert min(ratios) < 0.35 < max(ratios)


def test_mask_in_bucket_gives_up_with_runtime_error_after_max_tries():
    # Only one hole-pixel count (1229 of 4096) lies in this bucket: a hit is possible but unlikely.
    failures = 0
    for seed in range(5):
        try:
            valid_mask = mask_in_bucket(64, 64, rng(seed), (0.3, 0.3001), max_tries=1)
        except RuntimeError as error:
            assert "max_tries=1" in str(error)
            failures += 1
        else:
            assert np.count_nonzero(valid_mask == 0) == 1229
    assert failures >= 1


def test_mask_in_bucket_accepts_a_bucket_index():
    np.testing.assert_array_equal(
        mask_in_bucket(64, 64, rng(0), 2), mask_in_bucket(64, 64, rng(0), HOLE_RATIO_BUCKETS[2])
    )


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        ((0.3, 0.2), "0.3, 0.2"),
        ((0.2, 0.2), "0.2, 0.2"),
        ((0.5, 1.0), "0.5, 1.0"),
        ((-0.1, 0.2), "-0.1, 0.2"),
        ((0.1, 0.2, 0.3), "0.1, 0.2, 0.3"),
        ("low", "low"),
        (6, "got 6"),
    ],
)
def test_mask_in_bucket_rejects_bad_buckets(bucket, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mask_in_bucket(64, 64, rng(0), bucket)


def test_mask_in_bucket_rejects_buckets_the_border_margin_makes_unreachable():
    with pytest.raises(ValueError, match="border_margin 28"):
        mask_in_bucket(64, 64, rng(0), (0.2, 0.3), border_margin=28)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(height=-3), "height must be an int >= 1, got -3"),
        (dict(width=2.5), "width must be an int >= 1, got 2.5"),
        (dict(border_margin=32), "border_margin must be less than half.*got 32"),
        (dict(kind="circle"), "kind must be one of .*got 'circle'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, message):
    arguments = dict(height=64, width=64, kind="irregular", border_margin=0) | kwargs
    with pytest.raises(ValueError, match=message):
        MaskGenerator(**arguments)
    with pytest.raises(ValueError, match=message):
        mask_in_bucket(rng=rng(0), bucket=(0.1, 0.2), **arguments)


def test_an_int_seed_instead_of_a_generator_is_rejected():
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator, got int"):
        irregular_mask(64, 64, 42)
    with pytest.raises(ValueError, match="got int"):
        MaskGenerator(64, 64)(42)


def test_mask_generator_respects_kind_and_bucket():
    generator = MaskGenerator(72, 88, kind="box", bucket=(0.1, 0.2), border_margin=4)
    for seed in range(5):
        valid_mask = generator(rng(seed))
        assert_binary_float32(valid_mask, (72, 88))
        assert bucket_index(hole_ratio(valid_mask)) == 1
        assert valid_mask[:4].all() and valid_mask[-4:].all()
    np.testing.assert_array_equal(MaskGenerator(64, 64, kind="box")(rng(5)), box_mask(64, 64, rng(5)))
    with pytest.raises(ValueError, match=re.escape("(0.6, 0.5)")):
        MaskGenerator(64, 64, bucket=(0.6, 0.5))


# ---------------------------------------------------------------------------------------------------------
# Ratios and buckets


def test_hole_ratio_counts_zeros():
    valid_mask = np.ones((10, 10), np.float32)
    valid_mask[:3] = 0
    assert hole_ratio(valid_mask) == 0.3
    assert hole_ratio(np.ones((4, 4))) == 0.0


@pytest.mark.parametrize(
    ("ratio", "index"),
    [(0.0, None), (0.01, None), (0.0101, 0), (0.1, 0), (0.1001, 1), (0.35, 3), (0.6, 5), (0.61, None)],
)
def test_bucket_index_uses_half_open_buckets(ratio, index):
    assert bucket_index(ratio) == index


def test_bucket_labels():
    assert [bucket_label(b) for b in HOLE_RATIO_BUCKETS] == [
        "0.01-0.1",
        "0.1-0.2",
        "0.2-0.3",
        "0.3-0.4",
        "0.4-0.5",
        "0.5-0.6",
    ]
    assert bucket_label(0) == "0.01-0.1"


# ---------------------------------------------------------------------------------------------------------
# Fixed evaluation masks and files


def test_fixed_masks_are_deterministic_and_stable_per_bucket():
    masks = fixed_masks(2, 64, 80, seed=5, border_margin=4)
    assert [index for index, _ in masks] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    again = fixed_masks(2, 64, 80, seed=5, border_margin=4)
    for (index, valid_mask), (_, same) in zip(masks, again):
        np.testing.assert_array_equal(valid_mask, same)
        assert bucket_index(hole_ratio(valid_mask)) == index
        assert valid_mask[:4].all() and valid_mask[:, -4:].all()
    # Bucket i's masks come from its own stream, whatever the other buckets draw.
    stream = np.random.default_rng([5, 3])
    for _, valid_mask in masks[6:8]:
        expected = mask_in_bucket(64, 80, stream, HOLE_RATIO_BUCKETS[3], border_margin=4)
        np.testing.assert_array_equal(valid_mask, expected)
    other_seed = fixed_masks(2, 64, 80, seed=6, border_margin=4)
    assert not np.array_equal(masks[0][1], other_seed[0][1])


def test_fixed_masks_saved_to_disk_load_back_identically(tmp_path):
    masks = fixed_masks(1, 64, 64, seed=0)
    paths = save_mask_folder(masks, tmp_path / "eval")
    assert [p.name for p in paths][:2] == ["00000_holes_0.01-0.1.png", "00001_holes_0.1-0.2.png"]
    # White = hole on disk, as users expect.
    assert (np.asarray(Image.open(paths[0])) == 255).mean() == pytest.approx(hole_ratio(masks[0][1]))
    folder = MaskFolder(tmp_path / "eval")
    assert len(folder) == len(masks)
    for i, (_, valid_mask) in enumerate(masks):
        np.testing.assert_array_equal(folder[i], valid_mask)
        np.testing.assert_array_equal(load_mask(paths[i]), valid_mask)


def test_save_mask_folder_refuses_to_mix_sets_and_non_binary_masks(tmp_path):
    save_mask_folder([np.ones((8, 8), np.float32)], tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        save_mask_folder([np.ones((8, 8), np.float32)], tmp_path)
    with pytest.raises(ValueError, match="mask 1 must be a 2-D array of 0 and 1"):
        save_mask_folder([np.ones((8, 8)), np.full((8, 8), 0.5)], tmp_path / "new")
    assert not (tmp_path / "new").exists()


def square_hole_image(hole_value: int, valid_value: int) -> np.ndarray:
    """32x32 grey image with a 16x16 hole square at rows/cols 8..23."""
    image = np.full((32, 32), valid_value, np.uint8)
    image[8:24, 8:24] = hole_value
    return image


EXPECTED = np.ones((32, 32), np.float32)
EXPECTED[8:24, 8:24] = 0


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "1", "P", "I;16"])
@pytest.mark.parametrize("holes_are", ["white", "black"])
def test_load_mask_reads_any_mode_with_either_hole_colour(tmp_path, mode, holes_are):
    hole_value, valid_value = (255, 0) if holes_are == "white" else (0, 255)
    grey = square_hole_image(hole_value, valid_value)
    # 16-bit masks span 0..65535, so 255 * 257 is full white.
    image = Image.fromarray(grey.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(grey).convert(mode)
    path = tmp_path / "mask.png"
    image.save(path)
    valid_mask = load_mask(path, holes_are=holes_are)
    assert_binary_float32(valid_mask, (32, 32))
    np.testing.assert_array_equal(valid_mask, EXPECTED)


def test_load_mask_treats_transparent_pixels_as_valid(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the square is opaque
    rgba[8:24, 8:24, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "white.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "white.png"), EXPECTED)
    rgba[..., :3] = 0
    Image.fromarray(rgba).save(tmp_path / "black.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "black.png", holes_are="black"), EXPECTED)


def test_load_mask_applies_the_one_rule_then_resizes_by_coverage(tmp_path):
    Image.fromarray(square_hole_image(255, 0)).save(tmp_path / "square.png")
    valid_mask = load_mask(tmp_path / "square.png", size=(48, 80))
    assert_binary_float32(valid_mask, (48, 80))
    assert hole_ratio(valid_mask) == pytest.approx(0.25, abs=0.03)
    # The one rule first (any nonzero pixel is a hole, even a faint 40), then resizing by coverage: stripes with a
    # quarter of their rows faint-but-nonzero cover 25 % (all valid after a 4x reduction), three quarters 75 %.
    for hole_rows, expected_ratio in ((1, 0.0), (3, 1.0)):
        stripes = np.zeros((32, 32), np.uint8)
        for row in range(hole_rows):
            stripes[row::4] = 40
        Image.fromarray(stripes).save(tmp_path / "stripes.png")
        assert hole_ratio(load_mask(tmp_path / "stripes.png")) == hole_rows / 4
        assert hole_ratio(load_mask(tmp_path / "stripes.png", size=(8, 8))) == expected_ratio


def test_load_mask_errors_name_the_bad_value(tmp_path):
    missing = tmp_path / "missing_mask.png"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        load_mask(missing)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    with pytest.raises(ValueError, match=re.escape(str(not_an_image))):
        load_mask(not_an_image)
    Image.fromarray(square_hole_image(255, 0)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="holes_are must be 'white' or 'black', got 'red'"):
        load_mask(tmp_path / "ok.png", holes_are="red")
    with pytest.raises(ValueError, match="size height must be an int >= 1, got 0"):
        load_mask(tmp_path / "ok.png", size=(0, 32))
    with pytest.raises(ValueError, match=re.escape("size must be a (height, width) pair, got 32")):
        load_mask(tmp_path / "ok.png", size=32)


# ---------------------------------------------------------------------------------------------------------
# Mask folders


def test_mask_folder_rejects_missing_and_empty_folders(tmp_path):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere"))):
        MaskFolder(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("no masks here")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + ".*no mask images"):
        MaskFolder(tmp_path)


def test_mask_folder_lists_images_sorted_and_resizes(tmp_path):
    for name, hole_value in (("b.png", 255), ("a.jpg", 0), ("c.BMP", 255)):
        Image.fromarray(square_hole_image(hole_value, 0)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("ignored")
    folder = MaskFolder(tmp_path, size=(16, 24))
    assert [p.name for p in folder.paths] == ["a.jpg", "b.png", "c.BMP"]
    assert len(folder) == 3
    assert hole_ratio(folder[0]) == 0.0
    assert_binary_float32(folder[1], (16, 24))
    assert hole_ratio(folder[1]) == pytest.approx(0.25, abs=0.05)


def test_mask_folder_sample_is_deterministic_and_augments(tmp_path):
    # An L-shaped hole: all 8 flips/transposes of it differ.
    image = np.zeros((32, 32), np.uint8)
    image[4:28, 4:10] = 255
    image[22:28, 4:20] = 255
    Image.fromarray(image).save(tmp_path / "l_shape.png")
    folder = MaskFolder(tmp_path)
    np.testing.assert_array_equal(folder.sample(rng(3)), folder.sample(rng(3)))
    samples = [folder.sample(rng(seed)) for seed in range(40)]
    original = folder[0]
    variants = [np.flip(t, axis) for t in (original, original.T) for axis in ((), 0, 1, (0, 1))]
    for sample in samples:
        assert any(np.array_equal(sample, variant) for variant in variants)
    assert len({sample.tobytes() for sample in samples}) >= 6


def test_mask_folder_sample_keeps_non_square_shapes(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "wide.png")
    folder = MaskFolder(tmp_path)
    assert {folder.sample(rng(seed)).shape for seed in range(20)} == {(20, 30)}
