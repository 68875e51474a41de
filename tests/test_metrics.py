import math

import numpy as np
import pytest
import skimage.data
import skimage.metrics
import skimage.transform
import torch

from pconv_hf.masks import HOLE_RATIO_BUCKETS, bucket_label
from pconv_hf.metrics import (
    PSNR_MAX_DB,
    evaluate,
    format_table,
    l1,
    navier_stokes,
    psnr,
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
    kwargs = dict(
        data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    # torchmetrics averages the whole SSIM map (no border crop): compare with skimage's full map mean ...
    _, full = skimage.metrics.structural_similarity(astronaut, noisy, full=True, **kwargs)
    assert value.item() == pytest.approx(full.mean(), abs=2e-3)
    # ... and, more loosely, with skimage's border-cropped score.
    assert value.item() == pytest.approx(
        skimage.metrics.structural_similarity(astronaut, noisy, **kwargs), abs=0.03
    )


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
    for row in (results["all"], results[bucket_label(HOLE_RATIO_BUCKETS[0])]):
        assert row["psnr"] == PSNR_MAX_DB
        assert row["ssim"] == pytest.approx(1.0)
        assert row["l1"] == 0.0


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
    assert results[bucket_label(HOLE_RATIO_BUCKETS[1])]["l1"] == pytest.approx(
        expected_l1[0].item(), rel=1e-5
    )
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
