"""Scoring: reconstruct images with a trained PConvUNet, compare with the input, heat maps and scores."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from ..images import IMAGE_SUFFIXES, decode_image, list_images, resize_square, to_tensor
from ..losses import FeatureExtractor, make_feature_extractor
from ..masks import grid_masks
from ..model import PConvUNet
from .config import HEATMAP_QUANTILE, MODES, STD_FLOOR, AnomalyConfig

# ---------------------------------------------------------------------------------------------------------
# Images and the train / validation split


def find_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursive), sorted; ValueError if it is not a folder or has none.

    Unlike :func:`pconv_hf.images.list_images` (one folder, possibly empty), a dataset to fit or score: the whole
    tree, and at least one image."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{str(directory)!r} is not a folder")
    files = list_images(directory, recursive=True)
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
    masks = torch.from_numpy(grid_masks(height, width, cells, period)).to(images)  # (P, 1, H, W)
    passes = masks.shape[0]
    repeated = images.repeat_interleave(passes, dim=0)  # (N*P, 3, H, W): image 0 in every pass, then image 1, ...
    tiled = masks.repeat(n, 1, 1, 1)  # (N*P, 1, H, W)
    outputs = model(repeated * tiled, tiled).float().view(n, passes, 3, height, width)
    holes = (1 - masks.float()).view(1, passes, 1, height, width)
    return (outputs * holes).sum(dim=1).clamp(0, 1)  # (N, 3, H, W)


def pixel_error_map(images: Tensor, reconstruction: Tensor, std: Sequence[float], blur_sigma: float = 0.0) -> Tensor:
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
        self, paths: Sequence[str | os.PathLike], batch_size: int = 16, *, failures: dict[Path, str] | None = None
    ) -> Iterator[tuple[list[Path], AnomalyMaps, Tensor]]:
        """Yield ``(paths, maps, images)`` batch by batch for image files (resized to the config's resolution).

        Args:
            failures: when given, a file that cannot be read is recorded here (path -> reason) and left out of
                its batch (whose ``paths`` are the files read), so one bad file does not stop the others.

        Raises:
            ValueError: a file cannot be read as an image (the message names it), when ``failures`` is None.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(paths), batch_size):
            chunk, images = [], []
            for path in map(Path, paths[start : start + batch_size]):
                try:
                    images.append(load_image(path, self.config.resolution))
                    chunk.append(path)
                except ValueError as error:
                    if failures is None:
                        raise ValueError(f"cannot read {str(path)!r} as an image: {error}") from error
                    failures[path] = str(error)
            if images:
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
