import math

import cv2
import numpy as np
import pytest
import skimage.data
import skimage.metrics
import skimage.transform
import skimage.util
import torch

from pconv_hf.masks import HOLE_RATIO_BUCKETS, bucket_label
from pconv_hf.metrics import (
    LPIPS,
    PSNR_MAX_DB,
    _lpips_module,
    evaluate,
    format_table,
    l1,
    lpips,
    lpips_available,
    navier_stokes,
    psnr,
    shiftmap,
    shiftmap_fill,
    ssim,
    telea,
)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1)[None].float()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.transform.resize(skimage.data.astronaut(), (64, 64), anti_aliasing=True)


@pytest.fixture(scope="module")
def noisy(astronaut) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(astronaut + rng.normal(0, 0.05, astronaut.shape), 0, 1)


def _valid_mask(size: int, hole_pixels: int) -> torch.Tensor:
    """(1,H,W) valid mask whose first ``hole_pixels`` pixels in raster order are holes."""
    mask = torch.ones(size * size)
    mask[:hole_pixels] = 0
    return mask.view(1, size, size)


def test_l1_per_image() -> None:
    target = torch.zeros(2, 3, 4, 4)
    output = target.clone()
    output[1] = 0.5
    torch.testing.assert_close(l1(output, target), torch.tensor([0.0, 0.5]))


def test_psnr_matches_skimage(astronaut, noisy) -> None:
    expected = skimage.metrics.peak_signal_noise_ratio(astronaut, noisy, data_range=1.0)
    value = psnr(_to_tensor(noisy), _to_tensor(astronaut))
    assert value.shape == (1,)
    assert value.item() == pytest.approx(expected, abs=1e-3)


def test_ssim_matches_skimage(astronaut, noisy) -> None:
    value = ssim(_to_tensor(noisy), _to_tensor(astronaut))
    assert value.shape == (1,)
    kwargs = dict(data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    # torchmetrics averages the whole SSIM map (no border crop): compare with skimage's full map mean ...
    _, full = skimage.metrics.structural_similarity(astronaut, noisy, full=True, **kwargs)
    assert value.item() == pytest.approx(full.mean(), abs=2e-3)
    # ... and, more loosely, with skimage's border-cropped score.
    assert value.item() == pytest.approx(skimage.metrics.structural_similarity(astronaut, noisy, **kwargs), abs=0.03)


def test_metrics_per_image_in_a_batch(astronaut, noisy) -> None:
    target = torch.cat([_to_tensor(astronaut), _to_tensor(astronaut)])
    output = torch.cat([_to_tensor(noisy), _to_tensor(astronaut)])
    assert psnr(output, target)[1].item() == PSNR_MAX_DB  # perfect reconstruction is clamped, not inf
    assert psnr(output, target)[0].item() < 40
    assert ssim(output, target)[1].item() == pytest.approx(1.0)
    assert ssim(output, target)[0].item() < 0.95


def test_metric_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\)"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


@pytest.mark.parametrize("baseline", [telea, navier_stokes])
def test_opencv_baselines_fill_holes_and_keep_valid_pixels(astronaut, baseline) -> None:
    image = _to_tensor(astronaut)
    valid_mask = torch.ones(1, 1, 64, 64)
    valid_mask[..., 28:36, 28:36] = 0
    output = baseline(image * valid_mask, valid_mask)
    assert output.shape == image.shape and output.dtype == image.dtype
    assert output.min() >= 0 and output.max() <= 1
    valid = valid_mask.bool().expand_as(image)
    assert torch.allclose(output[valid], image[valid], atol=1 / 255)
    # The hole was black in the input; the fill should look like the surroundings, not stay black.
    assert (output - image).abs()[~valid].mean() < 0.5 * image[~valid].mean()

    # A smooth gradient is almost exactly recoverable.
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    gradient = torch.stack([x, y, (x + y) / 2])[None]
    filled = baseline(gradient * valid_mask, valid_mask)
    assert (filled - gradient).abs()[~valid].mean() < 0.03


RED, BLUE = (200, 30, 40), (30, 60, 210)


def checkerboard(height: int, width: int, cell: int = 3) -> np.ndarray:
    """A red and blue checkerboard: a texture whose only colours are those two."""
    rows, cols = np.arange(height) // cell, np.arange(width) // cell
    odd = ((rows[:, None] + cols[None]) % 2).astype(bool)
    return np.where(odd[..., None], np.array(RED, np.uint8), np.array(BLUE, np.uint8))


def distance_to_red_or_blue(pixels: np.ndarray) -> np.ndarray:
    pixels = pixels.astype(int)
    return np.minimum(np.abs(pixels - RED).max(-1), np.abs(pixels - BLUE).max(-1))


def test_shiftmap_copies_the_photos_own_texture_into_the_hole_only() -> None:
    photo = checkerboard(96, 128)
    hole = np.zeros((96, 128), bool)
    hole[30:62, 40:90] = True
    given = photo.copy()
    given[hole] = (255, 0, 255)  # what was there must not reach the fill
    filled = shiftmap_fill(given, hole)
    assert filled.dtype == np.uint8 and filled.shape == photo.shape
    assert np.array_equal(filled[~hole], photo[~hole])
    # Exemplar: every hole pixel is one of the photo's two colours (up to the CIELab round trip), where a
    # diffusion fill blends them into purple.
    assert distance_to_red_or_blue(filled[hole]).max() <= 4
    smeared = cv2.inpaint(given, hole.view(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    assert (distance_to_red_or_blue(smeared[hole]) > 40).mean() > 0.5
    assert np.array_equal(shiftmap_fill(given, hole), filled)  # deterministic
    assert np.array_equal(shiftmap_fill(given, np.zeros_like(hole)), given)  # nothing to fill: unchanged
    with pytest.raises(ValueError, match="whole photo"):
        shiftmap_fill(given, np.ones_like(hole))
    with pytest.raises(ValueError, match="hole of the photo's size"):
        shiftmap_fill(given, hole[:, :100])


def test_shiftmap_model_fn_keeps_valid_pixels_and_fills_each_image() -> None:
    photos = torch.from_numpy(np.stack([checkerboard(64, 64), checkerboard(64, 64, cell=4)])).permute(0, 3, 1, 2)
    image = photos.float() / 255
    valid_mask = torch.ones(2, 1, 64, 64)
    valid_mask[0, :, 10:30, 20:50] = 0
    valid_mask[1, :, 35:60, 5:25] = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the two images side by side
    try:
        output = shiftmap(image * valid_mask, valid_mask)
    finally:
        torch.set_num_threads(threads)
    valid = valid_mask.bool().expand_as(image)
    assert torch.equal(output[valid], image[valid])
    pixels = (output * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(2):
        hole = valid_mask[i, 0].numpy() == 0
        assert np.array_equal(pixels[i], shiftmap_fill(photos[i].permute(1, 2, 0).numpy(), hole))
        assert distance_to_red_or_blue(pixels[i][hole]).max() <= 4


def test_evaluate_buckets_counts_and_perfect_psnr() -> None:
    size = 40  # 1600 pixels: every ratio below is an exact pixel count
    pixels = size * size
    g = torch.Generator().manual_seed(0)
    # Hole ratios: 0.05 -> bucket 0, 0.1 exactly -> bucket 0 (buckets are (low, high]), 0.25 -> bucket 2,
    # 0.55 -> bucket 5, 0.0 and 0.8 -> no bucket but counted in "all".
    ratios = [0.05, 0.1, 0.25, 0.55, 0.0, 0.8]
    images = [torch.rand(3, size, size, generator=g) for _ in ratios]
    samples = [(img, _valid_mask(size, round(r * pixels))) for img, r in zip(images, ratios, strict=True)]
    assert 160 / pixels == HOLE_RATIO_BUCKETS[0][1]
    gt = torch.stack(images)

    calls = []

    def oracle(image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        # The model must not see the ground truth in the holes.
        assert torch.all(image[valid_mask.expand_as(image) == 0] == 0)
        calls.append(image.shape[0])
        start = sum(calls[:-1])
        return gt[start : start + image.shape[0]]

    results = evaluate(oracle, samples, batch_size=4)
    assert calls == [4, 2]
    assert list(results) == [bucket_label(b) for b in HOLE_RATIO_BUCKETS] + ["all"]
    assert [results[bucket_label(b)]["count"] for b in HOLE_RATIO_BUCKETS] == [2, 0, 1, 0, 0, 1]
    assert results["all"]["count"] == 6
    assert math.isnan(results[bucket_label(HOLE_RATIO_BUCKETS[1])]["psnr"])
    assert math.isnan(results[bucket_label(HOLE_RATIO_BUCKETS[1])]["lpips"])
    for row in (results["all"], results[bucket_label(HOLE_RATIO_BUCKETS[0])]):
        assert row["psnr"] == PSNR_MAX_DB
        assert row["ssim"] == pytest.approx(1.0)
        assert row["l1"] == 0.0
        assert row["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_evaluate_scores_the_composite_and_accepts_batches() -> None:
    size = 32
    image = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    valid_mask = torch.stack([_valid_mask(size, 150), _valid_mask(size, 400)])  # ratios ~0.15, ~0.39

    def wrong_everywhere(image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        return torch.full_like(image, 2.0)  # out of range on purpose: composite is clamped to 1

    results = evaluate(wrong_everywhere, [(image, valid_mask)])
    expected_l1 = ((1 - valid_mask) * (1 - image)).flatten(1).mean(1)  # valid pixels come from the gt
    assert results[bucket_label(HOLE_RATIO_BUCKETS[1])]["count"] == 1
    assert results[bucket_label(HOLE_RATIO_BUCKETS[3])]["count"] == 1
    assert results[bucket_label(HOLE_RATIO_BUCKETS[1])]["l1"] == pytest.approx(expected_l1[0].item(), rel=1e-5)
    assert results["all"]["l1"] == pytest.approx(expected_l1.mean().item(), rel=1e-5)
    assert results["all"]["psnr"] < 30


def test_evaluate_restores_module_mode_and_runs_baseline(astronaut) -> None:
    class Blank(torch.nn.Module):
        def forward(self, image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
            assert not self.training
            return torch.zeros_like(image)

    model = Blank().train()
    image = _to_tensor(astronaut)[0]
    valid_mask = torch.ones(1, 64, 64)
    valid_mask[:, 20:44, 20:44] = 0  # ratio 0.14
    blank = evaluate(model, [(image, valid_mask)])
    assert model.training
    filled = evaluate(telea, [(image, valid_mask)], progress=True)
    label = bucket_label(HOLE_RATIO_BUCKETS[1])
    assert filled[label]["count"] == 1
    assert filled[label]["psnr"] > blank[label]["psnr"] + 2


def test_evaluate_rejects_bad_input() -> None:
    def identity(image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        return image

    with pytest.raises(ValueError, match="pairs"):
        evaluate(identity, [torch.zeros(3, 16, 16)])
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\)"):
        evaluate(identity, [(torch.zeros(3, 16, 16), torch.ones(1, 8, 8))])
    with pytest.raises(ValueError, match="returned shape"):
        evaluate(lambda image, valid_mask: image[..., :8], [(torch.zeros(3, 16, 16), torch.ones(1, 16, 16))])


def test_format_table_layout() -> None:
    row = {"count": 3, "l1": 0.0123, "psnr": 31.234, "ssim": 0.91234}
    empty = {"count": 0, "l1": math.nan, "psnr": math.nan, "ssim": math.nan}
    results = {
        "PConv": {"0.01-0.1": row, "0.1-0.2": empty, "all": row},
        "Telea": {"0.01-0.1": row, "0.1-0.2": row, "all": row},
    }
    lines = format_table(results).splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["Method", "0.01-0.1 PSNR", "0.01-0.1 SSIM", "0.01-0.1 L1 (%)"]
    assert len(header) == 1 + 3 * 3
    pconv = [c.strip() for c in lines[2].strip("|").split("|")]
    assert pconv[:4] == ["PConv", "31.23", "0.912", "1.23"]
    assert pconv[4:7] == ["–"] * 3
    assert lines[3].startswith("| Telea |")


def test_format_table_lpips_column() -> None:
    row = {"count": 3, "l1": 0.0123, "psnr": 31.234, "ssim": 0.91234, "lpips": 0.12345}
    without = {"count": 3, "l1": 0.0123, "psnr": 31.234, "ssim": 0.91234}
    lines = format_table({"PConv": {"0.01-0.1": row, "all": row}, "Telea": {"0.01-0.1": without, "all": without}})
    lines = lines.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:5] == ["Method", "0.01-0.1 PSNR", "0.01-0.1 SSIM", "0.01-0.1 L1 (%)", "0.01-0.1 LPIPS ↓"]
    assert len(header) == 1 + 2 * 4
    assert [c.strip() for c in lines[2].strip("|").split("|")][:5] == ["PConv", "31.23", "0.912", "1.23", "0.123"]
    assert [c.strip() for c in lines[3].strip("|").split("|")][4] == "–"  # a method without LPIPS


# ---------------------------------------------------------------------------------------------------------
# LPIPS (the converted weights are present in CI: scripts/fetch_feature_weights.sh)


@pytest.fixture(scope="module")
def astronaut_512() -> np.ndarray:
    return skimage.util.img_as_float(skimage.data.astronaut())  # (512, 512, 3) float64 in [0, 1]


def test_lpips_reference_values(astronaut_512) -> None:
    """0 for identical images; grows with blur; the published v0.1 AlexNet value for a sigma-3 blur."""
    target = _to_tensor(astronaut_512)
    same = lpips(target.clone(), target)
    sigma_1 = lpips(_to_tensor(cv2.GaussianBlur(astronaut_512, (0, 0), 1)), target)
    sigma_3 = lpips(_to_tensor(cv2.GaussianBlur(astronaut_512, (0, 0), 3)), target)
    assert same.shape == sigma_3.shape == (1,) and sigma_3.dtype == torch.float32
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    # Measured: 0.1459 and 0.4290, equal to the reference lpips package (blurring the uint8 image instead: 0.426).
    assert sigma_1.item() == pytest.approx(0.145, abs=0.005)
    assert sigma_3.item() == pytest.approx(0.426, abs=0.005)
    assert 0 < sigma_1.item() < sigma_3.item()


def test_lpips_symmetric_batch_consistent_and_float32(astronaut) -> None:
    target = _to_tensor(astronaut)  # 64 px
    blurred = _to_tensor(cv2.GaussianBlur(astronaut, (0, 0), 2))
    noisy = _to_tensor(np.clip(astronaut + np.random.default_rng(0).normal(0, 0.1, astronaut.shape), 0, 1))
    singles = torch.cat([lpips(blurred, target), lpips(noisy, target)])
    batch = lpips(torch.cat([blurred, noisy]), torch.cat([target, target]))
    torch.testing.assert_close(batch, singles, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lpips(target, blurred), lpips(blurred, target), rtol=1e-5, atol=1e-6)
    assert (singles > 0.01).all()
    # Half-precision input under autocast is computed in float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = lpips(blurred.bfloat16(), target.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(singles[0].item(), abs=0.01)


def test_lpips_vgg16_grows_with_blur(astronaut) -> None:
    target = _to_tensor(astronaut)
    values = [lpips(_to_tensor(cv2.GaussianBlur(astronaut, (0, 0), s)), target, net="vgg16").item() for s in (1, 3)]
    assert lpips(target, target, net="vgg16").item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < values[0] < values[1]


def test_lpips_module_is_frozen_and_gives_gradients(astronaut) -> None:
    module = LPIPS()
    parent = torch.nn.Sequential(module).train()
    assert not module.training and not parent[0].training
    assert not any(p.requires_grad for p in module.parameters())
    assert "net=alexnet" in repr(module)
    # lpips() after evaluate() built its cached module in inference mode still works with autograd.
    _lpips_module.cache_clear()
    evaluate(lambda image, valid_mask: image, [(_to_tensor(astronaut)[0], _valid_mask(64, 500))])
    output = _to_tensor(astronaut).requires_grad_()
    lpips(output * 0.5, _to_tensor(astronaut)).sum().backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_lpips_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPS("resnet")
    with pytest.raises(ValueError, match="at least 31 px"):
        lpips(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="RGB"):
        lpips(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 63\)"):
        lpips(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 63))


def test_evaluate_lpips_switch_and_missing_weights(astronaut, tmp_path, monkeypatch) -> None:
    image = _to_tensor(astronaut)[0]
    samples = [(image, _valid_mask(64, 500))]
    assert lpips_available()
    with_lpips = evaluate(telea, samples, seams=False)
    assert all(set(row) == {"count", "l1", "psnr", "ssim", "lpips"} for row in with_lpips.values())
    assert 0 < with_lpips["all"]["lpips"] < 0.5
    without = evaluate(telea, samples, lpips=False)
    assert all(set(row) == {"count", "l1", "psnr", "ssim", "ring", "corner"} for row in without.values())
    assert without["all"]["psnr"] == with_lpips["all"]["psnr"]

    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path))  # empty: no converted weights
    assert not lpips_available()
    assert "lpips" not in evaluate(telea, samples)["all"]  # None: only when the weights are there
    with pytest.raises(FileNotFoundError) as info:
        evaluate(telea, samples, lpips=True)
    assert str(tmp_path / "features" / "alexnet-imagenet.safetensors") in str(info.value)
    assert "bash scripts/fetch_feature_weights.sh" in str(info.value)
    with pytest.raises(FileNotFoundError, match="fetch_feature_weights.sh"):
        lpips(image[None], image[None])  # the cached module is not reused for another weights folder
