"""Quality at a photo's own size: inpaint() variants beside OpenCV, side by side in one run, with the targets.

    python benchmarks/bench_native.py --model pconv_hf/checkpoints/pconv-photos-256 \
        --data data/photos-full/holdout data/photos-full/validation --masks runs/native-masks \
        --variant default --variant crop256:strategy=crop --variant crop1024:strategy=crop,resolution=1024

The native-size protocol (``pconv_hf.evaluation_native``): every photo at its own size, object-removal masks per
hole-ratio bucket (saved to --masks on the first run, read back later so runs compare), PSNR of the hole pixels,
SSIM / LPIPS of the hole's box, seconds per fill. ``--variant NAME[:key=value,...]`` adds ``inpaint()`` with
those options (``default`` = no options); ``--compare DIR`` adds another saved model with the default options.
OpenCV's diffusion fills (Telea, Navier-Stokes) and its exemplar fill (shift-map, ``--no_shiftmap`` leaves it out:
it costs 5-30 s a fill on 2 cores, more than everything else together; ``--reuse_rows`` takes the OpenCV rows of an
earlier run on the same masks instead) run beside them. The report gives every
cell per size class and per mask kind (stroke, blob, silhouette), and the margins over the better diffusion fill
and over shift-map.

Targets (issue 30, every bucket up to 20 % for blobs and silhouettes, up to 15 % for strokes): LPIPS at least 10 %
below shift-map's; PSNR at least 0.5 dB above the better of Telea / NS and SSIM at least theirs. (Issue 20's, every
bucket up to 15 % in every size class: PSNR >= the better of Telea / NS + 1 dB, SSIM higher than both, LPIPS at
least 10 % lower than the better of them.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pconv_hf import PConvUNet
from pconv_hf.evaluation_native import (
    BASELINES,
    CLASSICAL,
    EXEMPLAR,
    list_photos,
    make_cases,
    model_fill,
    parse_inpaint_options,
    read_cases,
    read_rows,
    report,
    run_protocol,
    write_results,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="saved PConvUNet folder")
    parser.add_argument("--compare", nargs="*", default=[], help="more saved models, default options")
    parser.add_argument("--data", nargs="+", required=True, help="folders of held-out photos at their own size")
    parser.add_argument("--masks", required=True, help="mask folder: written on the first run, read afterwards")
    parser.add_argument("--masks_per_bucket", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--variant", action="append", default=[], help="NAME[:key=value,...] (repeatable)")
    parser.add_argument("--output_dir", default=None, help="write rows, summary and table here")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max_photos", type=int, default=None, help="only the first N photos (a quick look)")
    parser.add_argument("--kinds", default=None, help="only these mask kinds, comma-separated (a quick look)")
    parser.add_argument("--no_shiftmap", action="store_true", help="leave out OpenCV's shift-map (the slow one)")
    parser.add_argument(
        "--reuse_rows",
        default=None,
        help="an earlier run's native_rows.csv (same --masks): its OpenCV rows are reused instead of run again",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = list_photos(args.data)[: args.max_photos]
    masks = Path(args.masks)
    cases = (
        read_cases(photos, masks)
        if masks.is_dir() and any(masks.glob("*.png"))
        else make_cases(photos, masks, masks_per_bucket=args.masks_per_bucket, seed=args.seed)
    )
    if args.kinds:
        cases = [case for case in cases if case.kind in args.kinds.split(",")]
    model = PConvUNet.from_pretrained(args.model).eval()
    methods = {}
    for spec in args.variant or ["default"]:
        name, _, options = spec.partition(":")
        methods[name] = model_fill(model, **parse_inpaint_options(options))
    for other in args.compare:
        methods[Path(other).name] = model_fill(PConvUNet.from_pretrained(other).eval())
    for label, fill in BASELINES.values():
        if not (args.no_shiftmap and label in EXEMPLAR):
            methods[label] = fill
    print(f"{len(photos)} photos, {len(cases)} masks, methods: {', '.join(methods)}", file=sys.stderr)
    reuse = read_rows(args.reuse_rows, CLASSICAL) if args.reuse_rows else None
    rows = run_protocol(methods, cases, reuse=reuse)
    summary, by_kind, table = report(rows)
    print(table)
    if args.output_dir:
        write_results(rows, summary, args.output_dir, table, by_kind)


if __name__ == "__main__":
    main()
