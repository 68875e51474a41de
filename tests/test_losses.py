import dataclasses

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from pconv_hf.discriminator import PatchDiscriminator
from pconv_hf.feature_weights import feature_weights_path
from pconv_hf.losses import (
    FeatureExtractor,
    InpaintingLoss,
    LossWeights,
    adversarial_loss,
    discriminator_loss,
    gram_matrix,
    hole_patches,
    make_feature_extractor,
    total_variation,
    weighted_total,
)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor("vgg16", weights="random")


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    valid_mask = torch.ones(2, 1, 32, 32)
    valid_mask[:, :, 8:20, 10:24] = 0
    output = torch.rand(2, 3, 32, 32, generator=g)
    return gt, valid_mask, output


def test_loss_weights_are_papers_defaults() -> None:
    assert LossWeights() == LossWeights(valid=1.0, hole=6.0, perceptual=0.05, style=120.0, tv=0.1)
    assert LossWeights().boundary == LossWeights().ssim == LossWeights().hole_mse == 0.0  # not in the paper: off
    assert LossWeights().adversarial == LossWeights().feature_matching == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        LossWeights().hole = 1.0  # type: ignore[misc]


def test_valid_zero_when_valid_pixels_match_hole_positive(batch) -> None:
    gt, valid_mask, output = batch
    out = valid_mask * gt + (1 - valid_mask) * output  # differs from gt only in holes
    terms = InpaintingLoss(None)(gt, valid_mask, out)
    assert terms["valid"].item() == 0.0
    assert terms["hole"].item() > 0.01


def test_hole_zero_when_hole_pixels_match_valid_positive(batch) -> None:
    gt, valid_mask, output = batch
    out = valid_mask * output + (1 - valid_mask) * gt  # differs from gt only in valid pixels
    terms = InpaintingLoss(None)(gt, valid_mask, out)
    assert terms["hole"].item() == 0.0
    assert terms["valid"].item() > 0.01


def test_valid_and_hole_by_hand() -> None:
    gt = torch.zeros(1, 3, 2, 2)
    output = torch.zeros(1, 3, 2, 2)
    output[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])  # a valid pixel
    output[0, 0, 1, 1] = -4.0  # a hole pixel, one channel
    valid_mask = torch.ones(1, 1, 2, 2)
    valid_mask[0, 0, 1, 1] = 0
    terms = InpaintingLoss(None)(gt, valid_mask, output)
    # Means over all N*C*H*W = 12 elements.
    assert terms["valid"].item() == pytest.approx(6.0 / 12)
    assert terms["hole"].item() == pytest.approx(4.0 / 12)
    assert terms["hole_mse"].item() == pytest.approx(16.0 / 12)  # squared hole error only, valid pixels ignored


def test_hole_mse_pulls_a_fill_to_the_mean_where_l1_pulls_it_to_the_median() -> None:
    # One hole pixel whose truth is 0 in three samples and 1 in the fourth: the best constant fill is the
    # median 0 under L1 and the mean 0.25 under the squared error (the one that maximises PSNR).
    gt = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(4, 1, 1, 1).expand(4, 3, 1, 1)
    valid_mask = torch.zeros(4, 1, 1, 1)
    fills = torch.linspace(0, 1, 101)
    losses = [InpaintingLoss(None)(gt, valid_mask, torch.full((4, 3, 1, 1), float(f))) for f in fills]
    assert fills[int(torch.tensor([t["hole"] for t in losses]).argmin())] == 0.0
    assert fills[int(torch.tensor([t["hole_mse"] for t in losses]).argmin())] == pytest.approx(0.25)


def test_three_channel_mask_matches_one_channel(batch) -> None:
    gt, valid_mask, output = batch
    loss = InpaintingLoss(None)
    one = loss(gt, valid_mask, output)
    three = loss(gt, valid_mask.expand(-1, 3, -1, -1), output)
    for name in one:
        torch.testing.assert_close(one[name], three[name])


def test_no_feature_terms_without_extractor(batch) -> None:
    terms = InpaintingLoss(None)(*batch)
    assert set(terms) == {"valid", "hole", "boundary", "hole_mse", "tv"}
    assert make_feature_extractor("none") is None


def test_all_terms_zero_when_output_equals_gt(batch, extractor) -> None:
    gt, valid_mask, _ = batch
    terms = InpaintingLoss(extractor, ssim=True)(gt, valid_mask, gt.clone())
    assert set(terms) == {"valid", "hole", "boundary", "hole_mse", "perceptual", "style", "tv", "ssim"}
    for name in ("valid", "hole", "boundary", "hole_mse", "perceptual", "style"):
        assert terms[name].item() == 0.0, name
    assert terms["ssim"].item() == pytest.approx(0.0, abs=1e-5)


def test_feature_terms_positive_when_output_differs(batch, extractor) -> None:
    terms = InpaintingLoss(extractor, ssim=True)(*batch)
    assert terms["perceptual"].item() > 0
    assert terms["style"].item() > 0
    assert terms["tv"].item() > 0
    assert terms["ssim"].item() > 0
    assert all(t.ndim == 0 for t in terms.values())


def test_tv_zero_for_constant_composite_positive_for_noise() -> None:
    hole_mask = torch.zeros(1, 1, 16, 16)
    hole_mask[..., 4:10, 4:10] = 1
    assert total_variation(torch.full((1, 3, 16, 16), 0.3), hole_mask).item() == 0.0
    assert total_variation(torch.rand(1, 3, 16, 16), hole_mask).item() > 0


def test_tv_restricted_to_dilated_hole_by_hand() -> None:
    image = torch.zeros(1, 1, 6, 6)
    image[..., 0, 5] = 1.0  # far from the hole: outside P, must not count
    image[..., 2, 3] = 1.0  # just right of the hole: inside the 1-pixel dilation
    hole_mask = torch.zeros(1, 1, 6, 6)
    hole_mask[..., 2, 2] = 1
    # P is the 3x3 block rows 1-3, cols 1-3. Pixel (2,3) differs from its P-neighbours (2,2), (1,3), (3,3);
    # its neighbour (2,4) is outside P. So 3 unit differences over 36 elements.
    assert total_variation(image, hole_mask).item() == pytest.approx(3 / 36)


def test_gram_matrix_by_hand() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(features), expected.view(1, 2, 2))


def test_gram_matrix_stable_for_half_input() -> None:
    features = torch.full((1, 4, 64, 64), 300.0).half()  # 300^2 * 4096 overflows float16 (max 65504)
    assert (features.float() ** 2).sum(-1).sum(-1).max() > torch.finfo(torch.float16).max
    gram = gram_matrix(features)
    assert gram.dtype == torch.float32
    assert torch.isfinite(gram).all()
    torch.testing.assert_close(gram, torch.full((1, 4, 4), 300.0**2 / 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(features).dtype == torch.float32


def test_gradients_reach_output_only(batch, extractor) -> None:
    gt, valid_mask, output = batch
    output = output.clone().requires_grad_(True)
    terms = InpaintingLoss(extractor)(gt, valid_mask, output)
    weighted_total(terms).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in extractor.parameters())


def test_weighted_total_uses_paper_defaults() -> None:
    terms = {n: torch.tensor(1.0) for n in ("valid", "hole", "perceptual", "style", "tv")}
    assert weighted_total(terms).item() == pytest.approx(1 + 6 + 0.05 + 120 + 0.1)
    assert weighted_total({"hole": torch.tensor(2.0), "tv": torch.tensor(1.0)}).item() == pytest.approx(12.1)
    custom = LossWeights(hole=1.0)
    assert weighted_total({"hole": torch.tensor(2.0)}, custom).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="bogus"):
        weighted_total({"bogus": torch.tensor(1.0)})


def test_shape_validation(batch) -> None:
    gt, valid_mask, output = batch
    loss = InpaintingLoss(None)
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 16\)"):
        loss(gt, valid_mask, output[..., :16, :16])
    with pytest.raises(ValueError, match="valid_mask"):
        loss(gt, valid_mask[:, :, :16], output)


def test_extractor_frozen_stays_eval_and_is_small(extractor) -> None:
    parent = torch.nn.Sequential(extractor)
    parent.train()
    assert not extractor.training
    assert all(not m.training for m in extractor.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in extractor.modules())  # no classifier
    assert "RANDOMLY INITIALISED" in repr(extractor)
    assert set(extractor.state_dict()) == {k for k in extractor.state_dict() if k.startswith("features.")}


def test_extractor_output_shapes_and_reproducible_random_weights(extractor) -> None:
    feats = extractor(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8)]
    again = FeatureExtractor("vgg16", weights="random")
    for a, b in zip(extractor.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    alex = FeatureExtractor("alexnet", weights="random")
    assert [f.shape[1] for f in alex(torch.rand(1, 3, 64, 64))] == [64, 192, 384]


def test_bad_network_or_weights_raise() -> None:
    with pytest.raises(ValueError, match="resnet"):
        FeatureExtractor("resnet", weights="random")
    with pytest.raises(ValueError, match="places365"):
        FeatureExtractor("vgg16", weights="places365")


def test_missing_imagenet_weights_name_the_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path))
    path = tmp_path / "features" / "vgg16-imagenet.safetensors"
    assert feature_weights_path("vgg16") == path
    with pytest.raises(FileNotFoundError) as info:
        FeatureExtractor("vgg16", weights="imagenet")
    message = str(info.value)
    assert str(path) in message
    assert "bash scripts/fetch_feature_weights.sh" in message
    assert not any(tmp_path.iterdir())  # nothing was downloaded or written


@pytest.mark.parametrize("network", ["vgg16", "alexnet"])
def test_imagenet_weights_load_from_converted_file(tmp_path, monkeypatch, network) -> None:
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path))
    # A fake converted file: every convolution of torchvision's network, random values (see test_feature_weights).
    with torch.device("meta"):
        features = getattr(torchvision.models, network)().features
    shapes = {f"features.{k}": v.shape for k, v in features.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    path = feature_weights_path(network)
    path.parent.mkdir(parents=True)
    save_file(state, path)

    extractor = FeatureExtractor(network, weights="imagenet")
    own = extractor.state_dict()
    assert own  # something was loaded
    for key, value in own.items():
        assert torch.equal(value, state[key]), key
    assert "RANDOM" not in repr(extractor)
    assert not any(p.requires_grad for p in extractor.parameters())


@pytest.mark.parametrize(("network", "total"), [("vgg16", 31), ("alexnet", 13)])
def test_feature_layers_are_torchvisions_features(network, total):
    """pconv_hf.features builds torchvision's feature layers (same indices, so the converted keys load); a prefix
    builds only the layers asked for, drawing the same default initialisation as the whole network's start."""
    from pconv_hf.feature_weights import TORCHVISION_CONV_INDICES
    from pconv_hf.features import LAYER_BUILDERS

    build = LAYER_BUILDERS[network]
    reference = getattr(torchvision.models, network)().features
    layers = torch.nn.Sequential(*build(total))
    assert repr(layers) == repr(reference).replace("ReLU(inplace=True)", "ReLU()")
    convs = tuple(i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d))
    assert convs == TORCHVISION_CONV_INDICES[network]
    torch.manual_seed(0)
    whole = build(total)
    torch.manual_seed(0)
    prefix = build(5, inplace=True)
    assert len(prefix) == 5 and isinstance(prefix[1], torch.nn.ReLU) and prefix[1].inplace
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(prefix, whole) if isinstance(a, torch.nn.Conv2d))
    with pytest.raises(ValueError, match=f"count must be in \\[1, {total}\\].*got {total + 1}"):
        build(total + 1)


# ---------------------------------------------------------------------------------------------------------
# The adversarial term: PatchGAN discriminator, its losses, and where the generator's gradient goes


@pytest.fixture
def discriminator() -> PatchDiscriminator:
    torch.manual_seed(0)
    return PatchDiscriminator(base_channels=8, num_layers=3)


@pytest.mark.parametrize(("size", "layers", "logits_side"), [(32, 3, 7), (64, 3, 11), (64, 2, 19), (256, 3, 35)])
def test_discriminator_shapes(size, layers, logits_side) -> None:
    model = PatchDiscriminator(base_channels=4, num_layers=layers)
    logits, features = model(torch.rand(2, 3, size, size))
    assert logits.shape == (2, 1, logits_side, logits_side)
    assert [f.shape[1] for f in features] == [4 * min(2**i, 8) for i in range(layers + 1)]
    assert all(f.shape[0] == 2 for f in features)
    with pytest.raises(ValueError, match="num_layers must be an int >= 1, got 0"):
        PatchDiscriminator(num_layers=0)
    with pytest.raises(ValueError, match="expected an image batch of shape"):
        model(torch.rand(3, size, size))


def test_spectral_norm_discriminator_is_1_lipschitz_per_layer() -> None:
    model = PatchDiscriminator(base_channels=4, spectral_normalization=True)
    for _ in range(20):  # power iterations converge during training forwards
        model(torch.rand(1, 3, 32, 32))
    conv = model.blocks[1][0]
    assert hasattr(conv, "parametrizations")
    singular = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert 0.9 < singular < 1.1


def test_hole_patches_marks_cells_covering_a_hole() -> None:
    valid_mask = torch.ones(1, 1, 32, 32)
    valid_mask[..., 0, 0] = 0  # one hole pixel in the corner
    cells = hole_patches(valid_mask, (4, 4))
    assert cells.shape == (1, 1, 4, 4) and cells[0, 0, 0, 0] == 1 and cells.sum() == 1


def test_adversarial_gradient_reaches_the_output_only_in_the_hole(batch, discriminator) -> None:
    gt, valid_mask, output = batch
    output = output.clone().requires_grad_(True)
    _, real_features = discriminator_loss(discriminator, gt, valid_mask, output.detach(), r1=False)
    terms = adversarial_loss(discriminator, gt, valid_mask, output, real_features)
    assert set(terms) == {"adversarial", "feature_matching"}
    assert all(t.ndim == 0 and torch.isfinite(t) and t > 0 for t in terms.values())
    (terms["adversarial"] + terms["feature_matching"]).backward()
    hole = (valid_mask == 0).expand_as(output)
    assert torch.count_nonzero(output.grad[~hole]) == 0  # known pixels come from the photo: no gradient
    assert torch.count_nonzero(output.grad[hole]) > 0.9 * hole.sum()
    # Ground truth in the hole: the composite is the real image, so feature matching is exactly 0.
    assert adversarial_loss(discriminator, gt, valid_mask, gt, real_features)["feature_matching"] == 0


def test_discriminator_loss_trains_the_discriminator_not_the_generator(batch, discriminator) -> None:
    gt, valid_mask, output = batch
    output = output.clone().requires_grad_(True)
    terms, real_features = discriminator_loss(discriminator, gt, valid_mask, output, r1=True)
    assert set(terms) == {"real", "fake", "r1"}
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values()) and terms["r1"] > 0
    assert len(real_features) == 4 and not any(f.requires_grad for f in real_features)
    (terms["real"] + terms["fake"] + terms["r1"]).backward()
    assert output.grad is None  # the composite is detached
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in discriminator.parameters())
    # The R1 term is the squared gradient norm of the real logits, per image, averaged.
    real = gt.clone().requires_grad_(True)
    logits, _ = discriminator(real)
    (gradient,) = torch.autograd.grad(logits.sum(), real)
    torch.testing.assert_close(terms["r1"].detach(), gradient.square().sum(dim=(1, 2, 3)).mean(), rtol=1e-4, atol=0)


def test_discriminator_loss_ignores_patches_without_a_hole(discriminator) -> None:
    gt = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    valid_mask = torch.ones(1, 1, 64, 64)
    valid_mask[..., 40:, 40:] = 0
    output = torch.rand_like(gt)
    changed = output.clone()
    changed[..., :40, :40] = 0  # outside the hole: not part of the composite
    first, _ = discriminator_loss(discriminator, gt, valid_mask, output, r1=False)
    second, _ = discriminator_loss(discriminator, gt, valid_mask, changed, r1=False)
    assert torch.equal(first["fake"], second["fake"])
    no_hole, _ = discriminator_loss(discriminator, gt, torch.ones_like(valid_mask), output, r1=False)
    assert no_hole["fake"] == 0


def test_weighted_total_includes_the_adversarial_terms() -> None:
    terms = {"hole": torch.tensor(1.0), "adversarial": torch.tensor(2.0), "feature_matching": torch.tensor(3.0)}
    assert weighted_total(terms, LossWeights()) == 6.0  # both off by default
    assert weighted_total(terms, LossWeights(adversarial=0.5, feature_matching=2.0)) == 6.0 + 1.0 + 6.0
