"""``anomaly.json``: the scoring settings stored beside a trained model, and the default feature term."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from ..feature_weights import feature_weights_path
from ..jsonfile import read_json_object
from ..masks import check_grid_layout

CONFIG_NAME = "anomaly.json"
MODES = ("autoencoder", "inpainting")
FEATURE_NETWORKS = ("vgg16", "alexnet", "none")
FEATURE_WEIGHTS = ("imagenet", "random")
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
        check_grid_layout(self.resolution, self.resolution, self.grid_cells, self.grid_period)
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
        """Read ``directory/anomaly.json``; ValueError naming the file and the key when it is missing or invalid."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"{str(directory)!r} has no {CONFIG_NAME}: train it with `pconv-anomaly fit` first")
        values = read_json_object(path, str(path), 'settings like {"mode": "inpainting"}')
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path} has unknown keys {unknown}; expected a subset of {sorted(known)}")
        for key, value in values.items():
            expected = _JSON_TYPES[key]
            if not _is_json_type(value, expected):
                raise ValueError(f"{path}: {key} must be {expected}, got {json.dumps(value)[:40]}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


_JSON_TYPES = {
    "mode": "a string",
    "resolution": "an integer",
    "mse_weight": "a number",
    "feature_network": "a string",
    "feature_weights": "a string",
    "grid_cells": "an integer",
    "grid_period": "an integer",
    "blur_sigma": "a number or null",
    "rotation_blend": "true or false",
    "mean": "a list of 3 numbers",
    "std": "a list of 3 numbers",
    "mse_scale": "a number",
    "perceptual_scale": "a number",
    "heatmap_max": "a number or null",
    "thresholds": "an object of numbers",
    "training": "an object",
}
"""What each key of ``anomaly.json`` holds, as messages say it: checked before the values reach the constructor,
whose comparisons would otherwise fail with a TypeError that names neither the file nor the key."""


def _is_json_type(value: Any, expected: str) -> bool:
    def number(item: Any) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool)

    if expected == "a string":
        return isinstance(value, str)
    if expected == "an integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "a number":
        return number(value)
    if expected == "a number or null":
        return value is None or number(value)
    if expected == "true or false":
        return isinstance(value, bool)
    if expected == "a list of 3 numbers":
        return isinstance(value, list) and len(value) == 3 and all(map(number, value))
    if expected == "an object of numbers":
        return isinstance(value, dict) and all(map(number, value.values()))
    return isinstance(value, dict)


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
