"""Evaluate a PConvUNet against baselines with the paper's protocol (Liu et al. 2018, Table 1).

    pconv-evaluate --model OUT --data DIR_OR_HUB_ID [--baselines telea,ns,unet:DIR] [--output_dir DIR]
    python evaluate.py ...                               # the same, from a checkout

Images: the first --num_images usable images of --data, center-cropped and resized to --resolution. Masks:
fixed irregular masks per hole-ratio bucket (0.01-0.1 ... 0.5-0.6), generated from --seed (or read from a
frozen folder with --masks), in two settings as in the paper: holes anywhere (border margin 0) and no holes
within --border_margin pixels of the border. Every image is evaluated with one mask of every bucket. L1 / PSNR
/ SSIM and LPIPS (v0.1 AlexNet, lower is better; when its converted weights are present, see
scripts/fetch_feature_weights.sh; --no_lpips to skip) are computed on the composite by ``pconv_hf.metrics.evaluate``,
the function the training script uses for validation. Writes results.csv, results.json and comparison.png (masked
input | each method | ground truth).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import _cli, evaluation_native
from ._cli import CliError
from .data import eval_samples, example_id, iter_examples, load_examples
from .images import BadImageError, center_crop_resize, decode_image, to_tensor
from .masks import MaskFolder, bucket_index, fixed_masks, hole_ratio, save_mask_folder
from .metrics import evaluate, format_table, lpips_available, navier_stokes, telea
from .model import PConvUNet, autocast_dtype, compose, default_device, eval_mode
from .visualize import grid_samples, image_grid, masked_input

PROG = "pconv-evaluate"
PROTOCOLS = ("paper", "native")

BASELINES = {"telea": ("Telea", telea), "ns": ("Navier-Stokes", navier_stokes)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
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
        help="Comma-separated: telea, ns (OpenCV Navier-Stokes), "
        "unet:DIR (another saved model, e.g. the plain-convolution baseline); '' for none.",
    )
    parser.add_argument(
        "--resolution",
        type=_cli.int_range(32, 4096, "pixels; the evaluation set is held in memory at this size"),
        default=None,
        help="Evaluation size (default: the model's sample_size, 256 for the paper's 256 px model).",
    )
    parser.add_argument("--num_images", type=_cli.int_range(1, 1_000_000), default=100, help="Images to evaluate.")
    parser.add_argument(
        "--masks_per_bucket",
        type=_cli.int_range(1, 1_000_000),
        default=None,
        help="Distinct masks per bucket (default: "
        "--num_images x --masks_per_image, so every sample gets its own mask).",
    )
    parser.add_argument(
        "--masks_per_image",
        type=_cli.int_range(1, 1000),
        default=1,
        help="Masks per image and bucket: more samples per bucket (less noise) from few images.",
    )
    parser.add_argument(
        "--border_margin",
        type=_cli.int_range(0, 2048, "pixels"),
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
    parser.add_argument("--batch_size", type=_cli.int_range(1, 4096), default=16, help="Images per forward pass.")
    parser.add_argument("--num_grid_images", type=_cli.int_range(1, 64), default=4, help="Rows of comparison.png.")
    # Metrics are always computed in float32; --dtype is the autocast dtype of the PConv models' forward passes.
    _cli.add_runtime_arguments(parser, dtype_default="float32")
    parser.add_argument(
        "--no_lpips",
        action="store_true",
        help="Skip LPIPS (by default computed when its converted weights are present).",
    )
    return parser.parse_args(argv)


class Autocast(torch.nn.Module):
    """A model whose forward passes run under ``torch.autocast`` in ``dtype`` (output in float32)."""

    def __init__(self, model: PConvUNet, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype, self.sample_size = model, dtype, model.sample_size
        self.size_multiple = model.size_multiple

    def forward(self, image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast(image.device.type, dtype=self.dtype):
            return self.model(image, valid_mask).float()


def load_methods(args: argparse.Namespace, device: torch.device) -> dict:
    """Display name -> model_fn: the model first, then the baselines in the order given."""
    dtype = autocast_dtype(getattr(args, "dtype", "float32"), device)

    def load(spec: str):
        model = PConvUNet.from_pretrained(spec, map_location=device)
        return model if dtype is None else Autocast(model, dtype)

    model = load(args.model)
    suffix = "" if dtype is None else f", {str(dtype).removeprefix('torch.')}"
    methods = {f"PConv ({Path(str(args.model)).name}{suffix})": model}
    for spec in filter(None, (s.strip() for s in args.baselines.split(","))):
        if spec in BASELINES:
            name, function = BASELINES[spec]
            methods[name] = function
        elif spec.startswith("unet:"):
            other = load(spec.removeprefix("unet:"))
            kind = "Conv" if getattr(other, "model", other).conv_type == "plain" else "PConv"
            methods[f"{kind} U-Net ({Path(spec.removeprefix('unet:')).name})"] = other
        else:
            raise CliError(f"unknown baseline {spec!r}; use telea, ns or unet:DIR")
    return methods


def mask_settings(args: argparse.Namespace, resolution: int, count: int) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Setting name -> (bucket index, valid mask) pairs."""
    if args.masks:
        folder = MaskFolder(args.masks, size=(resolution, resolution))
        loaded = []
        for valid_mask in (folder[i] for i in range(len(folder))):
            index = bucket_index(hole_ratio(valid_mask))
            if index is not None:
                loaded.append((index, valid_mask))
        if not loaded:
            raise CliError(f"no mask in {args.masks} has a hole ratio inside the paper's buckets")
        return {f"masks from {args.masks}": loaded}
    margins = [args.border_margin] if args.border_margin is not None else [0, resolution // 16]
    settings = {}
    for margin in margins:
        masks = fixed_masks(count, resolution, resolution, args.seed, border_margin=margin)
        if args.save_masks:
            save_mask_folder(masks, Path(args.save_masks) / f"border-{margin}")
        settings[f"border margin {margin} px" + (" (holes anywhere)" if margin == 0 else "")] = masks
    return settings


def comparison_grid(methods: dict, samples: list, device: torch.device):
    """Rows: masked input | composite of each method | ground truth."""
    images = torch.stack([image for image, _ in samples]).to(device)
    valid_masks = torch.stack([mask for _, mask in samples]).to(device)
    columns = [masked_input(images, valid_masks)]
    for model_fn in methods.values():
        with eval_mode(model_fn), torch.inference_mode():
            output = model_fn(images * valid_masks, valid_masks).float().clamp(0, 1)
        columns.append(compose(images, valid_masks, output))
    columns.append(images)
    return image_grid([[column[i] for column in columns] for i in range(len(samples))])


def main(argv: list[str] | None = None) -> None:
    """The command line (``sys.argv[1:]`` when None): exit status 0 on success (the results are in
    ``--output_dir``; :func:`run` returns them to code). A problem the user can fix ends the program with a
    one-line message and exit status 1. ``--protocol native`` runs :mod:`pconv_hf.evaluation_native` instead."""
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--protocol", choices=PROTOCOLS, default="paper")
    if chooser.parse_known_args(argv)[0].protocol == "native":
        evaluation_native.main(argv)
        return
    args = parse_args(argv)
    _cli.run(PROG, lambda: run(args))


def read_images(args: argparse.Namespace, resolution: int) -> tuple[list[torch.Tensor], list[str]]:
    """The first ``--num_images`` readable images of ``--data``, center-cropped and resized to ``resolution``;
    every file that cannot be read is named on stderr with the reason, and a short set is reported."""
    needed = args.num_images * 3 * resolution * resolution * 4
    available = _cli.free_memory()
    if available is not None and needed > available:
        raise CliError(
            f"--num_images {args.num_images} at --resolution {resolution} needs {needed / 2**30:.1f} GiB of memory; "
            f"this machine has {available / 2**30:.1f} GiB available: lower one of them"
        )
    source = load_examples(args.data, split=args.split, config=args.dataset_config, image_column=args.image_column)
    images, ids, skipped = [], [], 0
    for example in iter_examples(source):
        try:
            image = decode_image(example["image"], min_side=1)
        except BadImageError as err:
            skipped += 1
            print(f"{PROG}: skipped {example_id(example)}: {err.reason} ({err})", file=sys.stderr)
            continue
        images.append(to_tensor(center_crop_resize(image, resolution)))
        ids.append(example_id(example))
        if len(images) == args.num_images:
            break
    if not images:
        raise CliError(f"no readable image in {args.data}" + (f" ({skipped} skipped, see above)" if skipped else ""))
    if len(images) < args.num_images:
        print(
            f"{PROG}: only {len(images)} readable images in {args.data} (asked for {args.num_images})", file=sys.stderr
        )
    return images, ids


def run(args: argparse.Namespace) -> dict:
    """Evaluate with the settings of :func:`parse_args`; returns setting -> method -> bucket -> metrics."""
    for flag, folder in (("--output_dir", args.output_dir), ("--save_masks", args.save_masks)):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise CliError(f"{flag} {folder} is a file; name a folder")
    device = _cli.parse_device(args.device) or default_device()
    methods = load_methods(args, device)
    resolution = args.resolution or next(iter(methods.values())).sample_size
    for name, method in methods.items():
        if isinstance(method, (PConvUNet, Autocast)) and resolution % method.size_multiple:
            raise CliError(f"--resolution {resolution} is not a multiple of {method.size_multiple} ({name})")

    images, ids = read_images(args, resolution)
    # Sample i of a bucket is image i % N with the bucket's mask i % masks_per_bucket.
    repeated = images * args.masks_per_image
    settings = mask_settings(args, resolution, args.masks_per_bucket or len(repeated))
    print(
        f"{len(images)} images from {args.data} at {resolution} px, {args.masks_per_image} mask(s) per image and "
        f"bucket; {len(methods)} methods; settings: {', '.join(settings)}",
        file=sys.stderr,
    )
    with_lpips = not args.no_lpips and lpips_available()
    if not args.no_lpips and not with_lpips:
        print(
            "LPIPS skipped: its weights are not converted yet (bash scripts/fetch_feature_weights.sh)", file=sys.stderr
        )

    results: dict[str, dict[str, dict]] = {}
    for setting, masks in settings.items():
        samples = eval_samples(repeated, masks)
        results[setting] = {}
        for name, method in methods.items():
            print(f"[{setting}] {name}", file=sys.stderr)
            results[setting][name] = evaluate(
                method, samples, device=device, batch_size=args.batch_size, progress=True, lpips=with_lpips
            )
        print(f"\n### {setting}\n\n{format_table(results[setting])}\n")

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "results.csv", "w", newline="") as file:
        writer = csv.writer(file)
        columns = ["count", "l1", "psnr", "ssim"] + (["lpips"] if with_lpips else [])
        writer.writerow(["setting", "method", "bucket", *columns])
        for setting, by_method in results.items():
            for name, by_bucket in by_method.items():
                for bucket, row in by_bucket.items():
                    writer.writerow([setting, name, bucket, *(row[column] for column in columns)])
    meta = {
        "model": str(args.model),
        "data": str(args.data),
        "resolution": resolution,
        "seed": args.seed,
        "masks_per_image": args.masks_per_image,
        "images": ids,
    }
    (output_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    first_samples = eval_samples(images, next(iter(settings.values())))
    grid = comparison_grid(methods, grid_samples(first_samples, len(images), args.num_grid_images), device)
    grid.save(output_dir / "comparison.png")
    print(
        f"wrote {output_dir / 'results.csv'}, results.json and comparison.png "
        f"(columns: masked input | {' | '.join(methods)} | ground truth)",
        file=sys.stderr,
    )
    return results


if __name__ == "__main__":
    main()
