"""Hole masks for training and evaluation: random irregular and box masks, masks in a hole-ratio bucket,
masks read from image files, frozen evaluation sets, the anomaly scorer's grid passes and the training mask
sources (``make_mask_source``).

A mask here is a float32 (H, W) array with **1 = valid (known) pixel, 0 = hole**, as in the paper. Mask
image files on disk are the other way round by default (white / nonzero = hole), as users, diffusers and
IOPaint expect; ``load_mask`` (by the one rule of ``pconv_hf.images.to_hole_mask``) and ``save_mask_folder``
convert.

All randomness comes from an explicit ``numpy.random.Generator``: the same seed gives the same mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .images import IMAGE_SUFFIXES, list_images, to_hole_mask

HOLE_RATIO_BUCKETS: tuple[tuple[float, float], ...] = (
    (0.01, 0.1),
    (0.1, 0.2),
    (0.2, 0.3),
    (0.3, 0.4),
    (0.4, 0.5),
    (0.5, 0.6),
)
"""Hole-ratio buckets (low, high] of the paper's tables."""

OBJECT_BUCKETS: tuple[tuple[float, float], ...] = ((0.01, 0.05), (0.05, 0.1), (0.1, 0.15), (0.15, 0.3))
"""Hole-ratio buckets of the native-size protocol: what people remove from their photos."""
OBJECT_KINDS = ("stroke", "blob", "silhouette")

MASK_KINDS = ("irregular", "box", "mixed")

_MIXED_BOX_PROBABILITY = 0.5
_BLOB_PROBABILITY = 0.2  # share of blobs among the primitives mask_in_bucket adds
_MAX_PRIMITIVES = 500  # per attempt; only reached if most primitives land outside the image
_SHRINK = 0.6  # primitive size factor after an overshoot
_MIN_SCALE = 0.05


# ---------------------------------------------------------------------------------------------------------
# Ratios and buckets


def hole_ratio(valid_mask: np.ndarray) -> float:
    """Fraction of pixels that are holes (value below 0.5) in a valid mask."""
    valid_mask = np.asarray(valid_mask)
    if valid_mask.size == 0:
        raise ValueError(f"valid_mask must not be empty, got shape {valid_mask.shape}")
    return np.count_nonzero(valid_mask < 0.5) / valid_mask.size


def bucket_index(ratio: float, buckets: Sequence[tuple[float, float]] = HOLE_RATIO_BUCKETS) -> int | None:
    """Index of the bucket (low, high] of ``buckets`` (the paper's by default) holding ``ratio``, None if none."""
    return next((index for index, (low, high) in enumerate(buckets) if low < ratio <= high), None)


def bucket_label(bucket: int | tuple[float, float]) -> str:
    """Table column label of a bucket given as (low, high) or as an index into ``HOLE_RATIO_BUCKETS``,
    e.g. "0.01-0.1"."""
    low, high = _as_bucket(bucket)
    return f"{low:g}-{high:g}"


# ---------------------------------------------------------------------------------------------------------
# Random masks


def irregular_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    max_strokes: int = 14,
    max_blobs: int = 3,
    max_vertices: int = 8,
    max_width: float = 0.08,
    max_dilation: float = 0.05,
    crop_margin: float = 0.125,
    border_margin: int = 0,
) -> np.ndarray:
    """Random irregular holes like the paper's: thick free-form strokes plus elliptic blobs.

    Strokes are random walks of line segments, each with a random thickness. The paper's augmentations are
    built into the sampling rather than applied to the raster, which keeps the mask exactly binary and
    costs nothing: random crop, as primitives start anywhere on a canvas ``crop_margin`` larger than the
    image on each side and run off its edges; random rotation, as every stroke heading and blob angle is
    uniform; random dilation, as each mask gets a random extra thickness for all its primitives.

    Args:
        height: Mask height in pixels.
        width: Mask width in pixels.
        rng: Source of all randomness.
        max_strokes: Strokes per mask are drawn uniformly from 1..max_strokes.
        max_blobs: Blobs per mask are drawn uniformly from 0..max_blobs.
        max_vertices: Most line segments in one stroke.
        max_width: Largest stroke thickness, as a fraction of sqrt(height * width).
        max_dilation: Largest dilation radius, as a fraction of sqrt(height * width).
        crop_margin: Extra canvas on each side, as a fraction of sqrt(height * width).
        border_margin: No hole pixel within this many pixels of the image border.

    Returns:
        Valid mask (H, W), float32, 1 = valid, 0 = hole.
    """
    _check_shape(height, width, border_margin)
    _check_rng(rng)
    _check_int("max_strokes", max_strokes, 1)
    _check_int("max_blobs", max_blobs, 0)
    canvas, region = _canvas(height, width, border_margin)
    painter = _StrokePainter(
        region.shape,
        rng,
        max_vertices=max_vertices,
        max_width=max_width,
        max_dilation=max_dilation,
        crop_margin=crop_margin,
    )
    for _ in range(rng.integers(1, max_strokes + 1)):
        painter.stroke(region)
    for _ in range(rng.integers(0, max_blobs + 1)):
        painter.blob(region)
    # The random crop can leave every primitive outside the image; a mask without holes teaches nothing.
    while not np.count_nonzero(region):
        painter.stroke(region)
    return _to_valid(canvas)


def box_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    max_boxes: int = 3,
    min_size: float = 0.1,
    max_size: float = 0.5,
    border_margin: int = 0,
) -> np.ndarray:
    """One or a few random axis-aligned rectangular holes (object removal, mosaic).

    Args:
        height: Mask height in pixels.
        width: Mask width in pixels.
        rng: Source of all randomness.
        max_boxes: Boxes per mask are drawn uniformly from 1..max_boxes.
        min_size: Smallest box side, as a fraction of the image side it runs along.
        max_size: Largest box side, as a fraction of the image side it runs along.
        border_margin: No hole pixel within this many pixels of the image border.

    Returns:
        Valid mask (H, W), float32, 1 = valid, 0 = hole.
    """
    _check_shape(height, width, border_margin)
    _check_rng(rng)
    _check_int("max_boxes", max_boxes, 1)
    canvas, region = _canvas(height, width, border_margin)
    painter = _BoxPainter(region.shape, rng, min_size=min_size, max_size=max_size)
    for _ in range(rng.integers(1, max_boxes + 1)):
        painter.draw(region)
    return _to_valid(canvas)


def mask_in_bucket(
    height: int,
    width: int,
    rng: np.random.Generator,
    bucket: tuple[float, float] | int,
    *,
    border_margin: int = 0,
    kind: str = "irregular",
    max_tries: int = 100,
) -> np.ndarray:
    """A random mask whose hole ratio lies in ``bucket`` = (low, high].

    Primitives (strokes and blobs, or boxes) are added one at a time until the hole ratio reaches a target
    drawn uniformly from the bucket, so masks spread over the whole bucket. A primitive that would overshoot
    the bucket is undone; then the mask is returned if it is already in the bucket, and otherwise later
    primitives are drawn smaller.

    Args:
        height: Mask height in pixels.
        width: Mask width in pixels.
        rng: Source of all randomness.
        bucket: (low, high) with 0 <= low < high < 1, or an index into ``HOLE_RATIO_BUCKETS``.
        border_margin: No hole pixel within this many pixels of the image border; the hole ratio is still
            measured over the whole image (the paper's "without holes near the border" setting).
        kind: "irregular", "box" or "mixed" (either, at random).
        max_tries: Fresh starts allowed before giving up.

    Returns:
        Valid mask (H, W), float32, 1 = valid, 0 = hole.

    Raises:
        RuntimeError: No mask landed in the bucket within ``max_tries`` starts.
    """
    _check_shape(height, width, border_margin)
    _check_rng(rng)
    _check_kind(kind)
    _check_int("max_tries", max_tries, 1)
    low, high = _as_bucket(bucket)
    _check_bucket_reachable(height, width, border_margin, low, high)
    kind = _resolve_kind(kind, rng)
    total = height * width
    for _ in range(max_tries):
        # Aim at a point drawn from the bucket so that masks do not bunch at its lower edge.
        target = rng.uniform(low, high)
        canvas, region = _canvas(height, width, border_margin)
        painter = _BoxPainter(region.shape, rng) if kind == "box" else _StrokePainter(region.shape, rng)
        scale = 1.0
        for _ in range(_MAX_PRIMITIVES):
            before = region.copy()
            if kind == "box":
                painter.draw(region, scale)
            elif rng.random() < _BLOB_PROBABILITY:
                painter.blob(region, scale)
            else:
                painter.stroke(region, scale)
            ratio = cv2.countNonZero(region) / total
            if ratio > high:
                region[...] = before
                if cv2.countNonZero(region) / total > low:
                    return _to_valid(canvas)
                scale *= _SHRINK
                if scale < _MIN_SCALE:
                    break
            elif ratio >= target and ratio > low:
                return _to_valid(canvas)
    raise RuntimeError(
        f"no {kind} mask of {height}x{width} with hole ratio in ({low}, {high}] and border_margin "
        f"{border_margin} after max_tries={max_tries} starts"
    )


class MaskGenerator:
    """Callable mask source for training: ``MaskGenerator(512, 512)(rng)`` gives a valid mask.

    Args:
        height: Mask height in pixels.
        width: Mask width in pixels.
        kind: "irregular", "box" or "mixed" (either, at random, half the time each).
        bucket: If given, every mask's hole ratio lies in this (low, high] bucket (or
            ``HOLE_RATIO_BUCKETS`` index).
        border_margin: No hole pixel within this many pixels of the image border.
    """

    def __init__(
        self,
        height: int,
        width: int,
        kind: str = "irregular",
        bucket: tuple[float, float] | int | None = None,
        border_margin: int = 0,
    ) -> None:
        _check_shape(height, width, border_margin)
        _check_kind(kind)
        if bucket is not None:
            bucket = _as_bucket(bucket)
            _check_bucket_reachable(height, width, border_margin, *bucket)
        self.height = height
        self.width = width
        self.kind = kind
        self.bucket = bucket
        self.border_margin = border_margin

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        if self.bucket is not None:
            return mask_in_bucket(
                self.height, self.width, rng, self.bucket, border_margin=self.border_margin, kind=self.kind
            )
        _check_rng(rng)
        make = irregular_mask if _resolve_kind(self.kind, rng) == "irregular" else box_mask
        return make(self.height, self.width, rng, border_margin=self.border_margin)

    def __repr__(self) -> str:
        return (
            f"MaskGenerator(height={self.height}, width={self.width}, kind={self.kind!r}, "
            f"bucket={self.bucket}, border_margin={self.border_margin})"
        )


# ---------------------------------------------------------------------------------------------------------
# Mask files


def load_mask(path: str | Path, size: tuple[int, int] | None = None, holes_are: str = "white") -> np.ndarray:
    """Read a mask image file as a valid mask, by the one rule of :func:`pconv_hf.images.to_hole_mask`.

    White / nonzero pixels are holes (any mode, any bit depth), transparent pixels never are. With ``size``,
    the binary hole image is resized (bilinear) and binarised at 0.5, so a resized mask is still exactly
    {0, 1}; a pixel at exactly 0.5 counts as hole.

    Args:
        path: Mask image file.
        size: (height, width) to resize to, or None to keep the file's size.
        holes_are: "white" if nonzero pixels mark holes (this project's files, diffusers, IOPaint), "black"
            if zero pixels do.

    Returns:
        Valid mask (H, W), float32, 1 = valid, 0 = hole.
    """
    _check_holes_are(holes_are)
    if size is not None:
        _check_size(size)
    hole_mask = to_hole_mask(path, holes_are=holes_are)
    if size is not None and hole_mask.shape != tuple(size):
        resized = Image.fromarray(hole_mask.astype(np.float32)).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        hole_mask = np.asarray(resized) >= 0.5
    return np.logical_not(hole_mask).astype(np.float32)


class MaskFolder:
    """A folder of mask image files, in sorted file-name order, usable as a training mask source.

    Args:
        directory: Folder holding mask images (png, jpg, bmp, tif, webp, gif); subfolders are ignored.
        size: (height, width) every mask is resized to, or None to keep each file's size.
        holes_are: "white" or "black", as in ``load_mask``.
    """

    def __init__(self, directory: str | Path, size: tuple[int, int] | None = None, holes_are: str = "white") -> None:
        _check_holes_are(holes_are)
        if size is not None:
            _check_size(size)
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(f"mask folder {str(directory)!r} does not exist or is not a directory")
        self.paths = list_images(self.directory)
        if not self.paths:
            raise ValueError(
                f"mask folder {str(directory)!r} holds no mask images (expected files ending in "
                f"{', '.join(IMAGE_SUFFIXES)})"
            )
        self.size = None if size is None else tuple(size)
        self.holes_are = holes_are

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return load_mask(self.paths[index], self.size, self.holes_are)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random mask, randomly flipped and (if square) transposed: 8 variants per square file."""
        _check_rng(rng)
        valid_mask = self[int(rng.integers(len(self)))]
        flip_rows, flip_cols, transpose = rng.random(3) < 0.5
        if flip_rows:
            valid_mask = valid_mask[::-1]
        if flip_cols:
            valid_mask = valid_mask[:, ::-1]
        # Transposing a non-square mask would change its shape.
        if transpose and valid_mask.shape[0] == valid_mask.shape[1]:
            valid_mask = valid_mask.T
        return np.ascontiguousarray(valid_mask)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return self.sample(rng)


def fixed_masks(
    n_per_bucket: int,
    height: int,
    width: int,
    seed: int,
    *,
    border_margin: int = 0,
    kind: str = "irregular",
) -> list[tuple[int, np.ndarray]]:
    """Deterministic evaluation masks: ``n_per_bucket`` masks for each of ``HOLE_RATIO_BUCKETS``.

    Bucket i draws from ``np.random.default_rng([seed, i])``, so its masks do not depend on the other
    buckets.

    Returns:
        (bucket index, valid mask) pairs, bucket by bucket.
    """
    _check_int("n_per_bucket", n_per_bucket, 1)
    _check_int("seed", seed, 0)
    masks = []
    for index, bucket in enumerate(HOLE_RATIO_BUCKETS):
        rng = np.random.default_rng([seed, index])
        for _ in range(n_per_bucket):
            valid_mask = mask_in_bucket(height, width, rng, bucket, border_margin=border_margin, kind=kind)
            masks.append((index, valid_mask))
    return masks


def save_mask_folder(masks: Iterable[np.ndarray | tuple[int, np.ndarray]], directory: str | Path) -> list[Path]:
    """Write valid masks as PNG files (white = hole) that ``load_mask`` / ``MaskFolder`` read back exactly.

    Files are named by position (``00000.png``, or ``00000_holes_0.01-0.1.png`` for the (bucket index,
    mask) pairs of ``fixed_masks``) so that sorted order is the original order. The directory is created if
    needed and must not already hold mask images, so that two sets are never mixed.

    Returns:
        The written paths, in order.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"mask folder {str(directory)!r} exists and is not a directory")
    if directory.is_dir() and list_images(directory):
        raise ValueError(f"mask folder {str(directory)!r} already holds mask images; use an empty folder")
    items = list(masks)
    arrays = [item[1] if isinstance(item, tuple) else item for item in items]
    for position, valid_mask in enumerate(arrays):
        valid_mask = np.asarray(valid_mask)
        if valid_mask.ndim != 2 or not np.isin(valid_mask, (0, 1)).all():
            raise ValueError(
                f"mask {position} must be a 2-D array of 0 and 1, got shape {valid_mask.shape} with values "
                f"{np.unique(valid_mask)[:5]}"
            )
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for position, (item, valid_mask) in enumerate(zip(items, arrays, strict=True)):
        suffix = f"_holes_{bucket_label(item[0])}" if isinstance(item, tuple) else ""
        path = directory / f"{position:05d}{suffix}.png"
        hole_image = np.where(np.asarray(valid_mask) == 0, 255, 0).astype(np.uint8)
        Image.fromarray(hole_image).save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------------------
# Drawing


# ---------------------------------------------------------------------------------------------------------
# Object-removal masks at a photo's own size


def object_mask(
    height: int, width: int, kind: str, bucket: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """A hole mask like the ones people paint to remove something, valid mask (1 = known) of a photo's size,
    with a hole ratio inside ``bucket`` (low, high].

    kind: "stroke" (1-3 brush strokes, a random walk each, the brush 1.5-4 % of the long side wide, drawn until
    the ratio is reached), "blob" (one smooth star-shaped region) or "silhouette" (an upright object: an
    elongated body, a head and sometimes a base, as in people, animals, bottles and posts).
    """
    if kind not in OBJECT_KINDS:
        raise ValueError(f"kind must be one of {OBJECT_KINDS}, got {kind!r}")
    _check_rng(rng)
    low, high = _as_bucket(bucket)
    for _ in range(50):
        target = rng.uniform(low, high)
        canvas = _stroke_canvas(height, width, target, rng) if kind == "stroke" else None
        if canvas is None:
            canvas = _shape_canvas(height, width, kind, target, rng)
        ratio = float(canvas.mean())
        if low < ratio <= high:
            return (1 - canvas).astype(np.float32)
    raise ValueError(f"could not draw a {kind} mask with a hole ratio in {bucket} on a {width}x{height} photo")


def _stroke_canvas(height: int, width: int, target: float, rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    long_side = max(height, width)
    brush = max(2, round(rng.uniform(0.015, 0.04) * long_side))
    strokes = int(rng.integers(1, 4))
    point = rng.uniform((0.1 * width, 0.1 * height), (0.9 * width, 0.9 * height))
    heading = rng.uniform(0, 2 * np.pi)
    step = 0.05 * long_side
    for segment in range(10_000):
        if segment and segment % max(1, 40 // strokes) == 0 and strokes > 1:  # start the next stroke elsewhere
            point = rng.uniform((0.1 * width, 0.1 * height), (0.9 * width, 0.9 * height))
            strokes -= 1
        heading += rng.normal(0, 0.5)
        new = point + step * np.array([np.cos(heading), np.sin(heading)])
        if not (0 <= new[0] < width and 0 <= new[1] < height):  # turn back from the edge
            heading += np.pi
            continue
        cv2.line(canvas, tuple(np.rint(point).astype(int)), tuple(np.rint(new).astype(int)), 1, brush)
        point = new
        if canvas.mean() >= target:
            break
    return canvas


def _shape_canvas(height: int, width: int, kind: str, target: float, rng: np.random.Generator) -> np.ndarray:
    """A blob or silhouette drawn at a reference size, then scaled so its area is ``target`` of the photo."""
    reference = 512
    shape = np.zeros((reference, reference), np.uint8)
    centre = reference // 2
    if kind == "blob":
        angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
        radius = np.ones_like(angles)
        for harmonic in range(2, 6):
            radius += rng.uniform(0, 0.5 / harmonic) * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
        radius *= 0.3 * reference / radius.max()
        aspect = rng.uniform(0.6, 1.0)
        points = np.stack([centre + radius * np.cos(angles), centre + aspect * radius * np.sin(angles)], 1)
        cv2.fillPoly(shape, [np.rint(points).astype(np.int32)], 1)
    else:
        body_w, body_h = rng.uniform(0.06, 0.14) * reference, rng.uniform(0.18, 0.3) * reference
        head = rng.uniform(0.35, 0.6) * body_w
        cv2.ellipse(shape, (centre, centre), (round(body_w), round(body_h)), rng.uniform(-10, 10), 0, 360, 1, -1)
        cv2.circle(shape, (centre, round(centre - body_h - head * 0.6)), round(head), 1, -1)
        if rng.random() < 0.5:
            base = (round(body_w * rng.uniform(1.1, 1.6)), round(body_h * 0.15))
            cv2.ellipse(shape, (centre, round(centre + body_h * 0.85)), base, 0, 0, 360, 1, -1)
    rows, cols = np.nonzero(shape)
    shape = shape[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = math.sqrt(target * height * width / shape.sum())
    size = (max(1, round(shape.shape[1] * scale)), max(1, round(shape.shape[0] * scale)))
    if size[0] > width or size[1] > height:
        return np.ones((height, width), np.uint8)  # does not fit: rejected by the caller's ratio check
    shape = cv2.resize(shape, size, interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        shape = shape[:, ::-1]
    canvas = np.zeros((height, width), np.uint8)
    top = int(rng.integers(0, height - size[1] + 1))
    left = int(rng.integers(0, width - size[0] + 1))
    canvas[top : top + size[1], left : left + size[0]] = shape
    return canvas


class _StrokePainter:
    """Draws one mask's random strokes and blobs as 1s into a uint8 canvas."""

    def __init__(
        self,
        shape: tuple[int, int],
        rng: np.random.Generator,
        *,
        max_vertices: int = 8,
        max_width: float = 0.08,
        max_dilation: float = 0.05,
        crop_margin: float = 0.125,
    ) -> None:
        _check_int("max_vertices", max_vertices, 1)
        _check_fraction("max_width", max_width, 0.01)
        _check_fraction("max_dilation", max_dilation, 0.0)
        _check_fraction("crop_margin", crop_margin, 0.0)
        height, width = shape
        self.rng = rng
        self.max_vertices = max_vertices
        self.max_width = max_width
        self.unit = math.sqrt(height * width)
        # Primitives start anywhere on a canvas larger than the image, so the image is a random crop of it.
        pad = crop_margin * self.unit
        self.start_low = np.array([-pad, -pad])
        self.start_span = np.array([width + 2 * pad, height + 2 * pad])
        # Dilating a round-capped stroke by a disk only thickens it, so dilation is extra thickness.
        self.dilation = rng.uniform(0.0, max_dilation) * self.unit

    def stroke(self, canvas: np.ndarray, scale: float = 1.0) -> None:
        n_segments = int(self.rng.integers(1, self.max_vertices + 1))
        # One draw per stroke (start x, y, first heading, thickness, turns, lengths): rng calls dominate.
        u = self.rng.random(4 + 2 * n_segments)
        # A random walk that mostly keeps its heading, so strokes curve rather than zigzag.
        headings = 2 * np.pi * u[2] + np.cumsum(4.0 * u[4 : 4 + n_segments] - 2.0)
        lengths = (0.03 + 0.22 * u[4 + n_segments :]) * (self.unit * scale)
        points = np.empty((n_segments + 1, 2))
        points[0] = self.start_low + u[:2] * self.start_span
        points[1:, 0] = np.cos(headings) * lengths
        points[1:, 1] = np.sin(headings) * lengths
        points = np.cumsum(points, axis=0)
        thickness = ((0.01 + (self.max_width - 0.01) * u[3]) * self.unit + 2 * self.dilation) * scale
        cv2.polylines(canvas, [np.rint(points).astype(np.int32)], False, 1, max(1, round(thickness)))

    def blob(self, canvas: np.ndarray, scale: float = 1.0) -> None:
        u = self.rng.random(5)  # centre x, y, two semi-axes, angle
        x, y = np.rint(self.start_low + u[:2] * self.start_span).astype(int)
        axes = ((0.02 + 0.13 * u[2:4]) * self.unit + self.dilation) * scale
        cv2.ellipse(canvas, (int(x), int(y)), (round(axes[0]), round(axes[1])), 180.0 * u[4], 0, 360, 1, -1)


class _BoxPainter:
    """Draws random axis-aligned boxes, fully inside the canvas, as 1s into a uint8 canvas."""

    def __init__(
        self,
        shape: tuple[int, int],
        rng: np.random.Generator,
        *,
        min_size: float = 0.1,
        max_size: float = 0.5,
    ) -> None:
        _check_fraction("min_size", min_size, 0.0)
        _check_fraction("max_size", max_size, min_size)
        self.shape = np.array(shape)
        self.rng = rng
        self.min_size = min_size
        self.max_size = max_size

    def draw(self, canvas: np.ndarray, scale: float = 1.0) -> None:
        sides = self.rng.uniform(self.min_size, self.max_size, size=2) * self.shape * scale
        box_height, box_width = np.clip(np.rint(sides).astype(int), 1, self.shape)
        top = self.rng.integers(0, self.shape[0] - box_height + 1)
        left = self.rng.integers(0, self.shape[1] - box_width + 1)
        canvas[top : top + box_height, left : left + box_width] = 1


def _canvas(height: int, width: int, border_margin: int) -> tuple[np.ndarray, np.ndarray]:
    """A zero uint8 canvas and the view of it that holes may be drawn into."""
    canvas = np.zeros((height, width), np.uint8)
    m = border_margin
    return canvas, canvas[m : height - m, m : width - m]


def _to_valid(canvas: np.ndarray) -> np.ndarray:
    return (canvas == 0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Argument checks


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_fraction(name: str, value: object, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= 1:
        raise ValueError(f"{name} must be a number in [{minimum}, 1], got {value!r}")


def _check_shape(height: object, width: object, border_margin: object) -> None:
    _check_int("height", height, 1)
    _check_int("width", width, 1)
    _check_int("border_margin", border_margin, 0)
    if 2 * border_margin >= min(height, width):
        raise ValueError(
            f"border_margin must be less than half the smaller side ({min(height, width)}) to leave room "
            f"for holes, got {border_margin}"
        )


def _check_size(size: object) -> None:
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"size must be a (height, width) pair, got {size!r}")
    _check_int("size height", size[0], 1)
    _check_int("size width", size[1], 1)


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _check_kind(kind: object) -> None:
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")


def _check_holes_are(holes_are: object) -> None:
    if holes_are not in ("white", "black"):
        raise ValueError(f"holes_are must be 'white' or 'black', got {holes_are!r}")


def _as_bucket(bucket: object) -> tuple[float, float]:
    """A (low, high) pair with 0 <= low < high < 1 from a pair or a ``HOLE_RATIO_BUCKETS`` index."""
    if isinstance(bucket, int | np.integer) and not isinstance(bucket, bool):
        if not 0 <= bucket < len(HOLE_RATIO_BUCKETS):
            raise ValueError(f"bucket index must be in 0..{len(HOLE_RATIO_BUCKETS) - 1}, got {bucket}")
        return HOLE_RATIO_BUCKETS[bucket]
    try:
        low, high = (float(bound) for bound in bucket)
    except (TypeError, ValueError):
        raise ValueError(f"bucket must be a (low, high) pair of hole ratios, got {bucket!r}") from None
    if not 0 <= low < high < 1:
        raise ValueError(f"bucket must be (low, high) with 0 <= low < high < 1, got {bucket!r}")
    return low, high


def _check_bucket_reachable(height: int, width: int, border_margin: int, low: float, high: float) -> None:
    total = height * width
    fewest_holes = math.floor(low * total) + 1  # fewest hole pixels with ratio > low
    most_holes = (height - 2 * border_margin) * (width - 2 * border_margin)
    if fewest_holes / total > high or fewest_holes > most_holes:
        raise ValueError(
            f"bucket ({low}, {high}] cannot be reached by a {height}x{width} mask with border_margin "
            f"{border_margin} (at most {most_holes / total:.3f} of it can be hole)"
        )


def _resolve_kind(kind: str, rng: np.random.Generator) -> str:
    if kind == "mixed":
        return "box" if rng.random() < _MIXED_BOX_PROBABILITY else "irregular"
    return kind


# ---------------------------------------------------------------------------------------------------------
# Training mask sources: grid passes (anomaly inpainting mode), bucketed irregular masks, none, folders


def check_grid_layout(height: int, width: int, cells: int, period: int) -> None:
    if not isinstance(period, int) or period < 2:
        raise ValueError(f"grid period must be an int >= 2 (2 = checkerboard), got {period!r}")
    if not isinstance(cells, int) or cells < period or cells > min(height, width):
        raise ValueError(
            f"grid cells must be an int from the period ({period}) to the image side ({min(height, width)}), "
            f"got {cells!r}"
        )


def grid_masks(height: int, width: int, cells: int = 8, period: int = 2) -> np.ndarray:
    """The inpainting passes: (period**2, 1, H, W) valid masks (1 = valid) over a ``cells`` x ``cells`` grid.

    Cell (row i, column j) is a hole in pass ``(i % period) * period + (j % period)``; every pixel is a hole in
    exactly one pass, and with ``period`` 2 each hole cell's eight neighbours are valid in its pass.
    """
    check_grid_layout(height, width, cells, period)
    cell_rows = np.arange(height) * cells // height  # (H,) cell row of each pixel row
    cell_cols = np.arange(width) * cells // width  # (W,)
    pass_of_pixel = (cell_rows % period)[:, None] * period + (cell_cols % period)[None, :]  # (H, W)
    holes = pass_of_pixel[None] == np.arange(period**2)[:, None, None]  # (P, H, W)
    return (~holes).astype(np.float32)[:, None]  # (P, 1, H, W)


class GridMaskSource:
    """Training masks for the inpainting mode: one random pass of ``grid_masks`` (``--mask_source grid:CELLS``)."""

    def __init__(self, resolution: int, cells: int = 8, period: int = 2) -> None:
        self.masks = grid_masks(resolution, resolution, cells, period)[:, 0]

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return self.masks[rng.integers(len(self.masks))]


MaskSource = Callable[[np.random.Generator], np.ndarray]


class BucketMaskGenerator:
    """Irregular training masks with the hole ratio spread evenly over the paper's buckets (0.01 to 0.6]."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        bucket = int(rng.integers(len(HOLE_RATIO_BUCKETS)))
        return mask_in_bucket(self.resolution, self.resolution, rng, bucket)


class AllValidMask:
    """No holes: every pixel valid (training a plain-conv U-Net as an autoencoder)."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return np.ones((self.resolution, self.resolution), dtype=np.float32)


def make_mask_source(spec: str, resolution: int) -> MaskSource:
    """The training masks named by ``--mask_source``.

    - ``"generated"`` -> ``BucketMaskGenerator`` (irregular holes over the paper's hole-ratio buckets);
    - ``"none"`` -> ``AllValidMask`` (no holes; the autoencoder of ``pconv_hf.anomaly``);
    - ``"grid:CELLS"`` or ``"grid:CELLS:PERIOD"`` -> one random pass of the checkerboard grid that
      ``pconv_hf.anomaly`` inpaints at scoring time (``GridMaskSource``);
    - a folder path -> ``MaskFolder`` (random file, flip, transpose).
    """
    if spec == "generated":
        return BucketMaskGenerator(resolution)
    if spec == "none":
        return AllValidMask(resolution)
    if spec.startswith("grid:"):
        parts = spec.split(":")[1:]
        if len(parts) not in (1, 2) or not all(part.isdigit() for part in parts):
            raise ValueError(
                f"--mask_source grid needs 'grid:CELLS' or 'grid:CELLS:PERIOD' (e.g. grid:8), got {spec!r}"
            )
        return GridMaskSource(resolution, *(int(part) for part in parts))
    if not Path(spec).is_dir():
        raise ValueError(
            f"--mask_source must be 'generated', 'none', 'grid:CELLS' or a folder of mask images, got {spec!r}"
        )
    return MaskFolder(spec, size=(resolution, resolution))
