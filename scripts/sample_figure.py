"""The model card's sample grid: held-out photos with holes of growing size, filled by each model and by OpenCV.

    python scripts/sample_figure.py --data data/heldout --models NEW_DIR OLD_DIR --out samples.png

Rows: ``--photos`` (file stems in ``--data``, center-cropped to the first model's size), row i with one fixed
irregular mask (seed ``--seed``) of hole-ratio bucket ``--first_bucket + i``. Columns: masked input | the first
model | OpenCV Telea | OpenCV Navier-Stokes | the other models | ground truth; every fill is the composite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pconv_hf import PConvUNet
from pconv_hf.data import load_eval_images
from pconv_hf.masks import HOLE_RATIO_BUCKETS, bucket_label, fixed_masks
from pconv_hf.metrics import navier_stokes, telea
from pconv_hf.model import compose
from pconv_hf.visualize import image_grid, masked_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder of held-out photos")
    parser.add_argument("--models", nargs="+", required=True, help="model folders; the first is the card's model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--photos", nargs="+", default=["astronaut", "brick", "camera", "chelsea"])
    parser.add_argument("--first_bucket", type=int, default=1, help="bucket index of the first row's hole")
    parser.add_argument("--seed", type=int, default=2026, help="mask seed (bench_quality's)")
    args = parser.parse_args()
    if args.first_bucket < 0 or args.first_bucket + len(args.photos) > len(HOLE_RATIO_BUCKETS):
        parser.error(
            f"--first_bucket {args.first_bucket} with {len(args.photos)} photos: needs buckets up to "
            f"{len(HOLE_RATIO_BUCKETS) - 1}"
        )

    models = [PConvUNet.from_pretrained(path).eval() for path in args.models]
    size = models[0].sample_size
    images, ids = load_eval_images(args.data, num_images=10_000, resolution=size)
    by_stem = {Path(name).stem: image for name, image in zip(ids, images)}
    missing = [name for name in args.photos if name not in by_stem]
    if missing:
        parser.error(f"--photos {' '.join(missing)}: not in {args.data} (has {', '.join(sorted(by_stem))})")
    masks = {bucket: valid for bucket, valid in fixed_masks(1, size, size, seed=args.seed)}

    rows = []
    for i, name in enumerate(args.photos):
        image = by_stem[name][None]
        valid = torch.from_numpy(masks[args.first_bucket + i])[None, None].float()
        with torch.inference_mode():
            fills = [model(image * valid, valid).float().clamp(0, 1) for model in models]
        fills[1:1] = [telea(image * valid, valid), navier_stokes(image * valid, valid)]
        rows.append(
            [masked_input(image[0], valid[0])] + [compose(image, valid, fill)[0] for fill in fills] + [image[0]]
        )
    image_grid(rows).save(args.out)
    buckets = ", ".join(bucket_label(HOLE_RATIO_BUCKETS[args.first_bucket + i]) for i in range(len(args.photos)))
    columns = ["masked", args.models[0], "Telea", "Navier-Stokes", *args.models[1:], "ground truth"]
    print(f"wrote {args.out}: columns {' | '.join(columns)}; rows {', '.join(args.photos)} (holes {buckets})")


if __name__ == "__main__":
    main()
