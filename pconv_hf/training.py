"""Helpers shared by ``train_accelerate.py`` and ``evaluate.py``: loss-weight schedule, validation on a fixed
set (through ``pconv_hf.metrics.evaluate``, the one evaluation code path) and image grids."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .losses import LossWeights
from .metrics import evaluate

GRID_COLUMNS = ("masked input", "hole mask", "output", "composite", "ground truth")


def loss_weights_at(
    step: int, weights: LossWeights, style_initial: float | None = None, style_warmup_steps: int = 0
) -> LossWeights:
    """The loss weights for optimizer step ``step`` (0-based): ``style_initial`` replaces the style weight for
    the first ``style_warmup_steps`` steps (two-stage style schedule), ``weights`` apply afterwards."""
    if style_initial is not None and step < style_warmup_steps:
        return dataclasses.replace(weights, style=style_initial)
    return weights


def flatten_metrics(results: dict[str, dict[str, float]], prefix: str = "val") -> dict[str, float]:
    """``evaluate`` output -> ``{"val/psnr/0.01-0.1": ..., "val/psnr/all": ...}`` for trackers.

    Counts are left out; LPIPS is included when ``results`` has it.
    """
    return {
        f"{prefix}/{metric}/{bucket}": float(row[metric])
        for bucket, row in results.items()
        for metric in ("l1", "psnr", "ssim", "lpips")
        if metric in row
    }


def validate(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor],
    samples: Sequence[tuple[Tensor, Tensor]],
    *,
    device: torch.device | str | None = None,
    batch_size: int = 8,
    progress: bool = False,
    lpips: bool | None = None,
) -> dict[str, dict[str, float]]:
    """L1 / PSNR / SSIM (and LPIPS) per hole-ratio bucket on fixed (image, valid mask) samples: ``metrics.evaluate``.

    ``lpips``: None computes LPIPS when its converted weights are present, True always, False never.
    """
    return evaluate(model, samples, batch_size=batch_size, device=device, progress=progress, lpips=lpips)


def _to_rgb_cell(tensor: Tensor) -> np.ndarray:
    """(3|1, H, W) in [0, 1] -> (H, W, 3) uint8."""
    tensor = tensor.detach().float().clamp(0, 1).cpu()
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    return (tensor.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def image_grid(rows: Sequence[Sequence[Tensor]], padding: int = 2) -> Image.Image:
    """Tile (3|1, H, W) tensors in [0, 1] into one RGB image, row by row, with white padding."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one row with one image")
    height, width = rows[0][0].shape[-2:]
    columns = max(len(row) for row in rows)
    grid = np.full(
        (len(rows) * (height + padding) + padding, columns * (width + padding) + padding, 3), 255, np.uint8
    )
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = _to_rgb_cell(cell)
    return Image.fromarray(grid)


@torch.no_grad()
def masked_input(image: Tensor, valid_mask: Tensor) -> Tensor:
    """What the network sees, for display: holes painted white."""
    return image * valid_mask + (1 - valid_mask)


@torch.no_grad()
def sample_grid(
    model: nn.Module, samples: Sequence[tuple[Tensor, Tensor]], device: torch.device | str | None = None
) -> Image.Image:
    """Rows of masked input | mask | output | composite | ground truth for (image, valid mask) samples.

    The mask column shows holes in white, like mask files; the masked input has its holes painted white.
    """
    was_training = model.training
    model.eval()
    try:
        images = torch.stack([image for image, _ in samples]).to(device)
        valid_masks = torch.stack([mask for _, mask in samples]).to(device)
        output = model(images * valid_masks, valid_masks).float().clamp(0, 1)
    finally:
        model.train(was_training)
    composite = valid_masks * images + (1 - valid_masks) * output
    rows = [
        [masked_input(images[i], valid_masks[i]), 1 - valid_masks[i], output[i], composite[i], images[i]]
        for i in range(len(samples))
    ]
    return image_grid(rows)


def grid_samples(samples: Sequence[tuple[Tensor, Tensor]], num_images: int, rows: int = 6) -> list:
    """A few samples for the grid from ``eval_samples`` output (bucket-major, ``num_images`` per bucket):
    image i with bucket i % 6, so the rows show different images and hole sizes."""
    num_buckets = max(len(samples) // max(num_images, 1), 1)
    picked = []
    for i in range(min(rows, num_images)):
        index = (i % num_buckets) * num_images + i
        if index < len(samples):
            picked.append(samples[index])
    return picked
