"""Texture at inference: the network decides what goes where, the photo's own known pixels supply the detail.

A partial-convolution U-Net predicts the *mean* of what could be behind a hole: the right colours and structure,
but smooth, so a removed object leaves a soft "ghost" in its outline. :func:`synthesize_texture` replaces the
fill's fine detail with texture copied from the photo's own known pixels, guided by the network's fill:

1. A pyramid of the window (coarse to fine, each level half the size of the next), the hole filled with the
   network's prediction. Hole pixels of the photo are never read: what the user painted over is gone.
2. At each level, an expectation-maximisation synthesis in the manner of Wexler et al. (2007): every hole pixel's
   patch is matched to a fully known patch nearby (a PatchMatch search, Barnes et al. 2009: propagation of
   neighbours' matches, then random search, all vectorised), where the distance adds to the patch's own
   difference a term that keeps the match's low frequencies close to the network's; each hole pixel then becomes
   the similarity-weighted vote of the matched patches that cover it; finally the fill's low frequencies are set
   back to the network's, so structure and colour stay the network's and only detail comes from the photo.
3. The matches of one level, doubled, start the next; the last level is the window's own pixel scale.

A patch is compared by 3 x 3 samples, 2 pixels apart, of a lightly blurred copy (a 7 x 7 footprint in 27 numbers),
so a comparison is one row gather. Deterministic for a seed. Only hole pixels of the result are new: callers
composite it into the hole alone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

PATCH_STEP = 2
"""Spacing of the 3 x 3 samples that describe a patch (footprint ``4 * PATCH_STEP - 1`` pixels a side)."""
PATCH_RADIUS = 2 * PATCH_STEP + 1
"""A source patch's centre is at least this far from every hole pixel (its footprint plus the vote's reach)."""


@dataclass(frozen=True)
class TextureOptions:
    """How :func:`synthesize_texture` works; the defaults are what ``inpaint(texture=True)`` uses.

    guide_weight: weight of the low-frequency term that keeps matches close to the network's fill.
    guide_sigma: its blur, in pixels of each level.
    keep_low: blur (pixels of the finest level) below which the result's frequencies are the network's.
    levels: pyramid levels (None: as many as the hole's width needs, at most 4).
    em_steps: synthesis rounds per level, finest level last.
    search_steps: PatchMatch rounds per synthesis round.
    search_radius: sources are known pixels at most this far from the hole (pixels of each level).
    """

    guide_weight: float = 0.25
    guide_sigma: float = 4.0
    keep_low: float = 6.0
    levels: int | None = None
    em_steps: tuple[int, ...] = (2, 2, 1, 1)
    search_steps: int = 2
    search_radius: int = 96
    vote_radius: int = 1
    blend_width: float = 8.0
    max_search_pixels: int = 150_000


def synthesize_texture(
    rgb: np.ndarray,
    hole: np.ndarray,
    fill: np.ndarray,
    *,
    seed: int = 0,
    options: TextureOptions | None = None,
    return_sources: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The network's ``fill`` with its fine detail copied from the known pixels of ``rgb``.

    Args:
        rgb: (H, W, 3) float32 in [0, 1], the photo; its hole pixels are never read.
        hole: (H, W) bool, True = pixel to fill.
        fill: (H, W, 3) float32 in [0, 1], the network's prediction (only its hole pixels are used).
        seed: the random search's seed; the same inputs and seed give the same result.
        options: :class:`TextureOptions` (defaults when None).
        return_sources: also return, for every hole pixel (row-major order), the (row, col) of the known pixel
            its value was mostly copied from at the finest level (the centre of its matched patch).

    Returns:
        (H, W, 3) float32 in [0, 1]: ``fill`` with new hole pixels (others are ``rgb``'s), and the sources when
        asked. If no known patch lies near the hole (a tiny window), the fill comes back unchanged.
    """
    options = options or TextureOptions()
    hole = np.asarray(hole, bool)
    height, width = hole.shape
    if rgb.shape[:2] != (height, width) or fill.shape[:2] != (height, width):
        raise ValueError(f"rgb {rgb.shape}, hole {hole.shape} and fill {fill.shape} must have one height and width")
    guide = np.where(hole[..., None], fill, rgb).astype(np.float32)
    sources = np.zeros((int(hole.sum()), 2), np.int64)
    if not hole.any() or hole.all():
        return (guide, sources) if return_sources else guide

    generator = torch.Generator().manual_seed(int(seed))
    hole_width = 2.0 * float(cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 5).max())
    levels = options.levels or int(np.clip(math.ceil(math.log2(max(hole_width, 1) / 24)) + 1, 1, 4))
    # Work on the hole's box plus what any level can read around it (sources, patches, blurs), not the window.
    reach = math.ceil(options.search_radius + 2 * PATCH_RADIUS + 3 * max(options.guide_sigma, options.keep_low)) << (
        levels - 1
    )
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    top, bottom = max(0, rows[0] - reach), min(height, rows[-1] + 1 + reach)
    left, right = max(0, cols[0] - reach), min(width, cols[-1] + 1 + reach)
    box = (slice(top, bottom), slice(left, right))
    if (bottom - top, right - left) != (height, width):
        result = synthesize_texture(rgb[box], hole[box], fill[box], seed=seed, options=options, return_sources=True)
        out = guide.copy()
        out[box] = result[0]
        if return_sources:
            return out, result[1] + np.array([top, left])
        return out
    pyramid = _pyramid(guide, hole, levels)
    previous: _Level | None = None
    nnf = None
    for level, (image, level_hole) in enumerate(pyramid):
        canvas = _Level(image, level_hole, options, generator, None if previous is None else (previous, nnf))
        if canvas.sources.shape[0] == 0:
            return (guide, sources) if return_sources else guide
        if previous is None:  # the coarsest level starts from the network's fill
            nnf = canvas.random_matches()
            estimate = _take(canvas.pixels, canvas.flat_targets)
        else:  # finer levels from the coarser matches, doubled
            nnf = canvas.matches_from(previous, nnf)
            estimate = torch.from_numpy(canvas.keep_low_frequencies(canvas.vote(nnf)))
        steps = options.em_steps[max(0, len(options.em_steps) - len(pyramid) + level)]
        if level and canvas.targets.shape[0] > options.max_search_pixels:
            steps = 0  # a big hole at a fine level: the coarser matches, doubled, place the texture; no search
        for _ in range(steps):
            canvas.set_estimate(estimate)
            nnf = canvas.search(nnf)
            estimate = torch.from_numpy(canvas.keep_low_frequencies(canvas.vote(nnf)))
        previous = canvas
    out = guide.copy()
    out[hole] = estimate.numpy()
    if options.blend_width > 0:  # near the hole's edge the network's fill is closest to the truth: keep it there
        inside = cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 3)[hole]
        weight = np.clip((inside - 1) / options.blend_width, 0, 1)[:, None]
        out[hole] = weight * out[hole] + (1 - weight) * guide[hole]
    out[hole] = np.clip(out[hole], 0, 1)
    if return_sources:
        return out, canvas.source_rows_cols(nnf)
    return out


def _pyramid(image: np.ndarray, hole: np.ndarray, levels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, hole) per level, coarsest first; each level halves the next one's size. A coarse pixel is hole when
    any fine pixel under it is, so a coarse known pixel holds nothing of the hole."""
    out = [(image, hole)]
    for _ in range(levels - 1):
        image, hole = out[-1]
        if min(image.shape[:2]) < 8 * PATCH_RADIUS:
            break
        size = (image.shape[1] // 2, image.shape[0] // 2)
        fine_hole = hole[: 2 * size[1], : 2 * size[0]]
        coarse = cv2.resize(image[: 2 * size[1], : 2 * size[0]], size, interpolation=cv2.INTER_AREA)
        coarse_hole = fine_hole.reshape(size[1], 2, size[0], 2).any(axis=(1, 3))
        out.append((coarse, coarse_hole))
    return out[::-1]


class _Level:
    """One pyramid level: the hole pixels to synthesize, the known source patches near them, and the matches."""

    def __init__(
        self,
        image: np.ndarray,
        hole: np.ndarray,
        options: TextureOptions,
        generator: torch.Generator,
        coarse: tuple[_Level, torch.Tensor] | None = None,
    ) -> None:
        """``coarse``: the next coarser level and its matches; the known patches they point to, doubled, are sources
        here too, however far from the hole (a coarse level searches as far in its own pixels, twice as far in
        these), so that every hole pixel starts from its coarse match instead of a random one."""
        self.options, self.generator = options, generator
        self.height, self.width = hole.shape
        # Hole pixels (targets) in row-major order, and an index map from (row, col) to target number.
        self.targets = torch.from_numpy(np.argwhere(hole))  # (N, 2)
        self.target_index = torch.full((self.height, self.width), -1, dtype=torch.int64)
        self.target_index[self.targets[:, 0], self.targets[:, 1]] = torch.arange(self.targets.shape[0])
        # Sources: known pixels whose whole patch (and vote reach) is known, within the search radius of the hole.
        hole_u8 = hole.view(np.uint8)
        from_hole = cv2.distanceTransform(1 - hole_u8, cv2.DIST_C, 3)  # square footprints: chessboard distance
        eligible = from_hole <= options.search_radius + PATCH_RADIUS
        if coarse is not None:
            eligible |= self._pointed(*coarse)
        eligible &= from_hole > PATCH_RADIUS
        eligible[:PATCH_RADIUS], eligible[-PATCH_RADIUS:] = False, False
        eligible[:, :PATCH_RADIUS], eligible[:, -PATCH_RADIUS:] = False, False
        self.sources = torch.from_numpy(np.argwhere(eligible))  # (M, 2)
        self.source_index = torch.full((self.height, self.width), -1, dtype=torch.int64)
        self.source_index[self.sources[:, 0], self.sources[:, 1]] = torch.arange(self.sources.shape[0])
        self.pixels = torch.from_numpy(np.ascontiguousarray(image)).reshape(-1, 3)
        self.flat_targets = self._flat(self.targets)
        self._neighbour_cache: dict[tuple[int, int], torch.Tensor] = {}
        # The level's image is the guide (the network's fill in the hole): its low frequencies at the targets, for
        # keep_low_frequencies (and, in _descriptors, the match term), are the same for every round.
        self.image = image
        self.guide_kept = cv2.GaussianBlur(image, (0, 0), options.keep_low).reshape(-1, 3)[self.flat_targets.numpy()]

    @functools.cached_property
    def _descriptors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The guide's low-frequency part of every target's descriptor (N, 3), and every source's descriptor
        (M, 30). Only a level that searches needs them (a big hole's finest level does not: two whole-level blurs
        and a gather saved there)."""
        guide_low = cv2.GaussianBlur(self.image, (0, 0), self.options.guide_sigma).reshape(-1, 3)
        weight = math.sqrt(9 * self.options.guide_weight)
        target_low = weight * torch.from_numpy(guide_low[self.flat_targets.numpy()])
        source_low = torch.from_numpy(guide_low[self._flat(self.sources).numpy()])
        return target_low, torch.cat([self._samples(self.image, self.sources), weight * source_low], 1)

    # --- patch descriptors --------------------------------------------------------------------------------

    def _flat(self, points: torch.Tensor) -> torch.Tensor:
        return points[:, 0] * self.width + points[:, 1]

    def _samples(self, image: np.ndarray, points: torch.Tensor) -> torch.Tensor:
        """(len(points), 27): 3 x 3 samples of the lightly blurred image around each point. A descriptor is these
        and the low-frequency colour at the point (weighted by the guide weight): 30 numbers."""
        blurred = torch.from_numpy(cv2.GaussianBlur(image, (0, 0), 0.8 * PATCH_STEP / 2)).reshape(-1, 3)
        rows, cols = points[:, 0:1], points[:, 1:2]
        offsets = torch.arange(-1, 2) * PATCH_STEP
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        sample_rows = (rows + dy.reshape(1, -1)).clamp_(0, self.height - 1)
        sample_cols = (cols + dx.reshape(1, -1)).clamp_(0, self.width - 1)
        return _take(blurred, sample_rows * self.width + sample_cols).reshape(len(points), -1)

    def set_estimate(self, values: np.ndarray | torch.Tensor) -> None:
        """Put the current hole estimate into the level's image and describe every hole pixel's patch."""
        image = self.pixels.clone()
        image[self.flat_targets] = torch.as_tensor(values, dtype=torch.float32)
        samples = self._samples(image.reshape(self.height, self.width, 3).numpy(), self.targets)
        self.target_features = torch.cat([samples, self._descriptors[0]], dim=1)

    def _distance(self, source_ids: torch.Tensor) -> torch.Tensor:
        """Squared distance of every target's descriptor to the descriptors of ``source_ids`` (N, K)."""
        candidates = _take(self._descriptors[1], source_ids).reshape(*source_ids.shape, -1)
        return ((candidates - self.target_features[:, None]) ** 2).sum(-1)

    # --- matching -----------------------------------------------------------------------------------------

    def random_matches(self) -> torch.Tensor:
        return torch.randint(0, self.sources.shape[0], (self.targets.shape[0],), generator=self.generator)

    def _doubled(self, coarse: _Level, coarse_nnf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For this level's targets: which lie under a coarser target (N,) bool, and for those, the coarser match
        doubled (K, 2): the same place in the photo, at this level's scale (may fall outside the level)."""
        rows = (self.targets[:, 0] // 2).clamp_(max=coarse.height - 1)
        cols = (self.targets[:, 1] // 2).clamp_(max=coarse.width - 1)
        parent = coarse.target_index[rows, cols]
        has = parent >= 0
        return has, coarse.sources[coarse_nnf[parent[has]]] * 2 + (self.targets[has] % 2)

    def _pointed(self, coarse: _Level, coarse_nnf: torch.Tensor) -> np.ndarray:
        """(H, W) bool: the pixels that the coarser level's matches, doubled, point to."""
        _, source = self._doubled(coarse, coarse_nnf)
        inside = (source[:, 0] < self.height) & (source[:, 1] < self.width)
        pointed = np.zeros((self.height, self.width), bool)
        pointed[source[inside, 0].numpy(), source[inside, 1].numpy()] = True
        return pointed

    def matches_from(self, coarse: _Level, coarse_nnf: torch.Tensor) -> torch.Tensor:
        """Source ids (N,) from a coarser level's matches, doubled, where they land on a source here; random
        sources elsewhere."""
        nnf = self.random_matches()
        has, source = self._doubled(coarse, coarse_nnf)
        inside = (source[:, 0] < self.height) & (source[:, 1] < self.width)
        ids = torch.full((int(has.sum()),), -1, dtype=torch.int64)
        ids[inside] = self.source_index[source[inside, 0], source[inside, 1]]
        chosen = nnf[has]
        chosen[ids >= 0] = ids[ids >= 0]
        nnf[has] = chosen
        return nnf

    def search(self, nnf: torch.Tensor) -> torch.Tensor:
        """PatchMatch rounds: neighbours' matches shifted by the step between them (jump flooding: far
        neighbours first), then random candidates near the current match and anywhere."""
        best = self._distance(nnf[:, None])[:, 0]
        radius0 = self.options.search_radius
        for round_ in range(self.options.search_steps):
            for step in (4, 2, 1) if round_ == 0 else (2, 1):
                candidates = [self._propagated(nnf, dy * step, dx * step) for dy, dx in _DIRECTIONS]
                nnf, best = self._take_better(nnf, best, torch.stack(candidates, dim=1))
            radius = max(2, radius0 >> round_)
            candidates = [self._jittered(nnf, radius), self._jittered(nnf, max(2, radius // 4))]
            candidates.append(torch.randint(0, self.sources.shape[0], nnf.shape, generator=self.generator))
            nnf, best = self._take_better(nnf, best, torch.stack(candidates, dim=1))
        self.match_distance = best
        return nnf

    def _take_better(
        self, nnf: torch.Tensor, best: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        valid = candidates >= 0
        distance = self._distance(candidates.clamp(min=0)).masked_fill_(~valid, float("inf"))
        value, choice = distance.min(dim=1)
        better = value < best
        nnf = torch.where(better, candidates.gather(1, choice[:, None])[:, 0], nnf)
        return nnf, torch.where(better, value, best)

    def _neighbours(self, dy: int, dx: int) -> torch.Tensor:
        """For each target, the target number of the pixel at (dy, dx) from it (-1 where that is no hole pixel);
        cached, as every round asks for the same few offsets."""
        key = (dy, dx)
        if key not in self._neighbour_cache:
            rows, cols = self.targets[:, 0] + dy, self.targets[:, 1] + dx
            inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
            flat = rows.clamp(0, self.height - 1) * self.width + cols.clamp(0, self.width - 1)
            self._neighbour_cache[key] = torch.where(inside, _take(self.target_index.view(-1), flat), -1)
        return self._neighbour_cache[key]

    def _source_at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Source ids at (rows, cols), -1 where that pixel is no source (or outside the level)."""
        inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        flat = rows.clamp(0, self.height - 1) * self.width + cols.clamp(0, self.width - 1)
        return torch.where(inside, _take(self.source_index.view(-1), flat), -1)

    def _propagated(self, nnf: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        """For each target, the match of its neighbour at (dy, dx) shifted back by (dy, dx) (-1 where none)."""
        neighbour = self._neighbours(dy, dx)
        matched = _take(self.sources, _take(nnf, neighbour.clamp(min=0)))
        ids = self._source_at(matched[:, 0] - dy, matched[:, 1] - dx)
        return torch.where(neighbour >= 0, ids, -1)

    def _jittered(self, nnf: torch.Tensor, radius: int) -> torch.Tensor:
        offset = torch.randint(-radius, radius + 1, (nnf.shape[0], 2), generator=self.generator)
        source = _take(self.sources, nnf) + offset
        return self._source_at(source[:, 0], source[:, 1])

    # --- voting -------------------------------------------------------------------------------------------

    def vote(self, nnf: torch.Tensor) -> torch.Tensor:
        """Every hole pixel as the weighted mean of what the matched patches covering it (the centres within
        ``vote_radius``) put there; a patch's weight falls with its match distance."""
        distance = getattr(self, "match_distance", None)
        if distance is None:
            weights = torch.ones(nnf.shape[0])
        else:
            scale = torch.quantile(distance[: min(len(distance), 200_000)], 0.75).clamp_min(1e-6)
            weights = torch.exp(-distance / (2 * scale))
        total = torch.zeros(nnf.shape[0], 3)
        norm = torch.zeros(nnf.shape[0])
        matched = _take(self.sources, nnf)
        reach = range(-self.options.vote_radius, self.options.vote_radius + 1)
        for dy in reach:
            for dx in reach:
                centre = self._neighbours(-dy, -dx)  # the patch centred at p - d covers p with its pixel d
                has = centre >= 0
                source = _take(matched, centre.clamp(min=0))
                flat = (source[:, 0] + dy) * self.width + (source[:, 1] + dx)
                weight = torch.where(has, _take(weights, centre.clamp(min=0)), 0.0) * (2.0 if dy == dx == 0 else 1.0)
                total.addcmul_(weight[:, None], _take(self.pixels, flat.clamp(0, len(self.pixels) - 1)))
                norm.add_(weight)
        return total / norm.clamp_min(1e-12)[:, None]

    def keep_low_frequencies(self, values: torch.Tensor) -> np.ndarray:
        """The voted values with their low frequencies replaced by the network's (the level's guide)."""
        image = self.pixels.clone()
        image[self.flat_targets] = values
        image_np = image.reshape(self.height, self.width, 3).numpy()
        low_now = cv2.GaussianBlur(image_np, (0, 0), self.options.keep_low).reshape(-1, 3)[self.flat_targets.numpy()]
        return values.numpy() + (self.guide_kept - low_now)

    def source_rows_cols(self, nnf: torch.Tensor) -> np.ndarray:
        return self.sources[nnf].numpy()


_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an index tensor of any shape into the first dimension (index_select is several times
    faster than advanced indexing on the CPU)."""
    return table.index_select(0, index.reshape(-1)).reshape(*index.shape, *table.shape[1:])
