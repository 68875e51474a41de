"""Boundary artifacts: how much worse a fill is right at the hole boundary than just inside it.

A good fill is best where it has the most known neighbours. Two measures, both "lower is better, about 1 or
less is fine":

- ``corner_ratio``: mean error of boundary hole pixels with 5 of their 8 neighbours valid, divided by that of
  pixels with 4. Pixels with 5 valid neighbours stick out into the known area (the steps of the staircase a
  slanted stroke makes, alternating along it); a network that mis-fills them draws a dotted line along the
  boundary. OpenCV Telea scores about 0.88 on straight strokes.
- ``ring_ratio``: mean error in the ring of hole pixels within ``width`` px of the boundary, divided by that of
  the next ring inward. A visible seam (a line along the boundary) pushes it up; classical diffusion-type
  fills score about 0.6.

``stroke_masks`` draws the straight strokes of the corner test. All masks here are valid masks (1 = known).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

# What evaluate() and corner_ratio() run: (image, valid_mask) -> output, all (N,C,H,W); the one definition.
ModelFn = Callable[[Tensor, Tensor], Tensor]

STROKE_ANGLES = tuple(range(5, 180, 9))  # 20 angles, none axis-aligned
STROKE_WIDTHS = (16, 25, 32)


def valid_neighbour_count(valid_mask: Tensor) -> Tensor:
    """(N,1,H,W) {0,1} valid mask -> (N,1,H,W) number of valid pixels among the 8 neighbours (outside = valid)."""
    kernel = torch.ones(1, 1, 3, 3, dtype=valid_mask.dtype, device=valid_mask.device)
    kernel[0, 0, 1, 1] = 0
    padded = F.pad(valid_mask, (1, 1, 1, 1), value=1.0)
    return F.conv2d(padded, kernel).round()


def _pixel_error(output: Tensor, target: Tensor) -> Tensor:
    return (output.float() - target.float()).abs().mean(dim=1, keepdim=True)  # (N,1,H,W)


def error_by_valid_neighbours(output: Tensor, target: Tensor, valid_mask: Tensor) -> dict[int, tuple[float, int]]:
    """Sum of absolute error and pixel count of hole pixels by their number of valid neighbours (0..8).

    Returns ``{k: (error_sum, count)}``; sums (not means) so that callers can pool over batches.
    """
    _check(output, target, valid_mask)
    hole = valid_mask[:, :1] < 0.5
    counts = valid_neighbour_count((~hole).float())
    error = _pixel_error(output, target)
    result = {}
    for k in range(9):
        selected = hole & (counts == k)
        result[k] = (float(error[selected].sum()), int(selected.sum()))
    return result


def boundary_rings(valid_mask: Tensor, width: int = 2) -> tuple[Tensor, Tensor]:
    """Two (N,1,H,W) bool masks: hole pixels within ``width`` px (chessboard distance) of a valid pixel, and
    hole pixels ``width`` to ``2 * width`` px from one."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    valid = (valid_mask[:, :1] >= 0.5).float()
    near = F.max_pool2d(valid, 2 * width + 1, stride=1, padding=width) > 0.5
    far = F.max_pool2d(valid, 4 * width + 1, stride=1, padding=2 * width) > 0.5
    hole = valid < 0.5
    return hole & near, hole & far & ~near


def ring_error_sums(
    output: Tensor, target: Tensor, valid_mask: Tensor, width: int = 2
) -> tuple[float, int, float, int]:
    """(error sum, pixel count) of the inner boundary ring and of the next ring inward, for pooling."""
    _check(output, target, valid_mask)
    inner, outer = boundary_rings(valid_mask, width)
    error = _pixel_error(output, target)
    return float(error[inner].sum()), int(inner.sum()), float(error[outer].sum()), int(outer.sum())


def ring_ratio(output: Tensor, target: Tensor, valid_mask: Tensor, width: int = 2) -> float:
    """Mean error in the ``width``-px ring just inside the hole boundary / mean error in the next ring inward.

    1 for a perfect fill; NaN when either ring is empty.
    """
    inner_sum, inner_count, outer_sum, outer_count = ring_error_sums(output, target, valid_mask, width)
    return ratio_of_means(inner_sum, inner_count, outer_sum, outer_count)


def corner_ratio_from_sums(sums: dict[int, tuple[float, int]]) -> float:
    """Mean error at 5 valid neighbours / mean error at 4, from ``error_by_valid_neighbours`` sums."""
    return ratio_of_means(*sums[5], *sums[4])


def stroke_masks(size: int, angles: Sequence[float] = STROKE_ANGLES, widths: Sequence[int] = STROKE_WIDTHS) -> Tensor:
    """(len(angles) * len(widths), 1, size, size) valid masks, each with one straight stroke through the centre.

    Strokes are drawn without anti-aliasing (PIL), so slanted sides are pixel staircases with single pixels
    sticking out, like a thresholded brush stroke in the app.
    """
    masks = []
    centre, half = size / 2, 0.4 * size
    for width in widths:
        for angle in angles:
            canvas = Image.new("L", (size, size), 0)
            dx, dy = half * math.cos(math.radians(angle)), half * math.sin(math.radians(angle))
            ImageDraw.Draw(canvas).line([(centre - dx, centre - dy), (centre + dx, centre + dy)], fill=255, width=width)
            masks.append(torch.from_numpy((np.asarray(canvas) == 0).astype(np.float32))[None])
    return torch.stack(masks)


@torch.no_grad()
def corner_ratio(model_fn: ModelFn, images: Tensor, *, masks: Tensor | None = None, batch_size: int = 8) -> dict:
    """Corner test: fill ``stroke_masks`` holes in every image; error at 5 vs 4 valid neighbours.

    Args:
        model_fn: ``model_fn(image * valid, valid)`` -> (N,3,H,W), like ``metrics.evaluate``'s.
        images: (N,3,S,S) in [0,1].
        masks: valid masks (M,1,S,S); default ``stroke_masks(S)``.

    Returns:
        ``{"ratio": err5 / err4, "by_neighbours": {k: mean error}, "ring": ring_ratio}`` pooled over every
        (image, stroke) pair.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must have shape (N,3,S,S), got {tuple(images.shape)}")
    masks = stroke_masks(images.shape[-1]) if masks is None else masks
    totals = {k: [0.0, 0] for k in range(9)}
    ring = [0.0, 0, 0.0, 0]
    pairs = [(i, j) for i in range(len(images)) for j in range(len(masks))]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        image = torch.stack([images[i] for i, _ in chunk]).float()
        valid = torch.stack([masks[j] for _, j in chunk]).float()
        output = model_fn(image * valid, valid).float()
        for k, (total, count) in error_by_valid_neighbours(output, image, valid).items():
            totals[k][0] += total
            totals[k][1] += count
        for index, value in enumerate(ring_error_sums(output, image, valid)):
            ring[index] += value
    means = {k: (total / count if count else float("nan")) for k, (total, count) in totals.items()}
    return {
        "ratio": corner_ratio_from_sums({k: tuple(v) for k, v in totals.items()}),
        "by_neighbours": means,
        "ring": ratio_of_means(*ring),
    }


def ratio_of_means(numerator_sum: float, numerator_count: int, denominator_sum: float, denominator_count: int) -> float:
    """Ratio of two means; a perfect fill (both errors 0) has no seam: 1. NaN when a group is empty."""
    if not numerator_count or not denominator_count:
        return float("nan")
    if denominator_sum == 0:
        return 1.0 if numerator_sum == 0 else float("inf")
    return (numerator_sum / numerator_count) / (denominator_sum / denominator_count)


def _check(output: Tensor, target: Tensor, valid_mask: Tensor) -> None:
    if output.ndim != 4 or output.shape != target.shape:
        raise ValueError(
            f"expected output and target of the same shape (N,C,H,W), got {tuple(output.shape)} and "
            f"{tuple(target.shape)}"
        )
    if valid_mask.ndim != 4 or valid_mask.shape[0] != output.shape[0] or valid_mask.shape[2:] != output.shape[2:]:
        raise ValueError(
            f"valid_mask must have shape (N,1,H,W) matching output {tuple(output.shape)}, got {tuple(valid_mask.shape)}"
        )
