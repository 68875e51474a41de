"""Pictures for people: image grids (training samples, evaluation comparisons) and anomaly heat-map overlays."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .images import to_tensor
from .model import compose, eval_mode

GRID_COLUMNS = ("masked input", "hole mask", "output", "composite", "ground truth")


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
    grid = np.full((len(rows) * (height + padding) + padding, columns * (width + padding) + padding, 3), 255, np.uint8)
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
    with eval_mode(model):
        images = torch.stack([image for image, _ in samples]).to(device)
        valid_masks = torch.stack([mask for _, mask in samples]).to(device)
        output = model(images * valid_masks, valid_masks).float().clamp(0, 1)
    composite = compose(images, valid_masks, output)
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
    overlay = to_tensor(heatmap_overlay(image, heatmap, vmax))
    return image_grid([[image, reconstruction, overlay]])
