"""The boundary-artifact measures, the boundary_blend last layer, the boundary loss term and multiscale crops."""

import math

import numpy as np
import pytest
import torch

from pconv_hf import PConvUNet
from pconv_hf.losses import InpaintingLoss, LossWeights, boundary_ring, weighted_total
from pconv_hf.metrics import telea
from pconv_hf.model import add_boundary_blend
from pconv_hf.seams import (
    boundary_rings,
    corner_ratio,
    error_by_valid_neighbours,
    ring_ratio,
    stroke_masks,
    valid_neighbour_count,
)


def smooth_images(n: int = 2, size: int = 64) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = [torch.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * x * y]) for _ in range(n)]
    images[-1] = images[-1].flip(-1)
    return torch.stack(images)


def test_valid_neighbour_count_on_a_single_hole_and_its_corners():
    valid = torch.ones(1, 1, 5, 5)
    valid[0, 0, 2, 2] = 0
    assert valid_neighbour_count(valid)[0, 0, 2, 2] == 8
    valid = torch.ones(1, 1, 4, 4)
    valid[0, 0, 1:3, 1:3] = 0  # a 2x2 hole: every hole pixel sees 5 valid neighbours
    counts = valid_neighbour_count(valid)[0, 0]
    assert counts[1:3, 1:3].eq(5).all()


def test_stroke_masks_have_pixels_that_stick_out():
    masks = stroke_masks(128, angles=(20, 65), widths=(16,))
    assert masks.shape == (2, 1, 128, 128)
    hole = masks < 0.5
    counts = valid_neighbour_count(masks)
    assert 0.05 < hole.float().mean() < 0.3
    assert (hole & (counts == 5)).sum() > 0 and (hole & (counts == 4)).sum() > 0


def test_ring_ratio_is_one_for_a_perfect_fill_and_high_for_a_drawn_boundary_line():
    image = smooth_images(1)
    valid = stroke_masks(64, angles=(30,), widths=(20,))
    assert ring_ratio(image, image, valid) == 1.0
    noise = torch.rand(image.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    uniform_error = image + noise
    assert 0.8 < ring_ratio(uniform_error, image, valid) < 1.25
    inner, _ = boundary_rings(valid, width=1)
    line = uniform_error + 0.3 * inner.float()  # a bright line along the hole edge
    assert ring_ratio(line, image, valid) > 2.0


def test_error_by_valid_neighbours_isolates_the_pixels_that_stick_out():
    image = smooth_images(1)
    valid = stroke_masks(64, angles=(25,), widths=(20,))
    hole = valid < 0.5
    counts = valid_neighbour_count(valid)
    output = image + 0.02
    output = output + 0.1 * (hole & (counts == 5)).float()  # the dotted line
    sums = error_by_valid_neighbours(output, image, valid)
    assert sums[5][1] > 0
    assert sums[5][0] / sums[5][1] == pytest.approx(0.12, abs=1e-5)
    assert sums[4][0] / sums[4][1] == pytest.approx(0.02, abs=1e-5)


def test_corner_ratio_of_telea_is_low_and_of_a_dotted_fill_high():
    images = smooth_images(2)
    masks = stroke_masks(64, angles=(20, 50), widths=(12,))
    assert corner_ratio(telea, images, masks=masks)["ratio"] < 1.3

    def dotted(image, valid):
        counts = valid_neighbour_count(valid)
        filled = telea(image, valid)
        return filled + 0.2 * ((valid < 0.5) & (counts == 5)).float()

    result = corner_ratio(dotted, images, masks=masks)
    assert result["ratio"] > 2.0
    assert set(result["by_neighbours"]) == set(range(9)) and not math.isnan(result["ring"])


def test_boundary_blend_model_trains_both_predictions_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = PConvUNet(layer_size=3, base_channels=4, sample_size=32, boundary_blend=True)
    last = model.decoder[-1]
    image = torch.rand(2, 3, 32, 32)
    valid = (torch.rand(2, 1, 32, 32) > 0.4).float()
    model(image * valid, valid).mean().backward()
    assert last.known.weight.grad.abs().sum() > 0 and last.blend_logit.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    loaded = PConvUNet.from_pretrained(tmp_path)
    assert loaded.config["boundary_blend"] is True
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(image * valid, valid), model(image * valid, valid))


def test_boundary_blend_needs_partial_convolutions():
    with pytest.raises(ValueError, match="boundary_blend"):
        PConvUNet(layer_size=3, base_channels=4, sample_size=32, conv_type="plain", boundary_blend=True)


def test_add_boundary_blend_keeps_the_hole_interior_and_fills_the_edge_from_known_pixels():
    torch.manual_seed(1)
    model = PConvUNet(layer_size=3, base_channels=8, sample_size=32).eval()
    upgraded = add_boundary_blend(model, blend=0.95).eval()
    assert upgraded.config == {**model.config, "boundary_blend": True}
    image = torch.rand(1, 3, 32, 32)
    valid = torch.ones(1, 1, 32, 32)
    valid[..., 8:24, 8:24] = 0
    with torch.no_grad():
        old, new = model(image * valid, valid), upgraded(image * valid, valid)
    # Hole pixels with no known neighbour: the paper's layer saw only features there, renormalised the same way.
    torch.testing.assert_close(new[..., 9:23, 9:23], old[..., 9:23, 9:23], atol=1e-5, rtol=1e-5)
    # A hole pixel on the edge takes (almost all) the mean of its known neighbours: 5 of its 9 window pixels.
    edge_model = add_boundary_blend(model, blend=1 - 1e-7).eval()
    with torch.no_grad():
        edge = edge_model(image * valid, valid)[0, :, 8, 8]
    known_mean = image[0, :, 7:10, 7:10].flatten(1)[:, [0, 1, 2, 3, 6]].mean(dim=1)
    torch.testing.assert_close(edge, known_mean, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="paper's last layer"):
        add_boundary_blend(upgraded)


def test_boundary_blend_has_no_dotted_edge_where_the_paper_layer_has_one():
    """The corner defect on a smooth image: per known-neighbour count, the blend's edge error stays flat."""
    images = smooth_images(2)
    masks = stroke_masks(64, angles=(20, 50), widths=(12,))
    torch.manual_seed(2)
    model = add_boundary_blend(PConvUNet(layer_size=3, base_channels=8, sample_size=64), blend=0.999).eval()
    with torch.no_grad():
        result = corner_ratio(model, images, masks=masks)
    assert result["ratio"] < 1.3  # the mean of known pixels is as good at 5 known neighbours as at 4


def test_boundary_ring_and_loss_term():
    hole = torch.zeros(1, 1, 6, 6)
    hole[..., 1:5, 1:5] = 1
    ring = boundary_ring(hole)
    expected = hole.clone()
    expected[..., 2:4, 2:4] = 0
    assert torch.equal(ring, expected)

    image = torch.rand(1, 3, 6, 6)
    output = image.clone()
    output[..., 2:4, 2:4] += 0.5  # error only in the hole's interior: no boundary loss
    terms = InpaintingLoss(None)(image, 1 - hole, output)
    assert terms["boundary"] == 0 and terms["hole"] > 0
    output = image + 0.5 * ring
    terms = InpaintingLoss(None)(image, 1 - hole, output)
    assert terms["boundary"] == pytest.approx(0.5 * 12 / 36)
    total = weighted_total(terms, LossWeights(boundary=10.0))
    assert total == pytest.approx(float(weighted_total(terms, LossWeights()) + 10.0 * terms["boundary"]))


def test_multiscale_crop_covers_native_to_whole_scale():
    from PIL import Image

    from pconv_hf.data import multiscale_crop

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 900, 3), dtype=np.uint8))
    crops = [multiscale_crop(photo, 64, np.random.default_rng(seed)) for seed in range(40)]
    assert all(crop.size == (64, 64) for crop in crops)
    again = multiscale_crop(photo, 64, np.random.default_rng(3))
    assert np.array_equal(np.asarray(again), np.asarray(crops[3]))
    # Native-scale crops keep the noise's contrast; whole-photo crops average it away.
    contrasts = sorted(float(np.asarray(crop, np.float32).std()) for crop in crops)
    assert contrasts[-1] > 1.5 * contrasts[0]


def test_evaluate_reports_the_ring_ratio_per_bucket():
    from pconv_hf.metrics import evaluate

    images = smooth_images(2)
    masks = stroke_masks(64, angles=(30, 70), widths=(14,))
    samples = [(images[i], masks[i]) for i in range(2)]

    def perfect(image, valid):
        return images[: len(image)]

    def with_edge_line(image, valid):
        inner, _ = boundary_rings(valid, width=1)
        return images[: len(image)] + 0.02 + 0.3 * inner.float()

    clean = evaluate(perfect, samples, lpips=False)["all"]
    lined = evaluate(with_edge_line, samples, lpips=False)["all"]
    assert clean["ring"] == 1.0
    assert lined["ring"] > 2.0 and lined["ssim"] < clean["ssim"]
