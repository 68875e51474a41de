"""``pconv-evaluate``: a model against baselines, by the paper's protocol (:mod:`pconv_hf.evaluation`) or on photos
at their own size (``--protocol native``, :mod:`pconv_hf.evaluation_native`).

    pconv-evaluate --model OUT --data DIR_OR_HUB_ID [--baselines telea,ns,unet:DIR] [--output_dir DIR]
    pconv-evaluate --protocol native --data DIR [DIR ...] --output_dir OUT [--model DIR]
    python evaluate.py ...                               # the same, from a checkout

Runs without the training extra on a folder of images; a Hub dataset id or a ``datasets`` folder as ``--data``
needs ``datasets`` (``pip install 'pconv_hf[train]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import evaluation, evaluation_native
from ..evaluation import PROG
from ..evaluation_native import BASELINES, model_fill, parse_inpaint_options
from . import common
from .common import add_runtime_arguments, int_range

NATIVE_PROG = "pconv-evaluate --protocol native"

PROTOCOLS = ("paper", "native")
DESCRIPTION = (
    "Evaluate a PConvUNet against baselines with the paper's protocol (Liu et al. 2018, Table 1): the bare network, "
    "and in the next row the same model through inpaint()'s default strategy, as users call it."
)


def main(argv: list[str] | None = None) -> None:
    """The command line (``sys.argv[1:]`` when None): exit status 0 on success (the results are in
    ``--output_dir``; :func:`pconv_hf.evaluation.run` returns them to code). A problem the user can fix ends the
    program with a one-line message and exit status 1. ``--protocol native`` runs
    :mod:`pconv_hf.evaluation_native` instead."""
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--protocol", choices=PROTOCOLS, default="paper")
    if chooser.parse_known_args(argv)[0].protocol == "native":
        native_args = parse_native_args(argv)
        common.run(NATIVE_PROG, lambda: run_native(native_args))
        return
    args = parse_args(argv)
    common.run(PROG, lambda: evaluation.run(args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="paper",
        help="paper: 256-px crops with the paper's irregular masks (this page); native: photos at their own size "
        "with object-removal masks (see `pconv-evaluate --protocol native --help`).",
    )
    parser.add_argument("--model", required=True, help="Saved PConvUNet folder or Hub id.")
    parser.add_argument("--data", required=True, help="Folder of images (sorted), datasets folder or Hub dataset id.")
    parser.add_argument(
        "--split", default="validation", help="Split of a Hub / datasets source (ignored for plain image folders)."
    )
    parser.add_argument("--dataset_config", default=None, help="Dataset configuration name (Hub datasets).")
    parser.add_argument("--image_column", default=None, help="Image column (auto-detected when omitted).")
    parser.add_argument(
        "--baselines",
        default="telea,ns",
        help="Comma-separated: telea, ns (OpenCV Navier-Stokes), shiftmap (OpenCV's exemplar fill: seconds per "
        "image, far slower than the rest), unet:DIR (another saved model, e.g. the plain-convolution baseline); "
        "'' for none.",
    )
    parser.add_argument(
        "--resolution",
        type=int_range(32, 4096, "pixels; the evaluation set is held in memory at this size"),
        default=None,
        help="Evaluation size (default: the model's sample_size, 256 for the paper's 256 px model).",
    )
    parser.add_argument("--num_images", type=int_range(1, 1_000_000), default=100, help="Images to evaluate.")
    parser.add_argument(
        "--masks_per_bucket",
        type=int_range(1, 1_000_000),
        default=None,
        help="Distinct masks per bucket (default: "
        "--num_images x --masks_per_image, so every sample gets its own mask).",
    )
    parser.add_argument(
        "--masks_per_image",
        type=int_range(1, 1000),
        default=1,
        help="Masks per image and bucket: more samples per bucket (less noise) from few images.",
    )
    parser.add_argument(
        "--border_margin",
        type=int_range(0, 2048, "pixels"),
        default=None,
        help="Only this setting (pixels without "
        "holes at the border; 0 = holes anywhere). Default: both 0 and resolution // 16.",
    )
    parser.add_argument(
        "--masks",
        default=None,
        help="Frozen mask folder (white = hole) instead of generating; files are binned by their measured hole ratio.",
    )
    parser.add_argument(
        "--save_masks",
        default=None,
        help="Write the generated masks here (one subfolder per "
        "border setting) to freeze them for later runs with --masks.",
    )
    parser.add_argument("--output_dir", default="eval_results", help="Where results.csv/json and the grid go.")
    parser.add_argument("--seed", type=int, default=0, help="Mask seed (0 = the training validation masks).")
    parser.add_argument("--batch_size", type=int_range(1, 4096), default=16, help="Images per forward pass.")
    parser.add_argument("--num_grid_images", type=int_range(1, 64), default=4, help="Rows of comparison.png.")
    # Metrics are always computed in float32; --dtype is the autocast dtype of the PConv models' forward passes
    # (the inpaint() row's too).
    add_runtime_arguments(parser, dtype_default="float32")
    parser.add_argument(
        "--no_lpips",
        action="store_true",
        help="Skip LPIPS (by default computed when its converted weights are present).",
    )
    return parser.parse_args(argv)


# --- --protocol native ------------------------------------------------------------------------------------------


def parse_native_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=NATIVE_PROG,
        description=evaluation_native.__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--protocol", choices=["native"], default="native", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help="saved PConvUNet folder or Hub id (default: the bundled model)")
    parser.add_argument("--data", nargs="+", required=True, help="folders of held-out photos at their own size")
    parser.add_argument("--output_dir", required=True, help="gets masks/ (unless --masks), rows, summary, table")
    parser.add_argument("--masks", default=None, help="a mask folder written by an earlier run, to compare on")
    parser.add_argument("--masks_per_bucket", type=int, default=1, help="masks per photo and hole-ratio bucket")
    parser.add_argument("--seed", type=int, default=2026, help="mask seed")
    parser.add_argument(
        "--baselines",
        default="telea,ns,shiftmap",
        help="comma-separated: telea, ns, shiftmap (OpenCV's exemplar fill, tens of seconds per fill), unet:DIR; "
        "'' for none",
    )
    parser.add_argument("--inpaint_options", default="", help="inpaint() options for the model, key=value,...")
    parser.add_argument("--no_lpips", action="store_true", help="skip LPIPS")
    add_runtime_arguments(parser)
    return parser.parse_args(argv)


def native_methods(args: argparse.Namespace) -> dict:
    """The fills ``--model``, ``--baselines`` and ``--inpaint_options`` name, by display name."""
    options = {**parse_inpaint_options(args.inpaint_options), "dtype": args.dtype}
    methods = {"PConvUNet": model_fill(common.model_from_flag(args.model, args.device), **options)}
    for spec in filter(None, (part.strip() for part in args.baselines.split(","))):
        if spec.startswith("unet:"):
            other = common.model_from_flag(spec[5:], args.device, flag="--baselines unet:")
            methods[Path(spec[5:]).name] = model_fill(other, **options)
        elif spec in BASELINES:
            label, fill = BASELINES[spec]
            methods[label] = fill
        else:
            raise ValueError(f"--baselines: unknown method {spec!r}; use telea, ns, shiftmap or unet:DIR")
    return methods


def run_native(args: argparse.Namespace) -> dict:
    """``--protocol native`` as ``args`` say: results in ``--output_dir``, the table printed, the summary returned."""
    summary, table = evaluation_native.evaluate(
        native_methods(args),
        args.data,
        args.output_dir,
        masks=args.masks,
        masks_per_bucket=args.masks_per_bucket,
        seed=args.seed,
        with_lpips=False if args.no_lpips else None,
    )
    print(table)
    return summary


if __name__ == "__main__":
    main()
