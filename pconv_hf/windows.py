"""Where ``inpaint()`` runs the network: windows around the holes and the scale each one is filled at.

Two planners, one per strategy:

- ``plan_native_windows`` ("native", the default): each group of nearby holes gets a window of its bounding box
  plus context, filled at the photo's own pixel scale when the hole is thin enough for the network's reach and
  the window fits the pixel budget; otherwise downscaled just enough for both. A hole's width is twice its
  largest inscribed radius (the distance transform's maximum), so a long thin stroke stays at native scale
  however long it is, while a wide blob is filled where it is ``reach`` pixels wide. A photo no bigger than
  the training crops (no side over ``min_side``, the model's ``sample_size``) is one window at its own scale
  whatever its holes' width: the network was trained to fill such crops with holes covering up to 60 % of them,
  and on 256-px photos the reach rule lost to filling them whole (issue 31).
- ``plan_windows`` ("crop"): square windows at least ``context`` x the hole region's longer side, all downscaled
  to one working resolution (the behaviour before the native strategy; kept for comparison and for callers
  that depend on it).

``refine_boxes`` says where the native strategy's coarse-to-fine pass runs: boxes around the band along a
downscaled window's hole edge, not the whole window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # top, left, height, width
STRATEGIES = ("native", "crop", "resize", "full")
"""``inpaint()``'s strategies; the first is the default."""

MAX_WINDOWS = 256
DEFAULT_REACH = 64
"""Widest hole (working pixels) filled without downscaling further; chosen by ``benchmarks/bench_native.py``."""
DEFAULT_MAX_PIXELS = 1_500_000
"""Working pixels per window: 1.5 MP takes ~1 s in bf16 on 2 CPU cores with the bundled model."""
DEFAULT_MARGIN = 64
"""Context around a hole group's bounding box, in working pixels."""
MIN_WINDOW_SIDE = 256
"""Shortest window side in working pixels (the training crop size): small holes still see a scene."""
REFINE_BAND = 0.5
"""Width of the band the coarse-to-fine pass refills along a hole's edge, as a fraction of ``reach``."""


@dataclass(frozen=True)
class Window:
    """One network run: ``box`` of the photo, filled at ``scale`` (1 = the photo's own pixels)."""

    box: Box
    scale: float
    hole_width: float  # widest hole inside, in photo pixels


# --- native-scale windows ----------------------------------------------------------------------------------


def hole_regions(hole_mask: np.ndarray, gap: int = 16) -> list[tuple[tuple[int, int, int, int], float]]:
    """Groups of holes closer than ``gap`` pixels: ``((top, left, bottom, right), width)`` each, where the box
    bounds the group's hole pixels and width is twice the largest distance from one of them to a known pixel."""
    hole_u8 = np.ascontiguousarray(hole_mask).view(np.uint8)
    distance = cv2.distanceTransform(hole_u8, cv2.DIST_L2, 5)
    grouped = cv2.dilate(hole_u8, np.ones((gap, gap), np.uint8)) if gap > 1 else hole_u8
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    if count - 1 > MAX_WINDOWS:  # a speckled mask: one group
        labels, count = grouped.astype(np.int32), 2
        stats = np.array([[0, 0, 0, 0, 0], [0, 0, hole_mask.shape[1], hole_mask.shape[0], 0]])
    widths = np.zeros(count, np.float32)
    np.maximum.at(widths, labels[hole_mask], distance[hole_mask])
    regions = []
    for label in range(1, count):
        left, top, w, h = (int(v) for v in stats[label, :4])
        sub = hole_mask[top : top + h, left : left + w] & (labels[top : top + h, left : left + w] == label)
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        if rows.size:
            box = (top + int(rows[0]), left + int(cols[0]), top + int(rows[-1]) + 1, left + int(cols[-1]) + 1)
            regions.append((box, 2.0 * float(widths[label])))
    return regions


def plan_native_windows(
    hole_mask: np.ndarray,
    *,
    reach: float = DEFAULT_REACH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    margin: int = DEFAULT_MARGIN,
    min_side: int = MIN_WINDOW_SIDE,
) -> list[Window]:
    """Non-overlapping windows that together cover every hole pixel, each with its working scale.

    A photo that fits in ``min_side`` x ``min_side`` (the training size) is one window at scale 1. Otherwise a
    window's scale is ``min(1, reach / hole width)``, lowered further until the window (its hole group's
    bounding box plus ``margin`` working pixels, at least ``min_side`` working pixels a side) holds at most
    ``max_pixels`` working pixels. Windows that overlap are merged; if they would cover as much as the whole
    photo, the photo is one window.
    """
    height, width = hole_mask.shape
    regions = hole_regions(hole_mask)
    if regions and _fits_training_size(height, width, min_side):
        return [Window((0, 0, height, width), 1.0, max((w for _, w in regions), default=0.0))]

    def window(region: tuple[tuple[int, int, int, int], float]) -> Window:
        (top, left, bottom, right), hole_width = region
        scale = min(1.0, reach / hole_width) if hole_width > 0 else 1.0
        for _ in range(8):
            box = _padded_box(top, left, bottom, right, margin / scale, min_side / scale, height, width)
            excess = box[2] * box[3] * scale * scale / max_pixels
            if excess <= 1.0:
                break
            scale /= math.sqrt(excess) * 1.01
        return Window(box, scale, hole_width)

    windows = _merge_overlapping(
        regions, window, lambda w: w.box, lambda a, b: (_union_bounds(a[0], b[0]), max(a[1], b[1]))
    )
    if sum(w.box[2] * w.box[3] for w in windows) >= height * width:
        return [_whole_photo(height, width, max((w.hole_width for w in windows), default=0.0), reach, max_pixels)]
    return windows


def refine_boxes(
    band: np.ndarray, scale: float, *, margin: int = DEFAULT_MARGIN, min_side: int = MIN_WINDOW_SIDE
) -> list[tuple[Box, np.ndarray]]:
    """Where the coarse-to-fine pass runs the network at ``scale`` to refill ``band`` (bool (H, W), the hole
    pixels along a downscaled window's hole edge): boxes of ``band``'s array, each with the band pixels it
    refills (bool, the box's shape); every band pixel is refilled by exactly one box.

    A box is the bounding box of its band pixels plus ``margin`` working pixels (at least ``min_side`` a side),
    as a window is around its holes. The band of a long stroke or a wide blob is a thin line, and the one box
    around all of it is mostly far context: a box is split in two across its longer side while the two halves'
    boxes hold less than 90 % of its pixels. A 12-MP photo's 3 % stroke: 0.79 of the 1.5 working megapixels
    of the one box; a 10 % blob: 0.34 of 1.5.
    """
    height, width = band.shape
    pad, side = margin / scale, min_side / scale

    def box_of(rows: np.ndarray, cols: np.ndarray) -> Box:
        return _padded_box(
            int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1, pad, side, height, width
        )

    def split(rows: np.ndarray, cols: np.ndarray, depth: int) -> list[tuple[Box, np.ndarray, np.ndarray]]:
        box = box_of(rows, cols)
        if depth == _MAX_SPLIT_DEPTH:
            return [(box, rows, cols)]
        along = rows if rows.max() - rows.min() >= cols.max() - cols.min() else cols
        first = along <= (int(along.min()) + int(along.max())) // 2
        if first.all():  # one row or column: nothing to split
            return [(box, rows, cols)]
        halves = split(rows[first], cols[first], depth + 1) + split(rows[~first], cols[~first], depth + 1)
        if sum(h * w for (_, _, h, w), _, _ in halves) < _SPLIT_GAIN * box[2] * box[3]:
            return halves
        return [(box, rows, cols)]

    rows, cols = np.nonzero(band)
    if rows.size == 0:
        return []
    boxes = []
    for (top, left, box_height, box_width), own_rows, own_cols in split(rows, cols, 0):
        owned = np.zeros((box_height, box_width), bool)
        owned[own_rows - top, own_cols - left] = True
        boxes.append(((top, left, box_height, box_width), owned))
    return boxes


_MAX_SPLIT_DEPTH = 8
"""At most 2**8 boxes per refined window."""
_SPLIT_GAIN = 0.9
"""A box is split when its halves' boxes hold less than this fraction of its pixels."""


def _fits_training_size(height: int, width: int, min_side: float) -> bool:
    """Whether a photo of ``height`` x ``width`` is no bigger than the training crops (``min_side`` a side), so
    that the network fills it whole at its own scale, as it was trained to, whatever the holes' width.

    Measured (issue 31): on the 256-px held-out table the reach rule lost up to 0.2 dB to this; on photos of
    384-512 px, raising a window only as far as ``min_side`` / its longer side lost 0.1-0.2 dB to the reach
    rule with its coarse-to-fine pass, so larger photos keep the reach rule."""
    return max(height, width) <= min_side


def _padded_box(
    top: int, left: int, bottom: int, right: int, pad: float, min_side: float, height: int, width: int
) -> Box:
    """The box (top, left, bottom, right) grown by ``pad`` on every side, at least ``min_side`` a side, clipped."""
    pad = math.ceil(pad)
    win_h = min(height, max(bottom - top + 2 * pad, math.ceil(min_side)))
    win_w = min(width, max(right - left + 2 * pad, math.ceil(min_side)))
    win_top = min(max((top + bottom - win_h) // 2, 0), height - win_h)
    win_left = min(max((left + right - win_w) // 2, 0), width - win_w)
    return win_top, win_left, win_h, win_w


def _merge_overlapping(regions: list, window: Callable, box_of: Callable, union: Callable) -> list:
    """``window(region)`` of every region, where two regions whose windows overlap become one (``union``), until
    no windows overlap. Regions and windows keep their order; ``box_of(window)`` is its (top, left, h, w)."""
    regions = list(regions)
    windows = [window(region) for region in regions]
    merged = True
    while merged:
        merged = False
        for i in range(len(windows)):
            j = next((j for j in range(i + 1, len(windows)) if _overlap(box_of(windows[i]), box_of(windows[j]))), None)
            if j is not None:
                regions[i] = union(regions[i], regions[j])
                del regions[j], windows[j]
                windows[i] = window(regions[i])
                merged = True
                break
    return windows


def _union_bounds(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _whole_photo(height: int, width: int, hole_width: float, reach: float, max_pixels: int) -> Window:
    scale = min(1.0, reach / hole_width if hole_width > 0 else 1.0, math.sqrt(max_pixels / (height * width)))
    return Window((0, 0, height, width), scale, hole_width)


# --- square windows at one working resolution ("crop") -------------------------------------------------------


def plan_windows(hole_mask: np.ndarray, resolution: int, context: float = 2.0) -> list[Box]:
    """Non-overlapping windows that together cover every hole pixel, each with context around its holes.

    Holes closer than an eighth of the working resolution are grouped first, then windows that overlap
    are merged until none do. If the windows would cover as much as the whole photo, the photo is one window.
    """
    height, width = hole_mask.shape
    gap = max(1, resolution // 8)
    grouped = cv2.dilate(hole_mask.view(np.uint8), np.ones((gap, gap), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    if count - 1 > MAX_WINDOWS:
        return [(0, 0, height, width)]
    # Regions as (top, left, bottom, right) of the holes themselves (undo the grouping dilation).
    regions = []
    for left, top, w, h, _ in stats[1:]:
        sub = hole_mask[top : top + h, left : left + w]
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        if rows.size:
            top, left = int(top + rows[0]), int(left + cols[0])
            regions.append((top, left, top + int(rows[-1] - rows[0]) + 1, left + int(cols[-1] - cols[0]) + 1))

    def window(region: tuple[int, int, int, int]) -> Box:
        top, left, bottom, right = region
        side = max(resolution, math.ceil(context * max(bottom - top, right - left)))  # context >= 1: holds the region
        return _padded_box(top, left, bottom, right, 0, side, height, width)

    windows = _merge_overlapping(regions, window, lambda box: box, _union_bounds)
    if sum(h * w for _, _, h, w in windows) >= height * width:
        return [(0, 0, height, width)]
    return windows


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
