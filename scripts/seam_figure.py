"""Before/after crops of the hole edge: one slanted brush stroke over scikit-image photos, filled by each model.

    python scripts/seam_figure.py --models OLD_DIR NEW_DIR --names "before" "after" --out seams.png

Rows: photos. Columns: masked input, each model, OpenCV Telea, ground truth; each a crop around the stroke's
edge, enlarged 3x with nearest-neighbour so single pixels show (the dotted line of the paper's last layer).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from pconv_hf import PConvUNet
from pconv_hf.metrics import telea
from pconv_hf.seams import stroke_masks
from pconv_hf.visualize import image_grid, masked_input

PHOTOS = ("astronaut", "coffee", "chelsea")


def photo(name: str, size: int) -> torch.Tensor:
    from skimage import data

    pixels = getattr(data, name)()
    pixels = np.stack([pixels] * 3, -1) if pixels.ndim == 2 else pixels[..., :3]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()[None] / 255
    side = min(tensor.shape[-2:])
    top, left = (tensor.shape[-2] - side) // 2, (tensor.shape[-1] - side) // 2
    return torch.nn.functional.interpolate(tensor[..., top : top + side, left : left + side], size=size, mode="area")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--names", nargs="+", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--angle", type=float, default=23.0)
    parser.add_argument("--width", type=int, default=25)
    parser.add_argument("--zoom", type=int, default=3)
    args = parser.parse_args()
    models = [PConvUNet.from_pretrained(path).eval() for path in args.models]
    size = models[0].sample_size
    valid = stroke_masks(size, angles=(args.angle,), widths=(args.width,))
    rows = []
    # A 64-px window on the stroke's upper edge, a quarter of the way along it.
    centre = size // 2
    dx, dy = 0.2 * size * np.cos(np.radians(args.angle)), 0.2 * size * np.sin(np.radians(args.angle))
    top = int(centre - dy - args.width / 2 - 24)
    left = int(centre - dx - 32)
    window = (slice(max(top, 0), max(top, 0) + 64), slice(max(left, 0), max(left, 0) + 64))
    for name in PHOTOS:
        image = photo(name, size)
        cells = [masked_input(image[0], valid[0])]
        with torch.inference_mode():
            for model in models:
                output = model(image * valid, valid).float().clamp(0, 1)
                cells.append((valid * image + (1 - valid) * output)[0])
        cells.append((valid * image + (1 - valid) * telea(image * valid, valid))[0])
        cells.append(image[0])
        rows.append([cell[:, window[0], window[1]] for cell in cells])
    grid = image_grid(rows, padding=1)
    grid = grid.resize((grid.width * args.zoom, grid.height * args.zoom), Image.Resampling.NEAREST)
    grid.save(args.out)
    names = args.names or args.models
    print(f"wrote {args.out}: columns masked | {' | '.join(names)} | Telea | ground truth; rows {', '.join(PHOTOS)}")


if __name__ == "__main__":
    main()
