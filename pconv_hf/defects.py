"""Synthetic defects (circles, scratches, stains) painted onto clean images: a training-data augmentation
(``train_accelerate.py --synthetic_defects``) and the anomaly detector's calibration defects (``pconv_hf.anomaly``
re-exports them)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

DEFECT_KINDS = ("circle", "scratch", "stain")


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
