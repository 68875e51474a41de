"""Photos at their own size: object-removal masks, the native-size protocol, the native strategy and its
windows (native scale, coarse to fine, downscaled beyond the budget), and native-scale training crops."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pconv_hf.evaluation_native import (
    BASELINES,
    SIZE_CLASSES,
    format_margins,
    format_native_table,
    hole_metrics,
    make_cases,
    model_fill,
    read_cases,
    run_protocol,
    size_class,
    summarize,
)
from pconv_hf.masks import OBJECT_BUCKETS, OBJECT_KINDS, fixed_masks, object_mask
from pconv_hf.windows import DEFAULT_MAX_PIXELS, STRATEGIES, hole_regions, plan_native_windows, refine_boxes


def line_hole(height: int, width: int, thickness: int) -> np.ndarray:
    hole = np.zeros((height, width), np.uint8)
    cv2.line(hole, (width // 10, height // 2), (9 * width // 10, height // 2), 1, thickness)
    return hole.view(bool)


# --- object-removal masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OBJECT_KINDS)
@pytest.mark.parametrize("bucket", OBJECT_BUCKETS)
def test_object_masks_land_in_their_bucket_and_repeat_with_the_seed(kind, bucket):
    mask = object_mask(300, 420, kind, bucket, np.random.default_rng(5))
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert bucket[0] < 1 - mask.mean() <= bucket[1]
    assert np.array_equal(mask, object_mask(300, 420, kind, bucket, np.random.default_rng(5)))


def test_stroke_brush_scales_with_the_photo():
    for long_side in (400, 1600):
        hole = object_mask(long_side * 3 // 4, long_side, "stroke", (0.01, 0.05), np.random.default_rng(1)) == 0
        (_, width), *_ = hole_regions(hole, gap=long_side)
        assert 0.012 * long_side <= width <= 0.05 * long_side  # a brush 1.5-4 % of the long side wide


def test_object_mask_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be one of"):
        object_mask(100, 100, "square", (0.01, 0.05), np.random.default_rng(0))


# --- windows ----------------------------------------------------------------------------------------------------


def test_hole_width_is_twice_the_inscribed_radius():
    ((box, width),) = hole_regions(line_hole(400, 1000, 31))
    assert abs(width - 31) <= 3
    assert box[1] == pytest.approx(100 - 15, abs=2) and box[3] == pytest.approx(900 + 16, abs=2)  # round caps


def test_thin_hole_fills_at_native_scale_in_a_window_around_it():
    hole = line_hole(3000, 4000, 20)
    (window,) = plan_native_windows(hole, reach=64, max_pixels=4_000_000, margin=64, min_side=256)
    assert window.scale == 1.0
    top, left, height, width = window.box
    rows, cols = np.nonzero(hole)
    assert top <= rows.min() - 64 and rows.max() + 64 < top + height and height <= 20 + 2 * 64 + 256
    assert left <= cols.min() - 64 and cols.max() + 64 < left + width


def test_wide_hole_is_filled_where_it_is_reach_pixels_wide():
    hole = np.zeros((1200, 1600), bool)
    cv2.circle(hole.view(np.uint8), (800, 600), 100, 1, -1)
    (window,) = plan_native_windows(hole, reach=50, max_pixels=4_000_000)
    assert window.scale == pytest.approx(50 / window.hole_width) and 195 <= window.hole_width <= 205


def test_windows_beyond_the_pixel_budget_are_downscaled_to_fit():
    hole = np.zeros((3000, 4000), bool)
    hole[200:2800:7, 300:3700] = True  # thin but spread over the whole photo
    windows = plan_native_windows(hole, reach=64, max_pixels=1_000_000)
    assert len(windows) == 1
    (window,) = windows
    assert window.box[2] * window.box[3] * window.scale**2 <= 1_000_000
    assert window.scale < 1.0


def disc_hole(height: int, width: int, radius: int) -> np.ndarray:
    hole = np.zeros((height, width), np.uint8)
    cv2.circle(hole, (width // 2, height // 2), radius, 1, -1)
    return hole.view(bool)


@pytest.mark.parametrize(
    "shape, disc_radius, scale, whole_photo",
    [
        ((256, 256), 0, 1.0, True),  # a thin stroke in a photo of the training size: the whole photo, its own scale
        ((256, 256), 102, 1.0, True),  # a 50 % hole, 204 px wide: still filled whole at the training scale
        ((200, 240), 90, 1.0, True),  # smaller than the training size: never downscaled either
        ((600, 800), 150, 64 / 300, True),  # bigger than the training size: the reach rule (and coarse to fine)
        ((3000, 4000), 0, 1.0, False),  # a thin stroke in a large photo: a window around it at its own scale
        ((3000, 4000), 400, 64 / 800, False),  # a wide hole in a large photo: filled where it is `reach` wide
    ],
)
def test_planner_fills_photos_of_the_training_size_whole_and_larger_ones_by_reach(
    shape, disc_radius, scale, whole_photo
):
    height, width = shape
    hole = disc_hole(height, width, disc_radius) if disc_radius else line_hole(height, width, 10)
    (window,) = plan_native_windows(hole, reach=64, min_side=256)
    assert window.scale == pytest.approx(scale, rel=0.02)
    assert (window.box == (0, 0, height, width)) == whole_photo
    top, left, box_height, box_width = window.box
    assert hole[top : top + box_height, left : left + box_width].sum() == hole.sum()


def test_planner_plans_nothing_for_an_empty_mask():
    for shape in ((256, 256), (1000, 1200)):
        assert plan_native_windows(np.zeros(shape, bool), min_side=256) == []


def test_native_windows_cover_every_hole_and_never_overlap():
    rng = np.random.default_rng(0)
    hole = np.zeros((900, 1300), bool)
    for _ in range(12):
        top, left = rng.integers(0, 880), rng.integers(0, 1280)
        hole[top : top + rng.integers(2, 60), left : left + rng.integers(2, 60)] = True
    windows = plan_native_windows(hole, reach=32, max_pixels=200_000, margin=16, min_side=64)
    assert len(windows) > 1
    covered = np.zeros(hole.shape, np.int32)
    for window in windows:
        top, left, height, width = window.box
        covered[top : top + height, left : left + width] += 1
        assert 0 < window.scale <= 1
    assert covered.max() == 1 and np.all(covered[hole] == 1)


# --- the native strategy in inpaint() ---------------------------------------------------------------------


def network_inputs(model, call):
    shapes = []
    handle = model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    try:
        result = call()
    finally:
        handle.remove()
    return result, shapes


def assert_only_hole_changed(before, after, hole):
    after = np.asarray(after)
    assert after.shape == before.shape
    assert np.array_equal(after[~hole], before[~hole]), "pixels outside the hole changed"
    assert not np.array_equal(after[hole], before[hole])


@pytest.fixture(scope="module")
def big_photo(astronaut) -> np.ndarray:
    return cv2.resize(astronaut, (1500, 1100), interpolation=cv2.INTER_CUBIC)


def test_native_path_runs_once_at_the_photos_own_scale(tiny_model, big_photo):
    hole = line_hole(1100, 1500, 6)
    result, shapes = network_inputs(tiny_model, lambda: tiny_model.inpaint(big_photo, hole.view(np.uint8) * 255))
    (window,) = plan_native_windows(hole, min_side=tiny_model.sample_size)
    assert window.scale == 1.0
    multiple = tiny_model.size_multiple
    expected = tuple(-(-side // multiple) * multiple for side in window.box[2:])
    assert shapes == [(1, 3, *expected)]
    assert_only_hole_changed(big_photo, result, hole)


def test_wide_hole_goes_coarse_then_fine_and_keeps_known_pixels(tiny_model, big_photo):
    hole = np.zeros((1100, 1500), bool)
    cv2.circle(hole.view(np.uint8), (700, 500), 160, 1, -1)
    mask = hole.view(np.uint8) * 255
    coarse, coarse_shapes = network_inputs(tiny_model, lambda: tiny_model.inpaint(big_photo, mask, refine=False))
    refined, shapes = network_inputs(tiny_model, lambda: tiny_model.inpaint(big_photo, mask))
    assert len(coarse_shapes) == 1 and len(shapes) == 2
    assert shapes[1][2] * shapes[1][3] > 2 * shapes[0][2] * shapes[0][3]  # the second pass is finer
    for result in (coarse, refined):
        assert_only_hole_changed(big_photo, result, hole)
    # Only the band along the hole's edge is refilled; the interior keeps the coarse fill.
    distance = cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 5)
    interior = distance > 64
    assert np.array_equal(np.asarray(refined)[interior], np.asarray(coarse)[interior])
    assert not np.array_equal(np.asarray(refined)[hole & ~interior], np.asarray(coarse)[hole & ~interior])


def diagonal_band(height: int, width: int, thickness: int) -> np.ndarray:
    band = np.zeros((height, width), np.uint8)
    cv2.line(band, (width // 20, height // 20), (19 * width // 20, 19 * height // 20), 1, thickness)
    return band.view(bool)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_refine_boxes_own_every_band_pixel_once_with_context(scale):
    """The refine pass's boxes: every band pixel refilled by exactly one box, each box holding its pixels plus the
    margin (working pixels, so margin / scale of the band's) unless the array's edge cuts it; a diagonal band is
    split into boxes that hold far fewer pixels than its one bounding box; a compact band is one box."""
    band = diagonal_band(1200, 1600, 30)
    boxes = refine_boxes(band, scale, margin=64, min_side=128)
    count = np.zeros(band.shape, int)
    for (top, left, height, width), owned in boxes:
        assert owned.shape == (height, width) and owned.any()
        count[top : top + height, left : left + width] += owned
        rows, cols = np.nonzero(owned)
        pad = 64 / scale
        assert rows.min() >= min(pad, top + rows.min()) - 1 and cols.min() >= min(pad, left + cols.min()) - 1
        assert height - rows.max() >= min(pad, 1200 - top - rows.max()) and width - cols.max() >= min(
            pad, 1600 - left - cols.max()
        )
    assert np.array_equal(count, band.astype(int)), "a band pixel refilled by no box or by two"
    assert len(boxes) > 2  # the one box around the band would be the whole array
    assert sum(h * w for (_, _, h, w), _ in boxes) < (0.5 if scale == 1 else 0.9) * 1200 * 1600
    disc = np.zeros((1200, 1600), np.uint8)
    cv2.circle(disc, (800, 600), 200, 1, 40)
    assert len(refine_boxes(disc.view(bool), scale, margin=64, min_side=128)) == 1
    assert refine_boxes(np.zeros((10, 10), bool), scale) == []


def test_refine_runs_the_network_around_the_band_only(tiny_model, big_photo):
    """A wide diagonal stroke: filled downscaled, then its edge band refilled at the fine scale on several boxes
    around the band that hold fewer pixels than the window; the interior keeps the coarse fill, the band differs,
    and known pixels stay."""
    hole = diagonal_band(1100, 1500, 120)
    mask = hole.view(np.uint8) * 255
    coarse, coarse_shapes = network_inputs(tiny_model, lambda: tiny_model.inpaint(big_photo, mask, refine=False))
    refined, shapes = network_inputs(tiny_model, lambda: tiny_model.inpaint(big_photo, mask))
    (window,) = plan_native_windows(hole, min_side=tiny_model.sample_size)
    fine = min(1.0, (DEFAULT_MAX_PIXELS / (window.box[2] * window.box[3])) ** 0.5)
    assert fine >= 1.5 * window.scale and len(coarse_shapes) == 1 and len(shapes) > 3
    assert sum(s[2] * s[3] for s in shapes[1:]) < 0.8 * window.box[2] * window.box[3] * fine**2
    for result in (coarse, refined):
        assert_only_hole_changed(big_photo, result, hole)
    distance = cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 5)
    interior = distance > 0.5 * 64 / fine + 1
    assert interior.any() and np.array_equal(np.asarray(refined)[interior], np.asarray(coarse)[interior])
    edge = hole & (distance <= 0.5 * 64 / fine - 1)
    changed = (np.asarray(refined) != np.asarray(coarse)).any(-1)
    assert changed[edge].mean() > 0.5  # (a tiny random network: some pixels round to the same grey)


def test_budget_downscales_a_window_that_does_not_fit(tiny_model, big_photo):
    hole = line_hole(1100, 1500, 6)
    result, shapes = network_inputs(
        tiny_model, lambda: tiny_model.inpaint(big_photo, hole.view(np.uint8) * 255, max_pixels=2**16, refine=False)
    )
    assert len(shapes) == 1 and shapes[0][2] * shapes[0][3] <= 2 * 2**16
    assert_only_hole_changed(big_photo, result, hole)


def test_a_small_photo_with_a_half_hole_fills_at_the_training_scale(astronaut):
    """Issue 31: a 256-px photo with a 50 % hole is filled whole, at once, at its own (the training) scale, like
    the bare network: no downscaled window and no coarse-to-fine pass."""
    from pconv_hf import PConvUNet

    torch.manual_seed(0)
    model = PConvUNet(layer_size=5, base_channels=8, sample_size=256).eval()
    photo = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    disc = disc_hole(256, 256, 102)  # 50 % of the photo, 204 px wide: over three times the reach
    irregular = next(valid for bucket, valid in fixed_masks(6, 256, 256, seed=2026) if bucket == 4) == 0  # 40-50 %
    for hole in (disc, irregular):
        assert 0.4 < hole.mean() <= 0.51
        (window,) = plan_native_windows(hole, min_side=model.sample_size)
        assert window.box == (0, 0, 256, 256) and window.scale == 1.0
        mask = hole.view(np.uint8) * 255
        result, shapes = network_inputs(model, lambda mask=mask: model.inpaint(photo, mask))
        assert shapes == [(1, 3, 256, 256)]
        assert np.array_equal(np.asarray(result), np.asarray(model.inpaint(photo, mask, strategy="crop")))
        assert_only_hole_changed(photo, result, hole)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("size, hole", [((256, 256), "wide"), ((1100, 1500), "thin"), ((1100, 1500), "wide")])
def test_pixels_outside_the_hole_are_unchanged_on_every_path(tiny_model, astronaut, strategy, size, hole):
    height, width = size
    photo = cv2.resize(astronaut, (width, height), interpolation=cv2.INTER_AREA)
    hole_mask = line_hole(height, width, 6) if hole == "thin" else disc_hole(height, width, height // 3)
    result = tiny_model.inpaint(photo, hole_mask.view(np.uint8) * 255, strategy=strategy)
    assert_only_hole_changed(photo, result, hole_mask)


@pytest.mark.parametrize("kwargs, message", [(dict(reach=2), "reach"), (dict(max_pixels=10**9), "max_pixels")])
def test_bad_native_options_raise_value_error(tiny_model, big_photo, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.inpaint(big_photo, line_hole(1100, 1500, 6).view(np.uint8), **kwargs)


# --- the protocol -------------------------------------------------------------------------------------------


def test_size_classes_split_by_megapixels():
    assert [label for label, _, _ in SIZE_CLASSES] == ["<=1 MP", "1-4 MP", ">4 MP"]
    assert size_class(1000, 1000) == "<=1 MP" and size_class(1000, 1001) == "1-4 MP"
    assert size_class(2000, 2000) == "1-4 MP" and size_class(3000, 4000) == ">4 MP"


def test_protocol_on_tiny_data(tmp_path, astronaut, tiny_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut[:300, :400]).save(photos / "small.png")
    Image.fromarray(cv2.resize(astronaut, (1200, 1000))).save(photos / "larger.png")
    paths = sorted(photos.glob("*.png"))
    cases = make_cases(paths, tmp_path / "masks", masks_per_bucket=1, seed=3)
    assert len(cases) == 2 * len(OBJECT_BUCKETS)
    assert {case.size_class for case in cases} == {"<=1 MP", "1-4 MP"}
    assert len(list((tmp_path / "masks").glob("*.png"))) == len(cases)
    assert read_cases(paths, tmp_path / "masks") == sorted(cases, key=lambda c: c.mask.name)
    with pytest.raises(ValueError, match="already holds masks"):
        make_cases(paths, tmp_path / "masks")
    again = make_cases(paths, tmp_path / "masks-again", masks_per_bucket=1, seed=3)
    for a, b in zip(cases, again):
        assert np.array_equal(np.asarray(Image.open(a.mask)), np.asarray(Image.open(b.mask)))

    methods = {"tiny": model_fill(tiny_model), "Telea": BASELINES["telea"][1]}
    rows = run_protocol(methods, [cases[0], cases[len(OBJECT_BUCKETS)]], with_lpips=False)  # one per photo
    assert len(rows) == 2 * 2 and all(row["seconds"] > 0 for row in rows)
    summary = summarize(rows)
    assert summary["all"]["all"]["tiny"]["count"] == 2
    table = format_native_table(summary)
    for line in ("| <=1 MP | 0.01-0.05 | 1 |", "| 1-4 MP | 0.01-0.05 | 1 |", "| all | all | 2 |"):
        assert line in table
    assert "| all | all |" in format_margins(summary, ["tiny"])


def test_hole_metrics_score_only_the_hole(astronaut):
    hole = np.zeros(astronaut.shape[:2], bool)
    hole[100:160, 200:300] = True
    perfect = hole_metrics(astronaut, astronaut, hole, with_lpips=False)
    assert perfect["psnr"] == 100.0 and perfect["ssim"] == pytest.approx(1.0)
    damaged = astronaut.copy()
    damaged[hole] = 0
    damaged[0:50, 0:50] = 255  # far outside the hole's box: not scored
    worse = hole_metrics(damaged, astronaut, hole, with_lpips=False)
    outside_only = astronaut.copy()
    outside_only[0:50, 0:50] = 255
    assert hole_metrics(outside_only, astronaut, hole, with_lpips=False)["psnr"] == 100.0
    assert worse["psnr"] < 20 and worse["ssim"] < 0.9


# --- training crops at the photo's own scale -----------------------------------------------------------------


def test_native_crop_is_a_piece_of_the_photo_at_its_own_scale():
    from pconv_hf.data import native_crop

    photo = np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    for seed in range(10):
        crop = np.asarray(native_crop(Image.fromarray(photo), 64, np.random.default_rng(seed)))
        assert crop.shape == (64, 64, 3)
        found = [
            (top, left)
            for candidate in (crop, crop[:, ::-1])
            for top, left in zip(*np.nonzero(photo[:, :, 0] == candidate[0, 0, 0]))
            if top + 64 <= 300
            and left + 64 <= 500
            and np.array_equal(photo[top : top + 64, left : left + 64], candidate)
        ]
        assert found, "a native crop is an exact (possibly mirrored) square of the photo"


def test_training_stream_mixes_in_native_crops(tmp_path, astronaut):
    from pconv_hf.data import TrainingStream, load_examples, rank_stream
    from pconv_hf.masks import make_mask_source

    Image.fromarray(cv2.resize(astronaut, (1024, 1024))).save(tmp_path / "big.png")

    def first_batches(native_probability):
        examples = rank_stream(load_examples(tmp_path), seed=0, shuffle_buffer_size=1, rank=0, world_size=1)
        stream = TrainingStream(
            examples,
            resolution=64,
            batch_size=1,
            mask_source=make_mask_source("generated", 64),
            seed=0,
            native_probability=native_probability,
            transform="multiscale_crop",
        )
        return [batch for _, batch in zip(range(12), stream)]

    def sharpness(image):  # mean absolute difference of neighbouring pixels: high at native scale
        return float((image[..., 1:] - image[..., :-1]).abs().mean())

    plain, native, half = first_batches(0.0), first_batches(1.0), first_batches(0.5)
    plain_sharp = np.mean([sharpness(b["image"]) for b in plain])
    native_sharp = np.mean([sharpness(b["image"]) for b in native])
    assert native_sharp < plain_sharp  # the photo was upscaled 2x: its own pixels are smoother than downscales
    mixed = sum(not torch.equal(h["image"], p["image"]) for h, p in zip(half, plain))
    assert 2 <= mixed <= 10
    with pytest.raises(ValueError, match="native_probability must be in"):
        TrainingStream(None, resolution=64, batch_size=1, mask_source=None, seed=0, native_probability=2.0)


# --- the shipped model at native size -----------------------------------------------------------------------


def test_shipped_model_beats_an_untrained_twin_at_native_size(astronaut):
    import pconv_hf
    from pconv_hf import PConvUNet

    shipped = pconv_hf.load_model()
    torch.manual_seed(0)
    twin = PConvUNet(**shipped.config).eval()
    photo = cv2.resize(astronaut, (900, 700), interpolation=cv2.INTER_AREA)
    scores = {"shipped": [], "twin": []}
    for seed, kind in enumerate(OBJECT_KINDS):
        hole = object_mask(700, 900, kind, (0.01, 0.05), np.random.default_rng(seed)) == 0
        for name, model in (("shipped", shipped), ("twin", twin)):
            result = model.inpaint(photo, hole.view(np.uint8) * 255)
            assert np.array_equal(np.asarray(result)[~hole], photo[~hole])
            scores[name].append(hole_metrics(np.asarray(result), photo, hole, with_lpips=False)["psnr"])
    assert np.mean(scores["shipped"]) > np.mean(scores["twin"]) + 3


def test_pconv_evaluate_runs_the_native_protocol(tmp_path, astronaut, model_dir, capsys):
    from pconv_hf.cli import evaluate as evaluation

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut[:256, :320]).save(photos / "a.png")
    common = ["--protocol", "native", "--model", str(model_dir), "--data", str(photos), "--no_lpips"]
    evaluation.main([*common, "--output_dir", str(tmp_path / "first"), "--baselines", "telea", "--device", "cpu"])
    table = (tmp_path / "first" / "native_table.md").read_text()
    assert "| <=1 MP | all | 4 |" in table and "PConvUNet" in table and "Telea" in table
    assert len(list((tmp_path / "first" / "masks").glob("*.png"))) == len(OBJECT_BUCKETS)
    # A second run on the saved masks scores the same holes: the same Telea numbers.
    evaluation.main(
        [
            *common,
            "--output_dir",
            str(tmp_path / "second"),
            "--masks",
            str(tmp_path / "first" / "masks"),
            "--baselines",
            "telea",
            "--inpaint_options",
            "strategy=crop",
        ]
    )
    first = (tmp_path / "first" / "native_results.json").read_text()
    second = (tmp_path / "second" / "native_results.json").read_text()

    for metric in ("psnr", "ssim", "count"):
        assert json.loads(first)["all"]["all"]["Telea"][metric] == json.loads(second)["all"]["all"]["Telea"][metric]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main([*common, "--output_dir", str(tmp_path / "third"), "--baselines", "telea,gimp"])
    assert exit_info.value.code == 1
    assert "unknown method 'gimp'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluation.main([*common, "--output_dir", str(tmp_path / "x"), "--inpaint_options", "strategy"])
    assert "key=value" in capsys.readouterr().err
