"""``pconv-inpaint``: fill the white area of a mask in a photo, for one file or a whole folder.

    pconv-inpaint --image photo.jpg --mask photo_mask.png -o filled.png
    pconv-inpaint --image photos/ --mask masks/ -o filled/          # masks matched by file stem

Masks are white / nonzero = area to fill (transparent pixels of a mask with alpha never fill). In folder mode
the mask of ``photos/beach.jpg`` is ``masks/beach.<ext>`` or ``masks/beach_mask.<ext>`` (any image extension);
when photos and masks share one folder, only the ``_mask`` form is used. Inputs are never overwritten.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from . import _cli
from ._cli import CliError, add_runtime_arguments, load_model
from .images import IMAGE_SUFFIXES, displayed_size, list_images, open_image

OUTPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
MASK_SUFFIX = "_mask"
PROG = "pconv-inpaint"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inpaint photos with a partial-convolution U-Net: fill the white area of each mask.",
        epilog="Folder mode: --image DIR --mask DIR -o DIR. The mask of IMAGE_DIR/NAME.EXT is MASK_DIR/NAME.* or "
        "MASK_DIR/NAME_mask.* (one of them); outputs are OUT_DIR/NAME.png (see --format).",
    )
    parser.add_argument("--image", required=True, type=Path, help="a photo, or a folder of photos")
    parser.add_argument("--mask", required=True, type=Path, help="its mask (white = fill), or a folder of masks")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="output file (format from its extension) or folder"
    )
    parser.add_argument("--model", help="saved model folder or Hub id (default: the bundled model)")
    parser.add_argument("--strategy", choices=("crop", "resize", "full"), default="crop", help="how large photos run")
    parser.add_argument("--dilate", type=int, default=0, help="grow each mask by this many pixels first (default 0)")
    add_runtime_arguments(parser)
    parser.add_argument("--format", default="png", help="output format in folder mode: png (default), webp, tiff, jpg")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _cli.run(PROG, lambda: run(args))


def run(args: argparse.Namespace) -> None:
    if args.dilate < 0:
        raise CliError(f"--dilate must be 0 or more pixels, got {args.dilate}")
    for path, what in ((args.image, "--image"), (args.mask, "--mask")):
        if not path.exists():
            raise CliError(f"{what} {path} does not exist")
    if args.image.is_dir() != args.mask.is_dir():
        raise CliError("--image and --mask must both be files or both be folders")
    if args.image.is_dir():
        jobs = plan_folder(args.image, args.mask, args.output, args.format)
    else:
        output = args.output / f"{args.image.stem}.png" if args.output.is_dir() else args.output
        check_writable_format(output)
        jobs = [(args.image, args.mask, output)]
    check_outputs(jobs, args.overwrite)
    check_sizes(jobs)

    model = load_model(args.model, args.device)
    from pconv_hf.inpainting import inpaint

    start = time.perf_counter()
    folder_mode = args.image.is_dir()
    for image_path, mask_path, out_path in tqdm(jobs, desc="inpainting", unit="photo", disable=not folder_mode):
        try:
            photo = writable(open_image(image_path), out_path)
            result = inpaint(model, photo, mask_path, strategy=args.strategy, dilate=args.dilate, dtype=args.dtype)
        except ValueError as err:
            raise CliError(f"{image_path}: {err}") from err
        out_path.parent.mkdir(parents=True, exist_ok=True)
        save(result, out_path)
    where, count = args.output if folder_mode else jobs[0][2], len(jobs)
    print(f"Inpainted {count} photo{'' if count == 1 else 's'} into {where} in {time.perf_counter() - start:.1f} s")


# --- planning and checks -----------------------------------------------------------------------------------


def plan_folder(image_dir: Path, mask_dir: Path, out_dir: Path, out_format: str) -> list[tuple[Path, Path, Path]]:
    """(image, mask, output) for every image in ``image_dir``; every image must have exactly one mask."""
    extension = "." + out_format.lower().lstrip(".")
    check_writable_format(Path("x" + extension), flag="--format")
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"-o {out_dir} is a file; in folder mode it must be a folder")
    same_folder = image_dir.resolve() == mask_dir.resolve()
    for input_dir in {image_dir.resolve(), mask_dir.resolve()}:
        if out_dir.resolve() == input_dir:
            raise CliError(f"-o {out_dir} is an input folder; write the results to another folder")

    images, masks = list_images(image_dir), list_images(mask_dir)
    if same_folder:
        images = [path for path in images if not path.stem.endswith(MASK_SUFFIX)]
    if not images:
        raise CliError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {image_dir}")
    by_stem: dict[str, list[Path]] = {}
    for mask in masks:
        by_stem.setdefault(mask.stem, []).append(mask)

    jobs, unmatched, ambiguous = [], [], []
    outputs: dict[Path, Path] = {}
    for image in images:
        stems = [f"{image.stem}{MASK_SUFFIX}"] if same_folder else [image.stem, f"{image.stem}{MASK_SUFFIX}"]
        candidates = [mask for stem in stems for mask in by_stem.get(stem, [])]
        if not candidates:
            unmatched.append(image.name)
        elif len(candidates) > 1:
            ambiguous.append(f"{image.name} ({', '.join(mask.name for mask in candidates)})")
        else:
            out_path = out_dir / f"{image.stem}{extension}"
            if out_path in outputs:
                raise CliError(f"{outputs[out_path].name} and {image.name} would both be written to {out_path}")
            outputs[out_path] = image
            jobs.append((image, candidates[0], out_path))
    if unmatched:
        expected = f"NAME{MASK_SUFFIX}.*" if same_folder else f"NAME.* or NAME{MASK_SUFFIX}.*"
        raise CliError(f"no mask in {mask_dir} ({expected}) for: {', '.join(unmatched)}")
    if ambiguous:
        raise CliError(f"more than one mask for: {'; '.join(ambiguous)}")
    return jobs


def check_writable_format(path: Path, flag: str = "-o") -> None:
    extension = path.suffix.lower()
    if Image.registered_extensions().get(extension) is None or extension not in OUTPUT_SUFFIXES:
        raise CliError(f"{flag}: cannot tell the image format of {path.name!r}; use .png, .webp, .tif, .jpg or .bmp")


def check_outputs(jobs: list[tuple[Path, Path, Path]], overwrite: bool) -> None:
    inputs = {path.resolve() for image, mask, _ in jobs for path in (image, mask)}
    existing = []
    for _, _, out_path in jobs:
        if out_path.resolve() in inputs:
            raise CliError(f"-o {out_path} is one of the inputs; refusing to overwrite it")
        if out_path.exists():
            existing.append(str(out_path))
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise CliError(f"{shown} already exist{'s' if len(existing) == 1 else ''}; pass --overwrite to replace")


def check_sizes(jobs: list[tuple[Path, Path, Path]]) -> None:
    """Read only the headers, so a wrong pair fails before any photo is processed. Sizes are as displayed (EXIF
    orientation applied), as a mask drawn on the photo in any viewer or the app has them."""
    for image_path, mask_path, _ in jobs:
        sizes = [displayed_size(path, what) for path, what in ((image_path, "image"), (mask_path, "mask"))]
        if sizes[0] != sizes[1]:
            (image_w, image_h), (mask_w, mask_h) = sizes
            raise CliError(
                f"{mask_path} is {mask_w}x{mask_h} but {image_path} is {image_w}x{image_h} (as displayed); a mask "
                "must match its image"
            )


def writable(photo: Image.Image, out_path: Path) -> Image.Image:
    """The photo in a mode the output format can hold: e.g. a CMYK JPEG written as PNG is converted to RGB first
    (with a note), so no work is lost at the end."""
    try:
        Image.new(photo.mode, (1, 1)).save(io.BytesIO(), format=Image.registered_extensions()[out_path.suffix.lower()])
        return photo
    except (OSError, ValueError, KeyError):
        target = "RGBA" if "A" in photo.getbands() else "RGB"
        print(
            f"note: {out_path.suffix} cannot hold {photo.mode} images; writing {out_path.name} as {target}",
            file=sys.stderr,
        )
        return photo.convert(target)


# --- model and output --------------------------------------------------------------------------------------


def save(image, path: Path) -> None:
    """Lossless unless the extension says JPEG; modes JPEG cannot hold are converted to RGB (or L)."""
    extension = path.suffix.lower()
    options = {}
    if extension == ".webp":
        options = {"lossless": True}
    elif extension in (".jpg", ".jpeg"):
        options = {"quality": 95}
        if image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("L" if image.mode in ("1", "LA", "I", "I;16", "F") else "RGB")
    try:
        image.save(path, **options)
    except (OSError, ValueError, KeyError) as err:
        if path.exists():
            os.remove(path)
        raise CliError(f"cannot write {path}: {err}") from err


if __name__ == "__main__":
    main()
