"""Evaluate a PConvUNet against baselines with the paper's protocol (Liu et al. 2018, Table 1): the workflow of
``pconv-evaluate`` (its flags: :mod:`pconv_hf.cli.evaluate`).

Images: the first --num_images usable images of --data, center-cropped and resized to --resolution. Masks:
fixed irregular masks per hole-ratio bucket (0.01-0.1 ... 0.5-0.6), generated from --seed (or read from a
frozen folder with --masks), in two settings as in the paper: holes anywhere (border margin 0) and no holes
within --border_margin pixels of the border. Every image is evaluated with one mask of every bucket. The model is
scored twice: the bare network on the whole image (the paper's number) and, in the row after it, through
``inpaint()``'s default strategy as users call it (its windows, working scales and compositing; the same autocast
dtype). L1 / PSNR / SSIM and LPIPS (v0.1 AlexNet, lower is better; when its converted weights are present, see
scripts/fetch_feature_weights.sh; --no_lpips to skip) are computed on the composite by ``pconv_hf.metrics.evaluate``,
the function the training script uses for validation. Writes results.csv, results.json and comparison.png (masked
input | each method | ground truth).

A folder of images is read here; a Hub dataset id or a ``datasets`` folder streams through :mod:`pconv_hf.data`,
which needs the training extra (``datasets``) and is imported only then.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .images import BadImageError, center_crop_resize, decode_image, image_folder, to_tensor
from .inpainting import inpaint
from .masks import MaskFolder, bucket_index, fixed_masks, hole_ratio, save_mask_folder
from .metrics import eval_samples, evaluate, format_table, lpips_available, navier_stokes, shiftmap, telea
from .model import PConvUNet, autocast_dtype, compose, default_device, eval_mode
from .runtime import free_memory, parse_device
from .visualize import grid_samples, image_grid, masked_input

PROG = "pconv-evaluate"

BASELINES = {"telea": ("Telea", telea), "ns": ("Navier-Stokes", navier_stokes), "shiftmap": ("Shift-map", shiftmap)}


class Autocast(torch.nn.Module):
    """A model whose forward passes run under ``torch.autocast`` in ``dtype`` (output in float32)."""

    def __init__(self, model: PConvUNet, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype, self.sample_size = model, dtype, model.sample_size
        self.size_multiple = model.size_multiple

    def forward(self, image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast(image.device.type, dtype=self.dtype):
            return self.model(image, valid_mask).float()


class ThroughInpaint:
    """A model as users call it, as a ``model_fn``: every sample of a batch filled by ``inpaint(model, image, hole)``
    with ``options`` (none: the default strategy), where the hole is the valid mask's zeros."""

    def __init__(self, model: PConvUNet, **options) -> None:
        self.model, self.options = model, options

    def __call__(self, image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        holes = valid_mask.amin(dim=1) < 0.5  # (N, H, W): a pixel is valid only if every channel is
        return torch.stack([inpaint(self.model, one, hole, **self.options) for one, hole in zip(image, holes)])


def load_methods(args: argparse.Namespace, device: torch.device) -> dict:
    """Display name -> model_fn: the model first, then the model through ``inpaint()``'s default (the same
    autocast dtype), then the baselines in the order given."""
    dtype = autocast_dtype(getattr(args, "dtype", "float32"), device)

    def load(spec: str):
        model = PConvUNet.from_pretrained(spec, map_location=device)
        return model if dtype is None else Autocast(model, dtype)

    model = load(args.model)
    suffix = "" if dtype is None else f", {str(dtype).removeprefix('torch.')}"
    label = f"PConv ({Path(str(args.model)).name}{suffix})"
    methods = {label: model, f"{label} through inpaint()": ThroughInpaint(getattr(model, "model", model), dtype=dtype)}
    for spec in filter(None, (s.strip() for s in args.baselines.split(","))):
        if spec in BASELINES:
            name, function = BASELINES[spec]
            methods[name] = function
        elif spec.startswith("unet:"):
            other = load(spec.removeprefix("unet:"))
            kind = "Conv" if getattr(other, "model", other).conv_type == "plain" else "PConv"
            methods[f"{kind} U-Net ({Path(spec.removeprefix('unet:')).name})"] = other
        else:
            raise ValueError(f"unknown baseline {spec!r}; use telea, ns, shiftmap or unet:DIR")
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
            raise ValueError(f"no mask in {args.masks} has a hole ratio inside the paper's buckets")
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


def read_images(args: argparse.Namespace, resolution: int) -> tuple[list[torch.Tensor], list[str]]:
    """The first ``--num_images`` readable images of ``--data``, center-cropped and resized to ``resolution``;
    every file that cannot be read is named on stderr with the reason, and a short set is reported."""
    needed = args.num_images * 3 * resolution * resolution * 4
    available = free_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"--num_images {args.num_images} at --resolution {resolution} needs {needed / 2**30:.1f} GiB of memory; "
            f"this machine has {available / 2**30:.1f} GiB available: lower one of them"
        )
    images, ids, skipped = [], [], 0
    for image_id, undecoded in _undecoded_images(args):
        try:
            image = decode_image(undecoded, min_side=1)
        except BadImageError as err:
            skipped += 1
            print(f"{PROG}: skipped {image_id}: {err.reason} ({err})", file=sys.stderr)
            continue
        images.append(to_tensor(center_crop_resize(image, resolution)))
        ids.append(image_id)
        if len(images) == args.num_images:
            break
    if not images:
        raise ValueError(f"no readable image in {args.data}" + (f" ({skipped} skipped, see above)" if skipped else ""))
    if len(images) < args.num_images:
        print(
            f"{PROG}: only {len(images)} readable images in {args.data} (asked for {args.num_images})", file=sys.stderr
        )
    return images, ids


def _undecoded_images(args: argparse.Namespace) -> Iterator[tuple[str, Path | dict]]:
    """(identifier, undecoded image) of ``--data`` in order: the files of a folder of images (sorted paths), else
    the examples of a Hub dataset or ``datasets`` folder."""
    if files := image_folder(args.data):
        yield from ((str(file), file) for file in files)
        return
    # pconv_hf.data imports `datasets` (the training extra, heavy and optional): only a Hub id or a datasets
    # folder needs it, so pconv-evaluate on a folder of images runs with the package alone.
    try:
        from . import data
    except ImportError as err:
        raise ValueError(
            f"--data {args.data} is not a folder of images, and reading a Hub dataset or a datasets folder needs "
            f"the training extra (pip install 'pconv_hf[train]'): {err}"
        ) from err

    source = data.load_examples(args.data, split=args.split, config=args.dataset_config, image_column=args.image_column)
    for example in data.iter_examples(source):
        yield data.example_id(example), example["image"]


def run(args: argparse.Namespace) -> dict:
    """Evaluate with the settings of :func:`pconv_hf.cli.evaluate.parse_args`; returns setting -> method -> bucket
    -> metrics."""
    for flag, folder in (("--output_dir", args.output_dir), ("--save_masks", args.save_masks)):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise ValueError(f"{flag} {folder} is a file; name a folder")
    device = parse_device(args.device) or default_device()
    methods = load_methods(args, device)
    resolution = args.resolution or next(iter(methods.values())).sample_size

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
