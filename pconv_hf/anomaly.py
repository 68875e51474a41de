"""Reconstruction-based anomaly detection: find defects in images of otherwise uniform objects by how badly a
model trained on clean images reconstructs them.

Two ways to reconstruct an image with a ``PConvUNet`` trained on clean images only:

- ``"autoencoder"``: the plain-conv U-Net (``conv_type="plain"``) sees the whole image (an all-valid mask) and
  reproduces it. Its skip connections make copying easy, so train it with synthetic defects (the target stays
  clean) or keep training short; see docs/anomaly.md.
- ``"inpainting"``: a k x k grid of cells is split into ``period**2`` interleaved passes (a checkerboard for
  ``period=2`` in both directions); in each pass one set of cells is a hole that the partial-conv U-Net fills
  from its surroundings. Every pixel is a hole in exactly one pass, so the assembled prediction is made of
  guesses only. A defect cannot be guessed from the clean texture around it, so it stands out.

The comparison with the input gives a per-pixel heat map and a per-image score::

    heat map = lambda * mse_map / mse_scale + (1 - lambda) * feature_map / perceptual_scale
    score    = mean of the heat map = lambda * mse / mse_scale + (1 - lambda) * perceptual / perceptual_scale

``mse_map`` is the squared difference of the images standardised with the training set's per-channel std,
after a Gaussian blur of ``blur_sigma`` pixels: comparing local means lets fine texture that nothing can predict
average out while a coherent defect remains (``blur_sigma`` 0 is the plain per-pixel MSE). ``feature_map`` is the
distance of unit-normalised AlexNet or VGG16 features (as in LPIPS, without learned weights), averaged over three
stages and upsampled to the image; by default (``resolve_features``) ImageNet VGG16 when its converted weights are
present (``bash scripts/fetch_feature_weights.sh``), else the pixel term alone. ``mse_scale`` and
``perceptual_scale`` are the two terms' means over the clean validation images (1 until calibrated), so a score of
1 is a typical clean image and lambda weighs two terms of comparable size.

Conventions: a **higher score is more anomalous**; an image is predicted **defective iff score >= threshold**;
labels are **1 = defective** (the positive class) and **0 = good**.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from .data import decode_image, resize_square, to_tensor
from .feature_weights import feature_weights_path
from .losses import FeatureExtractor, make_feature_extractor
from .masks import IMAGE_SUFFIXES
from .model import PConvUNet

CONFIG_NAME = "anomaly.json"
MODES = ("autoencoder", "inpainting")
FEATURE_NETWORKS = ("vgg16", "alexnet", "none")
FEATURE_WEIGHTS = ("imagenet", "random")
DEFECT_KINDS = ("circle", "scratch", "stain")
DEFAULT_FEATURE_NETWORK = "vgg16"
DEFAULT_MSE_WEIGHT = 0.5

STD_FLOOR = 1 / 255
"""Smallest per-channel std used to standardise errors: one 8-bit level, so a flat channel cannot divide by 0."""

HEATMAP_QUANTILE = 0.99
"""``heatmap_max`` (the top of the overlay colour scale) is this quantile of clean validation heat-map pixels."""


# ---------------------------------------------------------------------------------------------------------
# Configuration (anomaly.json, next to the model's config.json)


@dataclasses.dataclass
class AnomalyConfig:
    """Everything besides the network weights that scoring needs; saved as ``anomaly.json``.

    Args:
        mode: ``"autoencoder"`` or ``"inpainting"``.
        resolution: images are resized (whole, aspect ratio not kept) to this square size.
        mse_weight: lambda, the weight of the pixel term; ``1 - mse_weight`` weighs the feature term.
        feature_network: ``"vgg16"``, ``"alexnet"`` or ``"none"`` (pixel term only; needs ``mse_weight`` 1).
        feature_weights: ``"imagenet"`` (the files ``bash scripts/fetch_feature_weights.sh`` converts; never
            downloaded) or ``"random"``. These defaults are explicit: ``resolve_features`` is what ``fit`` uses to
            choose them when the user does not.
        grid_cells: inpainting mode: cells per image side.
        grid_period: inpainting mode: the passes are ``grid_period ** 2`` interleaved sets of cells.
        blur_sigma: Gaussian blur (pixels at ``resolution``) of the difference before squaring; None means
            ``resolution / 64``; 0 switches it off.
        rotation_blend: also reconstruct the image rotated by 180 degrees and blend the two (``reconstruct``).
            The U-Net's stride-2 convolutions pad the bottom and right borders differently from the top and
            left, which leaves systematic errors in the bottom-right corner of every reconstruction.
        mean, std: per-channel statistics of the training images in [0, 1], computed once by ``fit``.
        mse_scale, perceptual_scale: the terms' means over clean validation images (see ``calibrate``).
        heatmap_max: heat-map value shown as full intensity in overlays (None: each image's own maximum).
        thresholds: chosen thresholds by name (``select_thresholds``), once chosen.
        training: free-form provenance (steps, split sizes, seed, ...).
    """

    mode: str = "inpainting"
    resolution: int = 256
    mse_weight: float = DEFAULT_MSE_WEIGHT
    feature_network: str = DEFAULT_FEATURE_NETWORK
    feature_weights: str = "imagenet"
    grid_cells: int = 8
    grid_period: int = 2
    blur_sigma: float | None = None
    rotation_blend: bool = True
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    mse_scale: float = 1.0
    perceptual_scale: float = 1.0
    heatmap_max: float | None = None
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.resolution, int) or self.resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {self.resolution!r}")
        if not 0.0 <= self.mse_weight <= 1.0:
            raise ValueError(f"mse_weight (lambda) must be in [0, 1], got {self.mse_weight}")
        if self.feature_network not in FEATURE_NETWORKS:
            raise ValueError(f"feature_network must be one of {FEATURE_NETWORKS}, got {self.feature_network!r}")
        if self.feature_weights not in FEATURE_WEIGHTS:
            raise ValueError(f"feature_weights must be one of {FEATURE_WEIGHTS}, got {self.feature_weights!r}")
        if self.feature_network == "none" and self.mse_weight != 1.0:
            raise ValueError(
                "feature_network 'none' leaves only the pixel term: set mse_weight (lambda) to 1, "
                f"got {self.mse_weight}"
            )
        _check_grid(self.resolution, self.resolution, self.grid_cells, self.grid_period)
        if self.blur_sigma is None:
            self.blur_sigma = self.resolution / 64
        if not (math.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise ValueError(f"blur_sigma must be a number >= 0 (pixels), got {self.blur_sigma}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std positive; got {self.mean} and {self.std}")
        for name in ("mse_scale", "perceptual_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.heatmap_max is not None and not (math.isfinite(self.heatmap_max) and self.heatmap_max > 0):
            raise ValueError(f"heatmap_max must be a positive number or None, got {self.heatmap_max}")

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``anomaly.json`` into ``directory`` (created if needed); returns its path."""
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> AnomalyConfig:
        """Read ``directory/anomaly.json``; ValueError naming the problem when it is missing or invalid."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"{str(directory)!r} has no {CONFIG_NAME}: train it with `pconv-anomaly fit` first")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path} has unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)


def resolve_features(
    network: str | None = None, weights: str | None = None, mse_weight: float | None = None
) -> tuple[str, str, float, str | None]:
    """The feature term ``fit`` stores: ``(feature_network, feature_weights, mse_weight, note)``.

    With none of the three set, ImageNet ``DEFAULT_FEATURE_NETWORK`` features at lambda ``DEFAULT_MSE_WEIGHT``
    when their converted file exists, else the pixel term alone (``"none"``, lambda 1) and a one-line ``note``
    saying so and how to get the features. Anything the user sets is kept and the rest filled in without looking
    at the disk: ``imagenet`` asked for (or implied by a network or a lambda below 1) still fails loudly, with
    the how-to, when the file is missing (``AnomalyDetector``). ``note`` is None unless the fallback happened.
    """
    if network is None and weights is None and mse_weight is None:
        path = feature_weights_path(DEFAULT_FEATURE_NETWORK)
        if path.is_file():
            return DEFAULT_FEATURE_NETWORK, "imagenet", DEFAULT_MSE_WEIGHT, None
        note = (
            f"no ImageNet {DEFAULT_FEATURE_NETWORK} features at {path}, so the score is the pixel term only "
            "(--feature_network none); `bash scripts/fetch_feature_weights.sh` converts them once"
        )
        return "none", "imagenet", 1.0, note
    network = DEFAULT_FEATURE_NETWORK if network is None else network
    weights = "imagenet" if weights is None else weights
    if mse_weight is None:
        mse_weight = 1.0 if network == "none" else DEFAULT_MSE_WEIGHT
    return network, weights, mse_weight, None


# ---------------------------------------------------------------------------------------------------------
# Images and the train / validation split


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursive), sorted; ValueError if it is not a folder or has none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{str(directory)!r} is not a folder")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(directory)!r}")
    return files


def load_image(path: str | os.PathLike, resolution: int) -> Tensor:
    """An image file as (3, resolution, resolution) float in [0, 1], resized whole as in training."""
    return to_tensor(resize_square(decode_image(path, min_side=1), resolution))


def split_files(
    files: Sequence[Path], validation_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Deterministic train / validation split: the same files and seed always give the same split.

    ``round(validation_fraction * len(files))`` files (at least 1) go to validation; both lists come back sorted.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    files = sorted(files)
    if len(files) < 2:
        raise ValueError(f"need at least 2 images to split into training and validation, got {len(files)}")
    num_validation = min(max(1, round(validation_fraction * len(files))), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    validation = sorted(files[i] for i in order[:num_validation])
    train = sorted(files[i] for i in order[num_validation:])
    return train, validation


def channel_statistics(images: Iterable[Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over all pixels of (3, H, W) images in [0, 1], in float64, one pass."""
    count = 0
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for image in images:
        pixels = image.to(torch.float64).flatten(1)
        total += pixels.sum(dim=1)
        total_sq += (pixels**2).sum(dim=1)
        count += pixels.shape[1]
    if count == 0:
        raise ValueError("channel_statistics needs at least one image")
    mean = total / count
    std = (total_sq / count - mean**2).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# ---------------------------------------------------------------------------------------------------------
# Grid masks for the inpainting mode


def _check_grid(height: int, width: int, cells: int, period: int) -> None:
    if not isinstance(period, int) or period < 2:
        raise ValueError(f"grid period must be an int >= 2 (2 = checkerboard), got {period!r}")
    if not isinstance(cells, int) or cells < period or cells > min(height, width):
        raise ValueError(
            f"grid cells must be an int from the period ({period}) to the image side ({min(height, width)}), "
            f"got {cells!r}"
        )


def grid_masks(height: int, width: int, cells: int = 8, period: int = 2) -> Tensor:
    """The inpainting passes: (period**2, 1, H, W) valid masks (1 = valid) over a ``cells`` x ``cells`` grid.

    Cell (row i, column j) is a hole in pass ``(i % period) * period + (j % period)``; every pixel is a hole in
    exactly one pass, and with ``period`` 2 each hole cell's eight neighbours are valid in its pass.
    """
    _check_grid(height, width, cells, period)
    cell_rows = torch.arange(height) * cells // height  # (H,) cell row of each pixel row
    cell_cols = torch.arange(width) * cells // width  # (W,)
    pass_of_pixel = (cell_rows % period)[:, None] * period + (cell_cols % period)[None, :]  # (H, W)
    holes = pass_of_pixel[None] == torch.arange(period**2)[:, None, None]  # (P, H, W)
    return (~holes).float()[:, None]  # (P, 1, H, W)


class GridMaskSource:
    """Training masks for the inpainting mode: one random pass of ``grid_masks`` (``--mask_source grid:CELLS``)."""

    def __init__(self, resolution: int, cells: int = 8, period: int = 2) -> None:
        self.masks = grid_masks(resolution, resolution, cells, period)[:, 0].numpy()

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return self.masks[rng.integers(len(self.masks))]


# ---------------------------------------------------------------------------------------------------------
# Synthetic defects


def _defect_colour(rng: np.random.Generator) -> np.ndarray:
    """Bright, dark or saturated, so the defect contrasts with most surfaces."""
    style = rng.integers(3)
    if style == 0:
        return rng.uniform(0.85, 1.0, 3)
    if style == 1:
        return rng.uniform(0.0, 0.15, 3)
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0)))


def _defect_alpha(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Coverage (H, W) in [0, 1] of one defect, anti-aliased."""
    side = min(height, width)
    canvas = np.zeros((height, width), np.uint8)
    if kind == "circle":
        radius = max(1, round(rng.uniform(0.05, 0.12) * side))
        center = (int(rng.integers(radius, width - radius + 1)), int(rng.integers(radius, height - radius + 1)))
        cv2.circle(canvas, center, radius, 255, thickness=-1, lineType=cv2.LINE_AA)
    elif kind == "scratch":
        thickness = max(1, round(rng.uniform(0.01, 0.03) * side))
        segments = int(rng.integers(1, 4))
        length = rng.uniform(0.3, 0.7) * side / segments
        point = rng.uniform(0.2, 0.8, 2) * (width, height)
        heading = rng.uniform(0, 2 * np.pi)
        points = [point]
        for _ in range(segments):
            heading += rng.uniform(-0.5, 0.5)
            point = point + length * np.array([np.cos(heading), np.sin(heading)])
            points.append(point)
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)
    elif kind == "stain":
        axes = (max(1, round(rng.uniform(0.06, 0.18) * side)), max(1, round(rng.uniform(0.06, 0.18) * side)))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(canvas, center, axes, rng.uniform(0, 180), 0, 360, 255, thickness=-1, lineType=cv2.LINE_AA)
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(0.5, 0.02 * side))
    else:
        raise ValueError(f"defect kind must be one of {DEFECT_KINDS}, got {kind!r}")
    opacity = rng.uniform(0.4, 0.7) if kind == "stain" else rng.uniform(0.8, 1.0)
    return canvas.astype(np.float32) / 255 * opacity


def paint_defect(image: Tensor, rng: np.random.Generator, kind: str = "circle") -> Tensor:
    """A copy of ``image`` (3, H, W) in [0, 1] with one synthetic defect blended in.

    Kinds: ``circle`` (a filled disc, radius 5-12 % of the short side), ``scratch`` (a thin polyline, 30-70 % of
    the side long), ``stain`` (a blurred translucent ellipse). The colour is bright, dark or saturated.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    alpha = torch.from_numpy(_defect_alpha(kind, image.shape[1], image.shape[2], rng)).to(image)[None]
    colour = torch.from_numpy(_defect_colour(rng)).to(image).view(3, 1, 1)
    return image * (1 - alpha) + colour * alpha


class DefectPainter:
    """``(image, rng) -> image`` with one defect of a random kind from ``kinds``; the training ``defect_source``."""

    def __init__(self, kinds: Sequence[str] = DEFECT_KINDS) -> None:
        kinds = tuple(kinds)
        if not kinds or any(kind not in DEFECT_KINDS for kind in kinds):
            raise ValueError(f"defect kinds must be a non-empty subset of {DEFECT_KINDS}, got {kinds}")
        self.kinds = kinds

    def __call__(self, image: Tensor, rng: np.random.Generator) -> Tensor:
        return paint_defect(image, rng, self.kinds[rng.integers(len(self.kinds))])


# ---------------------------------------------------------------------------------------------------------
# Reconstruction, heat maps and scores


@torch.no_grad()
def reconstruct(
    model: PConvUNet, images: Tensor, mode: str, cells: int = 8, period: int = 2, rotation_blend: bool = False
) -> Tensor:
    """The model's prediction of ``images`` (N, 3, H, W) in [0, 1], clamped to [0, 1].

    ``"autoencoder"``: one pass with an all-valid mask. ``"inpainting"``: ``period**2`` passes of
    ``grid_masks`` run as one batch; each pixel is taken from the pass in which it was a hole.
    ``rotation_blend``: also predict the image rotated by 180 degrees (and rotate back), then blend the two
    with a weight falling linearly from 1 for the upright prediction at the top-left corner to 0 at the
    bottom-right, where the rotated one takes over: each prediction's weak bottom-right corner gets little
    weight.
    """
    n, _, height, width = images.shape
    if rotation_blend:
        upright = reconstruct(model, images, mode, cells, period)
        rotated = reconstruct(model, images.flip(-2, -1), mode, cells, period).flip(-2, -1)
        rows = torch.linspace(0, 1, height, device=images.device).view(height, 1)
        cols = torch.linspace(0, 1, width, device=images.device).view(1, width)
        weight = 1 - (rows + cols) / 2  # (H, W): 1 at the top-left, 0 at the bottom-right
        return weight * upright + (1 - weight) * rotated
    if mode == "autoencoder":
        return model(images, torch.ones_like(images[:, :1])).float().clamp(0, 1)
    if mode != "inpainting":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    masks = grid_masks(height, width, cells, period).to(images)  # (P, 1, H, W)
    passes = masks.shape[0]
    repeated = images.repeat_interleave(passes, dim=0)  # (N*P, 3, H, W): image 0 in every pass, then image 1, ...
    tiled = masks.repeat(n, 1, 1, 1)  # (N*P, 1, H, W)
    outputs = model(repeated * tiled, tiled).float().view(n, passes, 3, height, width)
    holes = (1 - masks.float()).view(1, passes, 1, height, width)
    return (outputs * holes).sum(dim=1).clamp(0, 1)  # (N, 3, H, W)


def pixel_error_map(
    images: Tensor, reconstruction: Tensor, std: Sequence[float], blur_sigma: float = 0.0
) -> Tensor:
    """(N, 1, H, W): ``(blur((x - x_hat) / std))^2``, mean over channels.

    ``blur`` is a Gaussian of ``blur_sigma`` pixels (reflect padding); 0 gives the per-pixel squared error.
    """
    scale = torch.tensor(std, dtype=images.dtype, device=images.device).clamp(min=STD_FLOOR).view(1, 3, 1, 1)
    difference = (images - reconstruction) / scale
    if blur_sigma > 0:
        size = 2 * math.ceil(3 * blur_sigma) + 1
        difference = gaussian_blur(difference, [size, size], [blur_sigma, blur_sigma])
    return (difference**2).mean(dim=1, keepdim=True)


def feature_distance_map(feature_extractor: FeatureExtractor, images: Tensor, reconstruction: Tensor) -> Tensor:
    """(N, 1, H, W): squared distance of channel-unit-normalised features, upsampled and averaged over stages.

    Each stage contributes a value in [0, 4] per feature pixel (LPIPS without its learned channel weights).
    """
    n, _, height, width = images.shape
    stages = feature_extractor(torch.cat([images, reconstruction]))
    total = images.new_zeros(n, 1, height, width)
    for features in stages:
        features = F.normalize(features.float(), dim=1)
        distance = ((features[:n] - features[n:]) ** 2).sum(dim=1, keepdim=True)  # (N, 1, h, w)
        total += F.interpolate(distance, size=(height, width), mode="bilinear", align_corners=False)
    return total / len(stages)


@dataclasses.dataclass
class AnomalyMaps:
    """Per-image results for a batch of N images (all tensors on the CPU, float32).

    Attributes:
        score: (N,) the mean of ``heatmap``; higher = more anomalous.
        mse: (N,) mean of ``mse_map`` (before ``mse_scale``).
        perceptual: (N,) mean of ``feature_map`` (before ``perceptual_scale``; 0 without a feature network).
        heatmap: (N, 1, H, W) ``lambda * mse_map / mse_scale + (1 - lambda) * feature_map / perceptual_scale``.
        mse_map: (N, 1, H, W) ``pixel_error_map``.
        feature_map: (N, 1, H, W) ``feature_distance_map``, or None without a feature network.
        reconstruction: (N, 3, H, W) the model's prediction.
    """

    score: Tensor
    mse: Tensor
    perceptual: Tensor
    heatmap: Tensor
    mse_map: Tensor
    feature_map: Tensor | None
    reconstruction: Tensor


def combine_maps(mse_map: Tensor, feature_map: Tensor | None, config: AnomalyConfig) -> Tensor:
    """The heat map: ``lambda * mse_map / mse_scale + (1 - lambda) * feature_map / perceptual_scale``."""
    heatmap = config.mse_weight / config.mse_scale * mse_map
    if feature_map is not None:
        heatmap = heatmap + (1 - config.mse_weight) / config.perceptual_scale * feature_map
    return heatmap


class AnomalyDetector:
    """A trained ``PConvUNet``, its ``AnomalyConfig`` and the feature network: images in, scores and heat maps out.

    Raises:
        FileNotFoundError: the config asks for ImageNet features and their converted file is missing (the
            message names it and ``bash scripts/fetch_feature_weights.sh``).
    """

    def __init__(self, model: PConvUNet, config: AnomalyConfig, device: str | torch.device | None = None) -> None:
        expected_conv = "plain" if config.mode == "autoencoder" else "partial"
        if model.conv_type != expected_conv:
            raise ValueError(
                f"mode {config.mode!r} needs a PConvUNet with conv_type={expected_conv!r}, got {model.conv_type!r}"
            )
        if config.resolution % model.size_multiple:
            raise ValueError(
                f"resolution {config.resolution} must be a multiple of the model's 2**layer_size = "
                f"{model.size_multiple}"
            )
        self.device = torch.device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        self.config = config
        self.feature_extractor = None
        if config.feature_network != "none" and config.mse_weight < 1:
            try:
                extractor = make_feature_extractor(config.feature_network, config.feature_weights)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"{error}\nThis anomaly config scores with ImageNet {config.feature_network} features; without "
                    f"them, fit with --feature_network none (pixel term only) or --feature_weights random instead."
                ) from None
            self.feature_extractor = extractor.to(self.device)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device | None = None) -> AnomalyDetector:
        """Load ``config.json`` + ``model.safetensors`` + ``anomaly.json`` from a ``fit`` output folder."""
        config = AnomalyConfig.load(directory)
        model = PConvUNet.from_pretrained(directory, map_location=device or "cpu")
        return cls(model, config, device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> AnomalyMaps:
        """Score a batch (N, 3, R, R) in [0, 1], R = ``config.resolution``."""
        config = self.config
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (config.resolution,) * 2:
            raise ValueError(
                f"expected images of shape (N, 3, {config.resolution}, {config.resolution}), got {tuple(images.shape)}"
            )
        images = images.to(self.device, torch.float32)
        reconstruction = reconstruct(
            self.model, images, config.mode, config.grid_cells, config.grid_period, config.rotation_blend
        )
        mse_map = pixel_error_map(images, reconstruction, config.std, config.blur_sigma)
        feature_map = None
        if self.feature_extractor is not None:
            feature_map = feature_distance_map(self.feature_extractor, images, reconstruction).cpu()
        mse_map = mse_map.cpu()
        heatmap = combine_maps(mse_map, feature_map, config)
        return AnomalyMaps(
            score=heatmap.mean(dim=(1, 2, 3)),
            mse=mse_map.mean(dim=(1, 2, 3)),
            perceptual=torch.zeros(len(images)) if feature_map is None else feature_map.mean(dim=(1, 2, 3)),
            heatmap=heatmap,
            mse_map=mse_map,
            feature_map=feature_map,
            reconstruction=reconstruction.cpu(),
        )

    def score_files(
        self, paths: Sequence[str | os.PathLike], batch_size: int = 16
    ) -> Iterator[tuple[list[Path], AnomalyMaps, Tensor]]:
        """Yield ``(paths, maps, images)`` batch by batch for image files (resized to the config's resolution).

        Raises:
            ValueError: a file cannot be read as an image (the message names it).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(paths), batch_size):
            chunk = [Path(p) for p in paths[start : start + batch_size]]
            images = []
            for path in chunk:
                try:
                    images.append(load_image(path, self.config.resolution))
                except ValueError as error:
                    raise ValueError(f"cannot read {str(path)!r} as an image: {error}") from error
            batch = torch.stack(images)
            yield chunk, self(batch), batch


def calibrate(detector: AnomalyDetector, clean_images: Tensor, batch_size: int = 16) -> dict[str, float | None]:
    """Set ``mse_scale``, ``perceptual_scale`` and ``heatmap_max`` of ``detector.config`` from clean validation
    images (N, 3, R, R), and return them.

    The scales are the two terms' means over the images, so afterwards a typical clean image scores about 1;
    ``heatmap_max`` is the ``HEATMAP_QUANTILE`` of the calibrated heat-map pixels of these images.
    """
    if clean_images.shape[0] == 0:
        raise ValueError("calibrate needs at least one clean image")
    config = detector.config
    config.mse_scale = config.perceptual_scale = 1.0
    batches = [detector(clean_images[i : i + batch_size]) for i in range(0, clean_images.shape[0], batch_size)]
    mse = torch.cat([b.mse for b in batches]).mean().item()
    perceptual = torch.cat([b.perceptual for b in batches]).mean().item()
    # A perfect reconstruction (mean 0) keeps scale 1 rather than dividing by zero.
    config.mse_scale = mse if mse > 0 else 1.0
    config.perceptual_scale = perceptual if perceptual > 0 else 1.0
    heatmaps = torch.cat([combine_maps(b.mse_map, b.feature_map, config) for b in batches])
    top = float(np.quantile(heatmaps.numpy(), HEATMAP_QUANTILE))
    config.heatmap_max = top if top > 0 else None
    return {name: getattr(config, name) for name in ("mse_scale", "perceptual_scale", "heatmap_max")}


# ---------------------------------------------------------------------------------------------------------
# Heat-map images


def heatmap_overlay(image: Tensor, heatmap: Tensor, vmax: float | None = None, opacity: float = 0.5) -> Image.Image:
    """The image (3, H, W) with its heat map (1, H, W) blended on top in the JET colour map (red = anomalous).

    ``vmax`` is the heat-map value shown as full red (the config's ``heatmap_max``); None uses the map's own
    maximum, which makes every image look equally alarming.
    """
    values = heatmap[0].float().cpu().numpy()
    top = float(vmax) if vmax else float(values.max())
    scaled = np.clip(values / top, 0, 1) if top > 0 else np.zeros_like(values)
    colours = cv2.applyColorMap((scaled * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    pixels = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
    blended = (1 - opacity) * pixels + opacity * colours
    return Image.fromarray((blended + 0.5).clip(0, 255).astype(np.uint8))


def heatmap_panel(image: Tensor, reconstruction: Tensor, heatmap: Tensor, vmax: float | None = None) -> Image.Image:
    """Three panels side by side: input | reconstruction | heat-map overlay."""
    from .training import image_grid

    overlay = to_tensor(heatmap_overlay(image, heatmap, vmax))
    return image_grid([[image, reconstruction, overlay]])


# ---------------------------------------------------------------------------------------------------------
# Thresholds and metrics (pure functions on score lists)


@dataclasses.dataclass(frozen=True)
class Confusion:
    """Counts at one threshold; positive = defective, predicted defective iff score >= threshold."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def tpr(self) -> float:
        """Share of defective images flagged (recall, sensitivity); NaN without defective images."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def tnr(self) -> float:
        """Share of good images passed (specificity); NaN without good images."""
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan

    @property
    def precision(self) -> float:
        """Share of flagged images that are defective; NaN when nothing is flagged."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); 0 when there is no true positive."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0


def _check_scores_labels(
    scores: Sequence[float], labels: Sequence[int], both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D and of equal length, got {scores.shape} and {labels.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite numbers")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    labels = labels.astype(bool)
    if both_classes and (labels.all() or not labels.any()):
        raise ValueError(
            f"need both good (0) and defective (1) images, got {int(labels.sum())} defective of {labels.size}"
        )
    return scores, labels


def confusion(scores: Sequence[float], labels: Sequence[int], threshold: float) -> Confusion:
    """TP / FP / TN / FN of the rule "defective iff score >= threshold"."""
    scores, labels = _check_scores_labels(scores, labels, both_classes=False)
    flagged = scores >= threshold
    return Confusion(
        tp=int(np.sum(flagged & labels)),
        fp=int(np.sum(flagged & ~labels)),
        tn=int(np.sum(~flagged & ~labels)),
        fn=int(np.sum(~flagged & labels)),
    )


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: the probability that a random defective image outscores a random good one
    (ties count one half), computed with the Mann-Whitney rank formula."""
    scores, labels = _check_scores_labels(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share the mean of their ranks.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        if count > 1:
            ranks[order[start : start + count]] = start + (count + 1) / 2
    positives, negatives = int(labels.sum()), int((~labels).sum())
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def threshold_names(target_rate: float = 0.95) -> tuple[str, str, str, str]:
    """The names ``select_thresholds`` returns, e.g. ("best_f1", "tpr>=0.95", "tnr>=0.95", "midpoint")."""
    return "best_f1", f"tpr>={target_rate:g}", f"tnr>={target_rate:g}", "midpoint"


def select_thresholds(scores: Sequence[float], labels: Sequence[int], target_rate: float = 0.95) -> dict[str, float]:
    """Thresholds chosen on a labelled (validation) set; "defective iff score >= threshold".

    Candidates are the distinct scores plus the next float above the largest (which flags nothing).

    - ``best_f1``: the highest F1; among equal F1 the highest threshold (fewest false alarms).
    - ``tpr>=R``: the highest threshold that still flags a share >= R of the defective images (the most good
      images pass while the defect recall target holds).
    - ``tnr>=R``: the lowest threshold that passes a share >= R of the good images (the most defects are caught
      while the false-alarm budget holds).
    - ``midpoint``: the mean of the two above, a compromise between both targets.
    """
    if not 0.0 < target_rate <= 1.0:
        raise ValueError(f"target_rate must be in (0, 1], got {target_rate}")
    scores, labels = _check_scores_labels(scores, labels)
    candidates = np.unique(scores)
    candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf))  # ascending
    positives, negatives = np.sort(scores[labels]), np.sort(scores[~labels])
    tp = len(positives) - np.searchsorted(positives, candidates, side="left")  # scores >= t
    fp = len(negatives) - np.searchsorted(negatives, candidates, side="left")
    fn, tn = len(positives) - tp, len(negatives) - fp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    tpr, tnr = tp / len(positives), tn / len(negatives)
    best_f1 = candidates[np.flatnonzero(np.isclose(f1, f1.max(), rtol=1e-12, atol=0))[-1]]
    # TPR falls and TNR rises with the threshold; the first candidate has TPR 1, the last TNR 1.
    at_tpr = candidates[np.flatnonzero(tpr >= target_rate)[-1]]
    at_tnr = candidates[np.flatnonzero(tnr >= target_rate)[0]]
    names = threshold_names(target_rate)
    return {
        names[0]: float(best_f1),
        names[1]: float(at_tpr),
        names[2]: float(at_tnr),
        names[3]: float((at_tpr + at_tnr) / 2),
    }


def threshold_report(
    thresholds: dict[str, float], scores: Sequence[float], labels: Sequence[int], split: str = "test"
) -> list[dict[str, Any]]:
    """One row per threshold: name, threshold, split, TP, FP, TN, FN, TPR, TNR, precision, F1, ROC-AUC of the set."""
    auc = roc_auc(scores, labels)
    rows = []
    for name, threshold in thresholds.items():
        counts = confusion(scores, labels, threshold)
        rows.append({
            "name": name, "threshold": threshold, "split": split,
            "TP": counts.tp, "FP": counts.fp, "TN": counts.tn, "FN": counts.fn,
            "TPR": counts.tpr, "TNR": counts.tnr, "precision": counts.precision, "F1": counts.f1, "ROC_AUC": auc,
        })  # fmt: skip
    return rows


def format_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of ``threshold_report`` as a markdown table (rates with 3 decimals, thresholds with 6 digits)."""
    if not rows:
        raise ValueError("no rows to format")
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if column == "threshold":
                cells.append(f"{value:.6g}")
            elif isinstance(value, float):
                cells.append("–" if math.isnan(value) else f"{value:.3f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
