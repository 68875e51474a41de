"""Crops at 100 % zoom of fills at a photo's own size: the old default (crop windows at 256 px), the native
strategy with the network's fill alone and with the texture stage (``texture=True``), OpenCV Telea (diffusion)
and OpenCV shift-map (exemplar), beside the original.

    python scripts/native_figure.py --photo data/photos-full/holdout/<photo>.jpg --out native-crops.png \
        [--kind stroke --bucket 0.01,0.05 --seed 3 --crop 480]

One object-removal mask (``pconv_hf.masks.object_mask``) is drawn on the photo; the figure shows a ``--crop``-px
square around the hole's centre, unscaled, in six panels: original with the hole outlined | crop 256 | native,
network only | native + texture | Telea | shift-map. Prints each fill's PSNR on the hole and LPIPS on its box.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from PIL import Image

import pconv_hf
from pconv_hf.evaluation_native import hole_metrics
from pconv_hf.images import open_image
from pconv_hf.masks import OBJECT_KINDS, object_mask
from pconv_hf.metrics import shiftmap_fill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default=None, help="saved model (default: the bundled one)")
    parser.add_argument("--kind", default="stroke", choices=OBJECT_KINDS)
    parser.add_argument("--bucket", default="0.01,0.05", help="hole ratio low,high")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--crop", type=int, default=480, help="side of the 100 %% crop, in pixels")
    args = parser.parse_args()

    photo = np.asarray(open_image(args.photo).convert("RGB"))
    height, width = photo.shape[:2]
    low, high = (float(v) for v in args.bucket.split(","))
    hole = object_mask(height, width, args.kind, (low, high), np.random.default_rng(args.seed)) == 0
    mask = hole.view(np.uint8) * 255
    model = pconv_hf.load_model(args.model)
    fills = {
        "crop 256 (old default)": np.asarray(model.inpaint(photo, mask, strategy="crop", texture=False)),
        "native, network only": np.asarray(model.inpaint(photo, mask, texture=False)),
        "native + texture": np.asarray(model.inpaint(photo, mask, texture=True)),
        "OpenCV Telea": cv2.inpaint(photo, mask, 3, cv2.INPAINT_TELEA),
        "OpenCV shift-map": shiftmap_fill(photo, hole),
    }
    for name, fill in fills.items():
        scores = hole_metrics(fill, photo, hole)
        print(f"{name}: PSNR on the hole {scores['psnr']:.2f} dB, LPIPS on its box {scores['lpips']:.4f}")

    # The crop: centred on the hole pixel farthest from the known ones (the middle of the widest part).
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    row, col = np.unravel_index(int(distance.argmax()), distance.shape)
    side = min(args.crop, height, width)
    top = int(np.clip(row - side // 2, 0, height - side))
    left = int(np.clip(col - side // 2, 0, width - side))
    window = (slice(top, top + side), slice(left, left + side))
    outlined = photo[window].copy()
    contours, _ = cv2.findContours(mask[window].copy(), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(outlined, contours, -1, (255, 0, 255), 2)
    panels = [outlined] + [fill[window] for fill in fills.values()]
    gap = np.full((side, 8, 3), 255, np.uint8)
    row_pixels = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    Image.fromarray(row_pixels).save(args.out)
    print(f"{args.out}: original (hole outlined) | {' | '.join(fills)}; {side}x{side} px at 100 %")


if __name__ == "__main__":
    main()
