"""``pconv-inpaint``: fill the white area of a mask in a photo, for one file or a whole folder.

    pconv-inpaint --image photo.jpg --mask photo_mask.png -o filled.png
    pconv-inpaint --image photos/ --mask masks/ -o filled/          # masks matched by file stem
    pconv-inpaint --image photos/ --mask masks/ -o filled/ --skip_existing   # rerun: only what is not done
    pconv-inpaint --image photos/ --mask watermark.png -o filled/   # one mask for every photo of a series
    pconv-inpaint --image photo.jpg --mask photo_mask.png -o filled.png --texture   # detail from the photo itself

Masks are white / nonzero = area to fill (transparent pixels of a mask with alpha never fill). In folder mode
the mask of ``photos/beach.jpg`` is ``masks/beach.<ext>`` or ``masks/beach_mask.<ext>`` (any image extension);
when photos and masks share one folder, only the ``_mask`` form is used; a mask *file* with a photo folder is the
mask of every photo (each must have its size). Inputs are never overwritten. ``--texture`` / ``--no-texture`` and
``--seed`` are ``inpaint(texture=..., seed=...)`` (defaults: inpaint()'s own): after the network fills, the hole's
fine detail is copied from the photo's own known pixels.

Outputs are written by :func:`pconv_hf.images.save_image`: the photo's ICC profile and EXIF (orientation reset,
thumbnail dropped) are kept in PNG, JPEG, WebP and TIFF, every mode change is printed as a note, and a file is
complete or absent. In folder mode a photo that fails (unreadable, truncated, wrong mask size, ...) does not stop
the run: every other photo is processed, the failures are listed at the end and the exit status is 1. Ctrl+C
stops a run with exit status 130 and says how many results were written (each complete); ``--skip_existing`` then
does the rest. A multi-frame photo (animated GIF / PNG / WebP, multi-page TIFF) is filled in its first frame only,
with a warning. 16-bit colour (RGB / RGBA PNG or TIFF) keeps its 16 bits in a PNG or TIFF output (a JPEG / WebP
output is 8-bit, with a note); 16-bit grey keeps them too.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
import warnings
from pathlib import Path
from typing import get_args

import numpy as np
from tqdm import tqdm

from ..engines import choose_engine
from ..images import (
    IMAGE_SUFFIXES,
    WRITE_FORMATS,
    check_quality,
    displayed_size,
    list_images,
    open_full_depth,
    save_image,
)
from ..inpainting import Strategy, inpaint
from . import common
from .common import CliError, add_runtime_arguments, model_from_flag

MASK_SUFFIX = "_mask"
PROG = "pconv-inpaint"
FORMAT_CHOICES = sorted(suffix.lstrip(".") for suffix in WRITE_FORMATS)
"""``--format`` values: names of the formats ``save_image`` writes, never paths."""
_INPAINT_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(inpaint).parameters.items()}
"""inpaint()'s own defaults, which ``--texture`` and ``--seed`` follow (read, never repeated here)."""

Job = tuple[Path, Path, Path]  # image, mask, output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inpaint photos with a partial-convolution U-Net: fill the white area of each mask.",
        epilog="Folder mode: --image DIR --mask DIR -o DIR. The mask of IMAGE_DIR/NAME.EXT is MASK_DIR/NAME.* or "
        "MASK_DIR/NAME_mask.* (one of them); --mask FILE is the mask of every photo. Outputs are OUT_DIR/NAME.png "
        "(see --format). A photo that fails is listed at the end (exit status 1) and the others are still processed; "
        "rerun with --skip_existing to do only what is missing (also after Ctrl+C, exit status 130).",
    )
    parser.add_argument("--image", required=True, type=Path, help="a photo, or a folder of photos")
    parser.add_argument(
        "--mask", required=True, type=Path, help="its mask (white = fill), a folder of masks, or one mask for a folder"
    )
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="output file (format from its extension) or folder"
    )
    parser.add_argument("--model", help="saved model folder or Hub id (default: the bundled model)")
    parser.add_argument(
        "--strategy", choices=get_args(Strategy), default=None, help="how large photos run (default: inpaint()'s)"
    )
    parser.add_argument("--dilate", type=int, default=0, help="grow each mask by this many pixels first (default 0)")
    parser.add_argument(
        "--texture",
        action=argparse.BooleanOptionalAction,
        default=_INPAINT_DEFAULTS["texture"],
        help="after the network fills, copy the hole's fine detail from the photo's own known pixels (slower; "
        f"default: inpaint()'s, {'on' if _INPAINT_DEFAULTS['texture'] else 'off'}); --no-texture: the network's "
        "own, smoother fill",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_INPAINT_DEFAULTS["seed"],
        help=f"the texture stage's random search: the same seed, the same result (default {_INPAINT_DEFAULTS['seed']})",
    )
    add_runtime_arguments(parser)
    parser.add_argument(
        "--format",
        default=None,
        type=str.lower,
        choices=FORMAT_CHOICES,
        help="output format when -o is a folder (default png); a file's extension sets its own",
    )
    parser.add_argument(
        "--quality", type=int, default=None, help="1-100 for lossy outputs: JPEG (default 95), WebP (default lossless)"
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing output files")
    existing.add_argument(
        "--skip_existing", action="store_true", help="leave photos whose output exists alone (rerun a folder)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    common.run(PROG, lambda: run(args))


def run(args: argparse.Namespace) -> None:
    for path, what in ((args.image, "--image"), (args.mask, "--mask"), (args.output, "-o")):
        resolved(path, what)
    for path, what in ((args.image, "--image"), (args.mask, "--mask")):
        if not path.exists():
            raise CliError(f"{what} {path} does not exist")
    if args.mask.is_dir() and not args.image.is_dir():
        raise CliError(f"--mask {args.mask} is a folder but --image {args.image} is a file; give the photo's mask file")
    folder_mode = args.image.is_dir()
    if folder_mode:
        jobs = plan_folder(args.image, args.mask, args.output, args.format or "png")
    else:
        jobs = [(args.image, args.mask, single_output(args.image, args.output, args.format))]
    _check_quality(args.quality, jobs[0][2])
    jobs, skipped = check_outputs(jobs, args.overwrite, args.skip_existing)
    failures = check_sizes(jobs, stop=not folder_mode)
    jobs = [job for job in jobs if job[0] not in failures]

    model = model_from_flag(args.model, args.device) if jobs else None
    if model is not None:  # the options, checked once by inpaint itself on an empty 1-pixel photo
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the mask fills nothing": it is meant to
            inpaint(model, np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), bool), **_options(args))
        print(choose_engine(model, dtype=args.dtype).describe(), flush=True)
    start = time.perf_counter()
    done = 0
    where = args.output if folder_mode else jobs[0][2] if jobs else args.output
    try:
        for image_path, mask_path, out_path in tqdm(jobs, desc="inpainting", unit="photo", disable=not folder_mode):
            try:
                inpaint_file(model, image_path, mask_path, out_path, args)
                done += 1
            except (ValueError, OSError) as err:
                if not folder_mode:
                    raise
                failures[image_path] = str(err)
    except KeyboardInterrupt:
        # save_image writes a result completely or not at all, so every file named "written" is whole.
        written = f"wrote {done} of {len(jobs)} photo{'' if len(jobs) == 1 else 's'} into {where}"
        rerun = "; rerun with --skip_existing to do the rest" if folder_mode else ""
        raise KeyboardInterrupt(f"{written} (each complete, nothing half-written){rerun}") from None
    report(where, done, skipped, failures, start)


def _options(args: argparse.Namespace) -> dict:
    options = {"dilate": args.dilate, "dtype": args.dtype, "texture": args.texture, "seed": args.seed}
    return options if args.strategy is None else {**options, "strategy": args.strategy}


def inpaint_file(model, image_path: Path, mask_path: Path, out_path: Path, args: argparse.Namespace) -> None:
    """One photo: read, fill, write (metadata of the photo kept; notes on mode changes printed). 16-bit colour
    PNG / TIFF travels as a uint16 array, so it keeps its 16 bits (every pixel outside the hole exact)."""
    photo, metadata = open_full_depth(image_path)
    result = inpaint(model, photo, mask_path, **_options(args))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for note in save_image(result, out_path, like=metadata, quality=args.quality):
        tqdm.write(f"note: {image_path.name}: {note}", file=sys.stderr)


def report(where: Path, done: int, skipped: int, failures: dict[Path, str], start: float) -> None:
    """The summary line; failures listed one per line and the exit status 1 when any."""
    summary = f"Inpainted {done} photo{'' if done == 1 else 's'} into {where} in {time.perf_counter() - start:.1f} s"
    if skipped:
        summary += f"; skipped {skipped} already done (--skip_existing)"
    print(summary)
    if failures:
        listed = "\n".join(f"  {path}: {reason}" for path, reason in failures.items())
        raise CliError(
            f"{len(failures)} photo{'' if len(failures) == 1 else 's'} failed (the others were written; fix these "
            f"and rerun with --skip_existing):\n{listed}"
        )


# --- planning and checks -----------------------------------------------------------------------------------


def resolved(path: Path, flag: str) -> Path:
    """``path`` with symlinks resolved (it need not exist); a symlink loop or an unreadable link is a
    :class:`CliError` naming ``flag``."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as err:  # Python 3.11 says "Symlink loop" with a RuntimeError
        why = "a symlink loop" if "loop" in str(err).lower() else f"not a usable path ({err})"
        raise CliError(f"{flag} {path} is {why}") from None


def single_output(image: Path, output: Path, out_format: str | None) -> Path:
    """The output file of one photo: ``-o`` itself, or ``-o/NAME.<--format>`` when ``-o`` is a folder."""
    if output.is_dir():
        output = output / f"{image.stem}.{(out_format or 'png').lower().lstrip('.')}"
    elif out_format is not None and output.suffix.lower().lstrip(".") != out_format.lower().lstrip("."):
        raise CliError(
            f"--format {out_format} does not match -o {output.name}: a file's extension sets its format (drop "
            "--format, or give -o a folder)"
        )
    check_writable_format(output)
    return output


def plan_folder(image_dir: Path, mask_dir: Path, out_dir: Path, out_format: str) -> list[Job]:
    """(image, mask, output) for every image in ``image_dir``; every image must have exactly one mask in the
    folder ``mask_dir``, or ``mask_dir`` is one mask file for them all. Outputs are checked for collisions as
    resolved paths."""
    extension = "." + out_format.lower().lstrip(".")
    check_writable_format(Path("x" + extension), flag="--format")
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"-o {out_dir} is a file; in folder mode it must be a folder")
    one_mask = not mask_dir.is_dir()
    mask_folder = mask_dir.parent if one_mask else mask_dir
    same_folder = not one_mask and image_dir.resolve() == mask_dir.resolve()
    for input_dir in {image_dir.resolve(), mask_folder.resolve()}:
        if out_dir.resolve() == input_dir:
            raise CliError(f"-o {out_dir} is an input folder; write the results to another folder")

    images = list_images(image_dir)
    if one_mask:  # the mask itself may sit among the photos
        images = [path for path in images if path.resolve() != mask_dir.resolve()]
    elif same_folder:
        images = [path for path in images if not path.stem.endswith(MASK_SUFFIX)]
    if not images:
        raise CliError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {image_dir}")
    if one_mask:
        return [(image, mask_dir, out_path) for image, out_path in _outputs(images, out_dir, extension)]
    masks = list_images(mask_dir)
    by_stem: dict[str, list[Path]] = {}
    for mask in masks:
        by_stem.setdefault(mask.stem, []).append(mask)

    jobs, unmatched, ambiguous = [], [], []
    for image in images:
        stems = [f"{image.stem}{MASK_SUFFIX}"] if same_folder else [image.stem, f"{image.stem}{MASK_SUFFIX}"]
        candidates = [mask for stem in stems for mask in by_stem.get(stem, [])]
        if not candidates:
            unmatched.append(image.name)
        elif len(candidates) > 1:
            ambiguous.append(f"{image.name} ({', '.join(mask.name for mask in candidates)})")
        else:
            jobs.append((image, candidates[0]))
    if unmatched:
        expected = f"NAME{MASK_SUFFIX}.*" if same_folder else f"NAME.* or NAME{MASK_SUFFIX}.*"
        raise CliError(f"no mask in {mask_dir} ({expected}) for: {', '.join(unmatched)}")
    if ambiguous:
        raise CliError(f"more than one mask for: {'; '.join(ambiguous)}")
    masks_of = dict(jobs)
    return [(image, masks_of[image], out_path) for image, out_path in _outputs(list(masks_of), out_dir, extension)]


def _outputs(images: list[Path], out_dir: Path, extension: str) -> list[tuple[Path, Path]]:
    """(image, OUT_DIR/NAME.<extension>) for each image; two images with one output (``a.jpg`` and ``a.png``, or
    names that resolve to one file) are refused before anything is written."""
    pairs, seen = [], {}
    for image in images:
        out_path = out_dir / f"{image.stem}{extension}"
        key = resolved(out_path, "-o")
        if key in seen:
            raise CliError(f"{seen[key].name} and {image.name} would both be written to {out_path}; rename one")
        seen[key] = image
        pairs.append((image, out_path))
    return pairs


def check_writable_format(path: Path, flag: str = "-o") -> None:
    if path.suffix.lower() not in WRITE_FORMATS:
        raise CliError(
            f"{flag}: cannot tell the image format of {path.name!r}; use {', '.join(sorted(set(WRITE_FORMATS)))}"
        )


def _check_quality(quality: int | None, out_path: Path) -> None:
    try:
        check_quality(quality, WRITE_FORMATS[out_path.suffix.lower()])
    except ValueError as err:
        raise CliError(f"--quality {quality}: {err}") from err


def check_outputs(jobs: list[Job], overwrite: bool, skip_existing: bool) -> tuple[list[Job], int]:
    """The jobs to run and how many were skipped because their output exists (``skip_existing``); without
    ``overwrite`` or ``skip_existing`` an existing output is refused before anything runs."""
    inputs = {path.resolve() for image, mask, _ in jobs for path in (image, mask)}
    existing = []
    for _, _, out_path in jobs:
        if out_path.resolve() in inputs:
            raise CliError(f"-o {out_path} is one of the inputs; refusing to overwrite it")
        if out_path.is_dir():
            raise CliError(f"-o {out_path} is a folder; name a file, or give a folder for NAME.png inside it")
        if out_path.exists():
            existing.append(out_path)
    if skip_existing:
        return [job for job in jobs if job[2] not in existing], len(existing)
    if existing and not overwrite:
        shown = ", ".join(map(str, existing[:5])) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise CliError(
            f"{shown} already exist{'s' if len(existing) == 1 else ''}; pass --overwrite to replace or "
            "--skip_existing to keep"
        )
    return jobs, 0


def check_sizes(jobs: list[Job], stop: bool) -> dict[Path, str]:
    """Read only the headers, so a wrong pair fails before any photo is processed. Sizes are as displayed (EXIF
    orientation applied), as a mask drawn on the photo in any viewer or the app has them. With ``stop`` the first
    problem ends the run; otherwise the problems are returned (image -> reason) and those pairs are left out."""
    problems: dict[Path, str] = {}
    for image_path, mask_path, _ in jobs:
        try:
            sizes = [displayed_size(path, what) for path, what in ((image_path, "image"), (mask_path, "mask"))]
            if sizes[0] != sizes[1]:
                (image_w, image_h), (mask_w, mask_h) = sizes
                raise CliError(
                    f"{mask_path} is {mask_w}x{mask_h} but {image_path} is {image_w}x{image_h} (as displayed); a "
                    "mask must match its image"
                )
        except (CliError, ValueError) as err:
            if stop:
                raise
            problems[image_path] = str(err)
    return problems


if __name__ == "__main__":
    main()
