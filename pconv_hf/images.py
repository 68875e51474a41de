"""The user-image edge: decoding, EXIF orientation, pixel modes, folder listing, the one rule for user masks,
a user's image as the network's pixels and back, and writing results.

Everything that opens an image file goes through here, so a photo or a mask reads the same way in
``inpaint()``, the CLIs, evaluation and training:

- **Orientation**: files are turned upright by their EXIF orientation tag, as browsers and the app show them;
  the tag is then gone, so results hold upright pixels and carry no orientation.
- **Modes**: 16-bit integer images are scaled by 65535 (every 16/32-bit integer mode), float images are [0, 1];
  :func:`to_rgb` is the network's 8-bit RGB, :func:`to_eight_bit` the simplest 8-bit mode (the app's copy).
  16-bit grey keeps its values in either byte order. Pillow reads 16-bit colour at 8 bits: :func:`open_image` says so
  in a warning, :func:`open_full_depth` (``pconv-inpaint``) reads 16-bit RGB(A) PNG / TIFF with OpenCV as uint16
  arrays, and :func:`save_image` writes them back at 16 bits.
- **Frames**: of a multi-frame file (animated GIF / PNG / WebP, multi-page TIFF) only the first frame is read,
  with a warning naming the file and its frame count (an MPO's extra frames are previews, read silently).
- **A user's image in and out** (:func:`to_source`): a PIL image of any mode, an array, a tensor or a path as the
  float RGB ``inpaint()`` works on, and back in the caller's type, mode and bit depth with only hole pixels new.
- **User masks** (:func:`to_hole_mask`): white / nonzero = area to fill, as the mask displays (a CMYK or YCbCr
  mask is read by its displayed colour, not its ink); transparent pixels never fill; black paint on a transparent
  layer fills where painted. A JPEG's soft or anti-aliased edge pixels are nonzero, so
  they fill too.
- **Formats**: whatever Pillow reads, plus HEIC / HEIF phone photos (``pillow-heif``, registered on import).
- **Errors** are ``ValueError`` naming the file: unreadable, truncated, or more pixels than Pillow's
  decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
- **Writing** (:func:`save_image`): the one writer of results; it knows what each format can hold, states every
  mode change, keeps the source photo's ICC profile and EXIF, and never leaves a half-written file.

No ``datasets`` (or other training) import here: ``inpaint()`` and the scoring CLIs need only this.
"""

from __future__ import annotations

import io
import math
import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

import cv2
import numpy as np
import pillow_heif
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()  # HEIC / HEIF phone photos open like any other file (no network, no state)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif")
"""File extensions read as images wherever a folder is listed."""

_EXIF_ORIENTATION = 0x0112

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


SKIP_REASONS = ("unreadable", "truncated", "too_small", "too_large")
"""Why an image is skipped: not an image / cannot be decoded, cut short, shorter side below the minimum,
more pixels than PIL's decompression-bomb limit."""


DEFAULT_MIN_SIDE = 64


class BadImageError(ValueError):
    """An image that cannot be used for training; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _grey_levels(image: Image.Image) -> np.ndarray:
    """A 16/32-bit integer ("I;16*", "I") or float ("F") grey image as uint8 levels: integers scaled by 65535,
    floats taken as [0, 1] (NaN as 0), rounded, never wrapped (out-of-range values clip)."""
    values = np.asarray(image, dtype=np.float64)
    values = np.nan_to_num(values) if image.mode == "F" else values / 65535.0
    return np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16/32-bit integer grey is scaled by 65535, float grey is taken as [0, 1]
    (clipped), transparency is composited on white, CMYK / palette / grey / bilevel go through PIL's converters."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_grey_levels(image), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_eight_bit(image: Image.Image) -> Image.Image:
    """The image at 8 bits per channel, in the simplest of "RGB", "RGBA" and "L" that holds it (as the app shows
    a photo): deep grey by the rule of :func:`to_rgb`, alpha and colour kept where present (:func:`simplest_mode`)."""
    if image.mode.startswith("I") or image.mode == "F":
        image = Image.fromarray(_grey_levels(image), "L")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in ("L", "RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return simplest_mode(image)


def simplest_mode(image: Image.Image) -> Image.Image:
    """Drop an alpha that is fully opaque ("RGBA" -> "RGB"), and keep grey photos grey ("RGB" -> "L")."""
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")
    # A look at 64×64 samples first: a colour photo is told at once, without comparing 12 MP of channels.
    if image.mode == "RGB" and is_grey(image.resize((64, 64), Image.Resampling.NEAREST)) and is_grey(image):
        image = image.convert("L")
    return image


def is_grey(image: Image.Image) -> bool:
    """Whether an "RGB" image's three channels are equal everywhere."""
    red, green, blue = (np.asarray(channel) for channel in image.split())
    return np.array_equal(red, green) and np.array_equal(green, blue)


def decode_image(
    source: dict | str | os.PathLike | bytes | Image.Image,
    min_side: int = DEFAULT_MIN_SIDE,
    draft_side: int | None = None,
) -> Image.Image:
    """Decode an image fully (so truncation is detected now) into an upright RGB PIL image.

    Args:
        source: a ``{"bytes", "path"}`` dict (``datasets.Image(decode=False)``), a path, raw bytes or a PIL image.
        min_side: images whose shorter side (before any draft reduction) is below this are rejected.
        draft_side: let JPEG decoding downscale by 2, 4 or 8 while the shorter side stays >= this (much
            faster for large photos); None decodes at full size.

    Raises:
        BadImageError: with ``reason`` in ``SKIP_REASONS``.
    """
    if isinstance(source, dict):
        data, path = source.get("bytes"), source.get("path")
        source = data if data is not None else path
    try:
        if isinstance(source, Image.Image):
            source.load()
            original_short = min(source.size)
            image = to_rgb(source)
        else:
            file = io.BytesIO(source) if isinstance(source, bytes) else source
            if file is None:
                raise BadImageError("unreadable", "example has neither image bytes nor a path")
            with warnings.catch_warnings():
                # A decompression-bomb *warning* (between 1x and 2x the limit) is fine for training data.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(file) as opened:
                    original_short = min(opened.size)
                    if draft_side is not None and opened.format == "JPEG" and original_short > draft_side:
                        scale = original_short / draft_side
                        opened.draft("RGB", (math.ceil(opened.width / scale), math.ceil(opened.height / scale)))
                    opened.load()  # decodes everything now, so truncation raises here
                    image = to_rgb(ImageOps.exif_transpose(opened))
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError("too_large", str(error)) from error
    except UnidentifiedImageError as error:
        raise BadImageError("unreadable", str(error)) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = "truncated" if "truncated" in str(error) or isinstance(error, EOFError) else "unreadable"
        raise BadImageError(reason, str(error)) from error
    if original_short < min_side:
        raise BadImageError("too_small", f"image is {image.width}x{image.height}, shorter side below {min_side}")
    return image


def resize_square(image: Image.Image, resolution: int) -> Image.Image:
    """The whole image resized to ``resolution`` x ``resolution`` (aspect ratio not kept, nothing cropped)."""
    return image.resize((resolution, resolution), Image.Resampling.LANCZOS, reducing_gap=3.0)


def center_crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    """The evaluation transform: the central square, resized to ``resolution``."""
    width, height = image.size
    short = min(width, height)
    left, top = (width - short) / 2, (height - short) / 2
    return image.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + short, top + short))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)


def open_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Read an image file fully, turned upright by its EXIF orientation (the tag is then dropped).

    A multi-frame file (animation, multi-page TIFF) gives its first frame and a ``UserWarning`` saying so; a
    16-bit colour file gives 8-bit pixels (Pillow's limit) and a ``UserWarning`` saying so (:func:`open_full_depth`
    keeps 16-bit colour PNG and TIFF).
    A file over Pillow's decompression-bomb *warning* size (``PIL.Image.MAX_IMAGE_PIXELS``, up to twice it) is
    read, with one ``UserWarning`` naming the file and its size instead of Pillow's.

    Raises:
        ValueError: naming the file, when it is missing, a folder, not an image, truncated, or has more than
            twice Pillow's decompression-bomb limit of pixels.
    """
    image, _ = _read(path, what, full_depth=False)
    return image


def open_full_depth(
    path: str | os.PathLike, what: str = "image"
) -> tuple[Image.Image | np.ndarray, Image.Image | dict]:
    """A photo file at its full bit depth, as ``inpaint()`` takes it, and the ``like`` of :func:`save_image`.

    A 16-bit RGB or RGBA PNG / TIFF (which Pillow reads at 8 bits) is read by OpenCV as a uint16 (H, W, 3|4) RGB(A)
    array, turned upright by its EXIF orientation as :func:`open_image` does; ``like`` is then a dict of its ICC
    profile and EXIF (orientation 1), as Pillow reads them. Any other file is :func:`open_image`'s PIL image, which
    is its own ``like``. Warnings and errors are :func:`open_image`'s.
    """
    return _read(path, what, full_depth=True)


def _read(path: str | os.PathLike, what: str, full_depth: bool) -> tuple[Image.Image | np.ndarray, Image.Image | dict]:
    """(upright pixels, their metadata's ``like``) for :func:`open_image` and :func:`open_full_depth`."""
    if os.path.isdir(path):
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: it is a folder")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                frames = getattr(opened, "n_frames", 1)
                deep_colour = opened.mode in ("RGB", "RGBA", "LA") and ";16" in _raw_mode(opened)
                pixels = why_eight_bits = None
                if full_depth and deep_colour and opened.mode != "LA" and opened.format in ("PNG", "TIFF"):
                    pixels, why_eight_bits = _read_deep_colour(path, opened)
                    if pixels is not None:
                        like, deep_colour = _header_metadata(opened), False  # kept at 16 bits: nothing to say
                if pixels is None:
                    opened.load()
                    pixels = like = ImageOps.exif_transpose(opened)
        if frames > 1 and opened.format not in _STILL_WITH_EXTRAS:
            warnings.warn(
                f"{what} file {os.fspath(path)!r} has {frames} frames (an animation or a multi-page file); only the "
                "first frame is read, so the result is that one still image",
                UserWarning,
                stacklevel=3,
            )
        if deep_colour:
            keeps = (
                ". pconv-inpaint keeps 16-bit RGB(A) PNG and TIFF (pconv_hf.images.open_full_depth reads them as "
                "uint16 arrays for inpaint())"
            )
            warnings.warn(
                f"{what} file {os.fspath(path)!r} has 16 bits per channel; "
                f"{why_eight_bits or 'Pillow reads colour (and grey + alpha) at 8 bits'}, so it is used (and "
                f"written) at 8 bits per channel{'' if full_depth else keeps}",
                UserWarning,
                stacklevel=3,
            )
        for warning in caught:
            if issubclass(warning.category, Image.DecompressionBombWarning):
                height, width = pixels.shape[:2] if isinstance(pixels, np.ndarray) else pixels.size[::-1]
                warnings.warn(
                    f"{what} file {os.fspath(path)!r} is large ({width}x{height} = {width * height:,} pixels, over "
                    f"Pillow's {Image.MAX_IMAGE_PIXELS:,}-pixel check): reading it as a trusted file",
                    UserWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return pixels, like
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: {_bomb_message(err)}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: {err}") from err


# EXIF orientation -> the numpy view that turns stored pixels upright (as ImageOps.exif_transpose does).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a),
}


def _read_deep_colour(path: str | os.PathLike, opened: Image.Image) -> tuple[np.ndarray | None, str | None]:
    """A 16-bit RGB(A) file Pillow has opened (header only) as an upright uint16 (H, W, 3|4) RGB(A) array, or
    (None, why) when OpenCV cannot read it as Pillow shows it (the caller then reads it at 8 bits and says why)."""
    orientation = _header_exif(opened).get(_EXIF_ORIENTATION, 1)
    if opened.format == "TIFF" and orientation in (5, 6, 7, 8):
        # OpenCV (5.1) applies a TIFF's orientation tag itself and fails on the ones that swap width and height.
        return None, f"OpenCV cannot read a 16-bit TIFF turned by its orientation tag ({orientation})"
    # IMREAD_UNCHANGED keeps 16 bits and alpha; whether it turns the pixels by the orientation depends on the format
    # (a PNG's eXIf: never; a TIFF's tag: yes, in OpenCV 5.1), so a turned photo is checked against Pillow's below.
    stored = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    channels = len(opened.getbands())
    if stored is None or stored.dtype != np.uint16 or stored.ndim != 3 or stored.shape[2] != channels:
        return None, "OpenCV could not read its 16-bit pixels"
    rgb = stored[..., [2, 1, 0, 3][:channels]]  # OpenCV's BGR(A) -> RGB(A)
    if orientation not in _UPRIGHT:
        if stored.shape[:2] != opened.size[::-1]:
            height, width = stored.shape[:2]
            return None, f"OpenCV read {width}x{height} pixels of a {opened.width}x{opened.height} file"
        return np.ascontiguousarray(rgb), None
    opened.load()  # Pillow's 8-bit pixels (the high byte of each value), upright: the reference
    shown = np.asarray(ImageOps.exif_transpose(opened))
    for candidate in (_UPRIGHT[orientation](rgb), rgb):
        if candidate.shape == shown.shape and np.array_equal(candidate >> 8, shown):
            return np.ascontiguousarray(candidate), None
    return None, f"OpenCV's 16-bit pixels do not match the photo turned by its orientation ({orientation})"


def _header_exif(opened: Image.Image) -> Image.Exif:
    """The EXIF of an opened file, without decoding its pixels (Pillow's PNG getexif() decodes them all, at 8 bits,
    to look for an eXIf chunk after the pixels; one before them, as written by cameras and editors, is read)."""
    if opened.format == "PNG" and "exif" not in opened.info:
        return Image.Exif()
    return opened.getexif()


def _header_metadata(opened: Image.Image) -> dict:
    """An opened file's ICC profile and EXIF (upright: orientation 1) as :func:`save_image`'s ``like`` dict."""
    return {"icc_profile": opened.info.get("icc_profile"), "exif": _upright_exif_bytes(_header_exif(opened))}


# Formats whose extra frames are not more of the picture (an MPO's previews / depth maps after the photo).
_STILL_WITH_EXTRAS = ("MPO",)


def _raw_mode(opened: Image.Image) -> str:
    """How the file stores its pixels (e.g. "RGB;16B" for a 16-bit colour PNG that Pillow reads as "RGB")."""
    if not opened.tile:
        return ""
    args = opened.tile[0].args
    return args if isinstance(args, str) else str(args[0]) if isinstance(args, tuple) and args else ""


def _bomb_message(err: Image.DecompressionBombError) -> str:
    """Pillow's decompression-bomb error, as the size and the limit a person can act on."""
    limit = Image.MAX_IMAGE_PIXELS
    return f"{err} (the limit is {limit:,} pixels, PIL.Image.MAX_IMAGE_PIXELS; raise it only for files you trust)"


def displayed_size(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file as displayed (EXIF orientation applied), from its header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # said once, when the file is read
            with Image.open(path) as opened:
                width, height = opened.size
                orientation = opened.getexif().get(_EXIF_ORIENTATION, 1)
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: {_bomb_message(err)}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: {err}") from err
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files (by :data:`IMAGE_SUFFIXES`, any case) in ``folder``, sorted; with ``recursive`` also in its
    sub-folders. Hidden files are skipped."""
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


DATASET_FOLDER_MARKERS = ("dataset_dict.json", "state.json")
"""Files that make a folder a ``datasets`` ``save_to_disk`` folder rather than a folder of images."""


def image_folder(path: str | os.PathLike) -> list[Path]:
    """The images of a plain folder of images (recursive, sorted, as :func:`list_images`); ``[]`` for anything
    else: not a folder, a ``datasets`` ``save_to_disk`` folder (:data:`DATASET_FOLDER_MARKERS`), no images."""
    path = Path(path)
    if not path.is_dir() or any((path / marker).is_file() for marker in DATASET_FOLDER_MARKERS):
        return []
    return list_images(path, recursive=True)


def to_hole_mask(
    mask: ImageLike, height: int | None = None, width: int | None = None, *, holes_are: str = "white"
) -> np.ndarray:
    """The one rule for a user's mask: a bool (H, W) array, True = fill.

    White / nonzero pixels fill (any nonzero channel of a colour mask, whatever the bit depth: a JPEG's soft
    edge or an anti-aliased brush edge fills too; CMYK, YCbCr and other PIL modes are read as displayed, in
    RGB); transparent pixels (alpha 0) never fill. A paint layer (a mask with transparent pixels) whose painted
    pixels are all black -- black paint on a transparent layer, as many editors export it -- fills where it is
    painted. A mask that fills more than 90 % of the image gives a
    ``UserWarning`` with the share (and a hint when the filled pixels are nearly black: a JPEG's black).
    A path is read by :func:`open_image` (EXIF orientation applied, as for the photo). ``holes_are="black"``
    inverts the colour test (zero pixels fill), for mask sets drawn the other way round; transparency still
    never fills.

    Args:
        mask: a PIL image (any mode), a numpy array (H, W) or (H, W, C), a tensor (H, W), (C, H, W) or
            (1, C, H, W), or a file path.
        height, width: when given, the mask must have this size (the image's).
    """
    if holes_are not in ("white", "black"):
        raise ValueError(f"holes_are must be 'white' or 'black', got {holes_are!r}")
    if isinstance(mask, (str, os.PathLike)):
        mask = open_image(mask, "mask")
    if isinstance(mask, Image.Image):
        _check_open(mask, "mask")
        if mask.mode in ("P", "PA") or (mask.mode in ("L", "RGB") and "transparency" in mask.info):
            mask = mask.convert("RGBA")
        elif mask.mode not in _MASK_MODES_AS_STORED:
            mask = mask.convert("RGB")  # CMYK ink, YCbCr chroma, RGBX padding: read as displayed, not as stored
        array = np.asarray(mask)
        has_alpha = mask.mode in ("RGBA", "LA", "La", "RGBa")
    elif isinstance(mask, torch.Tensor):
        _check_tensor(mask, "mask tensor")
        array = mask.detach().cpu()
        array = (array.float() if array.dtype == torch.bfloat16 else array).numpy()
        while array.ndim > 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
        has_alpha = array.ndim == 3 and array.shape[-1] in (2, 4)
    elif isinstance(mask, np.ndarray):
        array = mask
        has_alpha = array.ndim == 3 and array.shape[-1] in (2, 4)
    else:
        raise ValueError(f"mask must be a PIL image, numpy array, torch tensor or path, got {type(mask).__name__}")
    if array.dtype.kind not in "buif":  # strings, objects, complex numbers: no rule says which of them fill
        raise ValueError(f"mask dtype must be bool, integer or float (white / nonzero = fill), got {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"mask must be 2-D (H, W) or have one channel axis, got shape {array.shape}")
    if height is not None and width is not None and array.shape[:2] != (height, width):
        raise ValueError(
            f"mask size {array.shape[1]}x{array.shape[0]} (WxH) does not match image size {width}x{height}"
        )
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError("mask contains NaN; expected white / nonzero = area to fill")
    if array.ndim == 2:
        colour, opaque = array != 0, np.True_
    elif has_alpha:
        colour, opaque = (array[..., :-1] != 0).any(axis=-1), array[..., -1] != 0
    else:
        colour, opaque = (array != 0).any(axis=-1), np.True_
    if has_alpha and holes_are == "white" and opaque.any() and not opaque.all() and not (colour & opaque).any():
        return opaque.copy()  # black paint on a transparent layer: the painted pixels fill
    hole = (colour if holes_are == "white" else ~colour) & opaque
    _warn_if_nearly_full(hole, array, has_alpha)
    return hole


_MASK_MODES_AS_STORED = {"1", "L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
"""PIL modes whose nonzero values are what the mask displays as non-black; others are converted to RGB first."""

NEARLY_FULL = 0.9
"""A user mask filling more than this share of the image (but not all of it) is reported by a warning."""


def _warn_if_nearly_full(hole: np.ndarray, array: np.ndarray, has_alpha: bool) -> None:
    share = float(hole.mean()) if hole.size else 0.0
    if share <= NEARLY_FULL:
        return
    colours = array[..., :-1] if has_alpha else array
    brightest = colours.max(axis=-1) if colours.ndim == 3 else colours
    typical = float(np.median(brightest[hole]))
    full = 1.0 if array.dtype.kind == "f" else float(np.iinfo(array.dtype).max) if array.dtype.kind in "ui" else 1.0
    why = ""
    if typical < 0.1 * full:
        why = (
            f"; most of the filled pixels are nearly black (median {typical:g}): a JPEG's black is often not 0, "
            "so save masks as PNG"
        )
    elif share == 1:
        return  # plainly all white: inpaint() says what is wrong
    warnings.warn(f"the mask fills {100 * share:.1f} % of the image (white / nonzero = fill){why}", stacklevel=3)


def painted_hole_mask(
    layer: Image.Image | str | os.PathLike, height: int | None = None, width: int | None = None
) -> np.ndarray:
    """The painted-layer variant of :func:`to_hole_mask` (an image editor's layer), as a bool (H, W), True = fill.

    A layer with any transparency is paint on a clear sheet: every pixel that is not fully transparent fills,
    whatever its colour (a black brush paints too). A layer without transparency is an ordinary mask and reads by
    :func:`to_hole_mask` (white / nonzero = fill).
    """
    if isinstance(layer, (str, os.PathLike)):
        layer = open_image(layer, "painted layer")
    if not isinstance(layer, Image.Image):
        raise ValueError(f"a painted layer must be a PIL image or a path, got {type(layer).__name__}")
    _check_open(layer, "painted layer")
    if "A" in layer.getbands() or "transparency" in layer.info:
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            if height is not None and width is not None and alpha.shape != (height, width):
                raise ValueError(
                    f"painted layer size {layer.width}x{layer.height} (WxH) does not match image size {width}x{height}"
                )
            return alpha > 0
    return to_hole_mask(layer, height, width)


# --- a user's image as the network's pixels, and back -----------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
_PIL_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "I;16", "I;16L", "I;16B", "F"}

Patch = tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]
"""New pixels for part of an image: (box: top, left, height, width, as :data:`pconv_hf.windows.Box`; predicted RGB
(height, width, 3) float in [0, 1]; hole (height, width) bool, the pixels to replace)."""


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, height, width = box
    return array[top : top + height, left : left + width]


@dataclass
class Source:
    """A user's image as ``inpaint()`` sees it: model-facing RGB plus a way to rebuild the original type, mode and
    bit depth with new hole pixels (every other pixel bit-identical)."""

    rgb: np.ndarray  # (H, W, 3) uint8 / uint16 / float, not yet scaled
    peak: float  # value of full white in ``rgb``
    compose: Callable[[list[Patch]], Image.Image | np.ndarray | torch.Tensor]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def crop_rgb(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """The pixels in ``box`` as float32 RGB in [0, 1]."""
        return _crop(self.rgb, box).astype(np.float32) / np.float32(self.peak)


def to_source(image: ImageLike) -> Source:
    """Wrap a PIL image, array, tensor or file path as a :class:`Source`."""
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image, "image")
    if isinstance(image, Image.Image):
        _check_open(image, "image")
        return _pil_source(image)
    if isinstance(image, torch.Tensor):
        return _tensor_source(image)
    if isinstance(image, np.ndarray):
        return _array_source(image)
    raise ValueError(f"image must be a PIL image, numpy array, torch tensor or path, got {type(image).__name__}")


def _array_source(array: np.ndarray) -> Source:
    if array.ndim == 2:
        array = array[..., None]
        squeeze = True
    else:
        squeeze = False
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array must be (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image is empty: shape {array.shape}")
    peak = _peak(array)
    channels = array.shape[2]
    rgb = array[..., :3] if channels >= 3 else np.repeat(array, 3, axis=2)

    def compose(patches: list[Patch]) -> np.ndarray:
        out = array.copy()
        for box, prediction, hole in patches:
            region = _crop(out, box)
            region[hole] = _encode(prediction[hole], region[hole], peak)
        return out[..., 0] if squeeze else out

    return Source(rgb, peak, compose)


def _peak(array: np.ndarray) -> float:
    if array.dtype == np.uint8:
        return 255.0
    if array.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            kinds = " and ".join(
                k for k, bad in (("NaN", np.isnan(array).any()), ("infinite", np.isinf(array).any())) if bad
            )
            raise ValueError(
                f"image has {array.size - int(finite.sum()):,} {kinds} values; expected float values in [0, 1]"
            )
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            hint = "; divide 0..255 values by 255" if low >= 0 and high <= 255 else ""
            raise ValueError(f"float images must lie in [0, 1], got values from {low} to {high}{hint}")
        return 1.0
    raise ValueError(f"image dtype must be uint8, uint16 or float in [0, 1], got {array.dtype}")


def _encode(rgb: np.ndarray, like: np.ndarray, peak: float) -> np.ndarray:
    """Predicted RGB pixels (K, 3) in [0, 1] → the original's pixel layout (K, C) and dtype."""
    channels = like.shape[-1]
    values = rgb if channels >= 3 else (rgb @ _LUMA)[:, None]
    if np.issubdtype(like.dtype, np.integer):
        values = np.clip(np.rint(values * peak), 0, peak)
    values = values.astype(like.dtype)
    if channels == 4:  # keep the original alpha
        values = np.concatenate([values, like[:, 3:]], axis=1)
    return values


def _check_open(image: Image.Image, what: str) -> None:
    """Read the pixels of a PIL ``image`` now, so that a closed one (``close()``, or the end of the ``with`` block
    that opened it) is named as such instead of Pillow's "Operation on closed image" from deep inside."""
    try:
        image.load()
    except ValueError as err:
        raise ValueError(f"{what} is a closed PIL image ({err}); pass it before closing it, or open it again") from err
    except OSError as err:  # a lazily opened file that turns out truncated or unreadable
        raise ValueError(f"cannot read the {what} (a PIL image): {err}") from err


def _check_tensor(tensor: torch.Tensor, what: str) -> None:
    """A tensor whose values can be read as an array: dense, not nested, not on the meta device."""
    if tensor.is_nested:
        raise ValueError(f"{what} is a nested tensor; pass one (C, H, W) or (H, W) tensor per image")
    if tensor.layout != torch.strided:
        raise ValueError(f"{what} is a sparse tensor ({tensor.layout}); pass a dense one (tensor.to_dense())")
    if tensor.device.type == "meta":
        raise ValueError(f"{what} is on the meta device and holds no values; pass a CPU or CUDA tensor")


def _tensor_source(tensor: torch.Tensor) -> Source:
    _check_tensor(tensor, "image tensor")
    shape = tuple(tensor.shape)
    if tensor.ndim == 4 and shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
        array = tensor.detach().permute(1, 2, 0)
    elif tensor.ndim == 2:
        array = tensor.detach()
    else:
        raise ValueError(f"image tensor must be (H, W), (C, H, W) or (1, C, H, W) with C in 1, 3, 4, got {shape}")
    if tensor.dtype not in (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"image tensor dtype must be uint8 or float in [0, 1], got {tensor.dtype}")
    numpy_dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    inner = _array_source(array.to("cpu", numpy_dtype).numpy())

    def compose(patches: list[Patch]) -> torch.Tensor:
        out = torch.from_numpy(np.ascontiguousarray(inner.compose(patches)))
        out = out.permute(2, 0, 1) if out.ndim == 3 else out
        return out.reshape(shape).to(device=tensor.device, dtype=tensor.dtype)

    return Source(inner.rgb, inner.peak, compose)


def _pil_source(image: Image.Image) -> Source:
    mode = image.mode
    if mode not in _PIL_MODES:
        raise ValueError(f"unsupported PIL image mode {mode!r}; convert it to RGB first")
    if mode in ("I", "I;16", "I;16L", "I;16B", "F"):
        # Numeric single-channel modes: work on the array and rebuild the same mode.
        array = np.array(image)
        if mode == "I":
            if array.min() < 0 or array.max() > 65535:
                raise ValueError(f"mode 'I' images must hold 0..65535, got {array.min()}..{array.max()}")
            inner = _array_source(array.astype(np.uint16))
        else:
            inner = _array_source(array.astype(array.dtype.newbyteorder("=")))

        def compose_numeric(patches: list[Patch]) -> Image.Image:
            out = inner.compose(patches)
            if mode == "I":
                return Image.fromarray(out.astype(np.int32))
            if mode in ("I;16B", "I;16L"):  # Pillow's convert() from "I;16" to these clips at 255
                return Image.frombytes(mode, image.size, out.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
            result = Image.fromarray(out)
            return result if result.mode == mode else result.convert(mode)

        return Source(inner.rgb, inner.peak, compose_numeric)

    if mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    rgb = np.asarray(image.convert("RGB"))

    def compose(patches: list[Patch]) -> Image.Image:
        out = image.copy()
        for (top, left, _, _), prediction, hole in patches:
            patch = Image.fromarray(np.clip(np.rint(prediction * 255), 0, 255).astype(np.uint8), "RGB")
            with warnings.catch_warnings():  # a crop of a photo already read is no decompression bomb
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                original = out.crop((left, top, left + patch.width, top + patch.height))
            # Pasting through a binary mask copies whole pixels, so everything outside the hole is untouched.
            out.paste(_convert_like(patch, original), (left, top), Image.fromarray(hole.view(np.uint8) * 255))
        return out

    return Source(rgb, 255.0, compose)


def _convert_like(patch: Image.Image, original: Image.Image) -> Image.Image:
    """An RGB patch in the original's mode: palette images reuse their palette, alpha is kept."""
    mode = original.mode
    if mode == "P":
        return patch.quantize(palette=original, dither=Image.Dither.NONE)
    if mode == "1":
        return patch.convert("L").convert("1", dither=Image.Dither.NONE)
    if mode in ("RGBA", "LA"):
        converted = patch.convert(mode[:-1]).convert(mode)
        converted.putalpha(original.getchannel("A"))
        return converted
    return patch.convert(mode)


# --- writing -----------------------------------------------------------------------------------------------

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
WRITE_FORMATS[".bmp"] = "BMP"
"""Extension -> Pillow format of the files :func:`save_image` writes."""

LOSSY_FORMATS = ("JPEG", "WEBP")
"""Formats that take a ``quality`` (JPEG always lossy, default 95; WebP lossless unless a quality is given)."""

DEFAULT_JPEG_QUALITY = 95

# The modes each format holds as they are; any other mode is converted (and the conversion reported).
_HOLDS_MODES = {
    "PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "WEBP": {"RGB", "RGBA"},
    "TIFF": {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"},
    "BMP": {"1", "L", "P", "RGB"},
}
_HOLDS_METADATA = ("PNG", "JPEG", "WEBP", "TIFF")
_ICC_SPACES = {b"RGB ": ("RGB", "RGBA", "P"), b"GRAY": ("L", "LA", "1", "I;16", "I", "F"), b"CMYK": ("CMYK",)}
# TIFF structure tags (sizes, strips, compression, ...), IFD1's thumbnail pointers and the ICC / XMP tags:
# they describe a file's layout, not the photo, and must not travel into another file's EXIF.
_LAYOUT_TAGS = {256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339, 513, 514}
_LAYOUT_TAGS |= {530, 532, 700, 33723, 34675}


def save_image(
    image: Image.Image | np.ndarray,
    path: str | os.PathLike,
    *,
    like: Image.Image | dict | None = None,
    quality: int | None = None,
    compress_level: int | None = None,
) -> list[str]:
    """Write a result image, the one writer every entry point uses; returns notes on what was changed.

    The format comes from the extension (:data:`WRITE_FORMATS`: .png, .jpg/.jpeg, .webp, .tif/.tiff, .bmp).
    What each format cannot hold is converted, and every conversion is reported in the returned notes (one
    short sentence each; print or show them): RGBA / LA / transparent palette to JPEG or BMP are composited on
    white; 16-bit integer images (mode ``I;16`` / ``I``, 0..65535) become 8-bit by dividing by 257 (JPEG, WebP,
    BMP) and float images (mode ``F``, 0..1) become 8-bit by multiplying by 255, or 16-bit PNG by 65535 -- never
    clipped, never blackened. PNG and TIFF keep 16-bit; TIFF keeps float. 16-bit colour -- a uint16 (H, W, 3|4)
    RGB(A) array, as :func:`open_full_depth` reads it and ``inpaint()`` returns it -- is written by OpenCV at 16 bits
    to PNG and TIFF, and at 8 bits (divided by 257, with a note) to JPEG, WebP and BMP.

    Metadata: the ICC colour profile and the EXIF of ``like`` (the source photo, or its ``info`` dict; default
    the image itself) are written to PNG, JPEG, WebP and TIFF. The EXIF's orientation is reset to 1 (the pixels
    are upright) and its thumbnail (IFD1) is dropped; a profile for another colour space than the written
    pixels (e.g. an RGB profile on a grey result) is dropped with a note, as is all metadata for BMP and for a
    16-bit colour TIFF (OpenCV writes none there).

    The file is written to a temporary name beside ``path`` and renamed when complete, so a failure never
    leaves a half-written file (and never destroys an existing one).

    Args:
        image: the PIL image, or 16-bit colour array, to write.
        path: the output file; its folder must exist.
        like: the PIL image (or its ``info`` dict) whose ICC profile and EXIF the file gets.
        quality: 1-100, for lossy formats only: JPEG (default 95) and WebP (default: lossless).
        compress_level: PNG only, zlib level 0-9 (default Pillow's 6): 1 writes a 12-MP photo several times
            faster for a file about 20 % larger; the pixels are the same at every level.

    Returns:
        Notes on every mode conversion and every piece of metadata that could not be kept (empty when none).

    Raises:
        ValueError: an extension :data:`WRITE_FORMATS` lacks, a ``quality`` out of range or for a lossless
            format, or a failed write (naming the file).
    """
    path = Path(path)
    if isinstance(image, np.ndarray):
        _check_deep_colour(image)
    elif not isinstance(image, Image.Image):
        raise ValueError(f"save_image writes PIL images or uint16 RGB(A) arrays, got {type(image).__name__}")
    image_format = WRITE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"cannot tell the image format of {path.name!r}; use {', '.join(WRITE_FORMATS)}")
    check_quality(quality, image_format)
    quality = None if quality is None else int(quality)
    if compress_level is not None and (
        isinstance(compress_level, bool) or not isinstance(compress_level, int) or not 0 <= compress_level <= 9
    ):
        raise ValueError(f"compress_level must be an int from 0 to 9, got {compress_level!r}")
    if compress_level is not None and image_format != "PNG":
        raise ValueError(f"compress_level applies to PNG only; {path.name!r} is {image_format}")
    notes: list[str] = []
    if isinstance(image, np.ndarray):
        like = {} if like is None else like
        if image_format in _HOLDS_DEEP_COLOUR:
            _save_deep_colour(image, path, image_format, like, compress_level, notes)
            return notes
        image = _eight_bit_colour(image, image_format, path.name, notes)
    pixels = _writable_mode(image, image_format, path.name, notes)
    options = _metadata_options(pixels.mode, image_format, image if like is None else like, path.name, notes)
    if image_format == "JPEG":
        options["quality"] = DEFAULT_JPEG_QUALITY if quality is None else quality
    elif image_format == "WEBP":
        options.update({"lossless": True} if quality is None else {"quality": quality})
    elif image_format == "PNG" and compress_level is not None:
        options["compress_level"] = compress_level
    _write_atomically(path, lambda file: pixels.save(file, format=image_format, **options))
    return notes


def check_quality(quality: int | None, image_format: str) -> None:
    """``quality`` is None or an int 1-100, given only for a lossy format (:data:`LOSSY_FORMATS`)."""
    if quality is None:
        return
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an int from 1 to 100, got {quality!r}")
    if image_format not in LOSSY_FORMATS:
        raise ValueError(f"quality applies to lossy formats (JPEG, WebP) only; {image_format} is lossless")


def _writable_mode(image: Image.Image, image_format: str, name: str, notes: list[str]) -> Image.Image:
    """The image in a mode ``image_format`` holds; a conversion adds a note."""
    mode = image.mode
    transparent_palette = mode == "P" and "transparency" in image.info
    if mode in _HOLDS_MODES[image_format] and not (transparent_palette and image_format == "BMP"):
        return image
    if mode in ("I;16B", "I;16L", "I;16N") and "I;16" in _HOLDS_MODES[image_format]:
        return Image.fromarray(np.asarray(image).astype(np.uint16))  # the same values in the byte order it writes
    converted, how = _convert_for(image, image_format)
    notes.append(
        f"{image_format} cannot hold {_describe_mode(mode)} images: {name} is written as "
        f"{_describe_mode(converted.mode)} ({how})"
    )
    return converted


def _convert_for(image: Image.Image, image_format: str) -> tuple[Image.Image, str]:
    """(converted image, how) for a mode the format lacks."""
    mode, holds = image.mode, _HOLDS_MODES[image_format]
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
                raise ValueError(
                    f"a float image must hold values in [0, 1] to be written as {image_format}, got "
                    f"{np.nanmin(values):g} to {np.nanmax(values):g}"
                )
            if "I;16" in holds:
                return Image.fromarray(np.rint(values * 65535).astype(np.uint16)), "0..1 scaled to 0..65535"
            return _grey8(np.rint(values * 255), holds), "0..1 scaled to 0..255"
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"a 32-bit integer image must hold 0..65535, got {values.min():g} to {values.max():g}")
        if "I;16" in holds:
            return Image.fromarray(values.astype(np.uint16)), "same values"
        return _grey8(np.rint(values / 257), holds), "0..65535 scaled to 0..255"
    has_alpha = "A" in image.getbands() or (mode == "P" and "transparency" in image.info) or mode in ("RGBa", "La")
    if has_alpha and "RGBA" in holds:
        return image.convert("RGBA"), "alpha kept"
    if has_alpha:
        target = "L" if mode in ("LA", "La") and "L" in holds else "RGB"
        rgba = image.convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return flat.convert(target), "transparency composited on white"
    target = "L" if mode in ("1", "L") and "L" in holds else "RGB"
    return image.convert(target), "colours converted by Pillow"


def _grey8(values: np.ndarray, holds: set[str]) -> Image.Image:
    grey = Image.fromarray(values.astype(np.uint8))
    return grey if "L" in holds else grey.convert("RGB")


def _describe_mode(mode: str) -> str:
    names = {
        "1": "1-bit",
        "L": "8-bit grey",
        "LA": "grey + alpha",
        "P": "palette",
        "PA": "palette + alpha",
        "RGB": "RGB",
        "RGBA": "RGBA (transparent)",
        "CMYK": "CMYK",
        "I;16": "16-bit grey",
        "I;16B": "16-bit grey",
        "I;16L": "16-bit grey",
        "I": "32-bit integer",
        "F": "32-bit float",
        "YCbCr": "YCbCr",
    }
    return names.get(mode, f"mode {mode}")


def _metadata_options(mode: str, image_format: str, like: Image.Image | dict, name: str, notes: list[str]) -> dict:
    """``icc_profile`` / ``exif`` save options from ``like`` (None when absent, so nothing stale is written)."""
    info = like.info if isinstance(like, Image.Image) else dict(like)
    icc = info.get("icc_profile") or None
    exif = _upright_exif(like if isinstance(like, Image.Image) else info)
    if image_format not in _HOLDS_METADATA:
        kept = [what for what, value in (("ICC profile", icc), ("EXIF", exif)) if value]
        if kept:
            notes.append(f"{image_format} cannot hold an {' or '.join(kept)}: {name} is written without")
        return {}
    if icc is not None and mode not in _ICC_SPACES.get(bytes(icc[16:20]), ()):
        space = bytes(icc[16:20]).decode("latin-1").strip()
        notes.append(f"the source's {space} colour profile does not fit {mode} pixels; {name} has none")
        icc = None
    return {"icc_profile": icc, "exif": exif or b""}


def _upright_exif(like: Image.Image | dict) -> bytes | None:
    """The photo's EXIF (IFD0 with its Exif and GPS sub-IFDs), orientation 1, no thumbnail; None when empty."""
    if isinstance(like, Image.Image):
        source = like.getexif()
    else:
        raw = like.get("exif")
        if not raw:
            return None
        source = Image.Exif()
        try:
            source.load(raw if isinstance(raw, bytes) else raw.tobytes())
        except (SyntaxError, ValueError, OSError, struct_error):
            return None
    return _upright_exif_bytes(source)


def _upright_exif_bytes(source: Image.Exif) -> bytes | None:
    """``source`` (IFD0 with its Exif and GPS sub-IFDs) as EXIF bytes, orientation 1, no thumbnail or file-layout
    tags; None when empty. Sub-IFDs are read from ``source``'s file, so call this while it is open."""
    exif = Image.Exif()
    for tag, value in source.items():
        if tag in _LAYOUT_TAGS or tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            continue
        exif[tag] = value
    for ifd in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
        sub = source.get_ifd(ifd)
        if sub:
            exif[ifd] = dict(sub)
    if not len(exif):
        return None
    if _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    return exif.tobytes()


# --- 16-bit colour, which Pillow cannot hold: written by OpenCV ------------------------------------------------

_HOLDS_DEEP_COLOUR = ("PNG", "TIFF")
"""Formats :func:`save_image` writes 16-bit colour to at 16 bits (the others get 8 bits and a note)."""


def _check_deep_colour(array: np.ndarray) -> None:
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] not in (3, 4) or 0 in array.shape:
        raise ValueError(
            "save_image writes arrays of 16-bit colour only: uint16 (H, W, 3) RGB or (H, W, 4) RGBA, got "
            f"{array.dtype} of shape {array.shape}; pass other images as PIL images"
        )


def _eight_bit_colour(array: np.ndarray, image_format: str, name: str, notes: list[str]) -> Image.Image:
    """16-bit colour as an 8-bit PIL image for a format without 16-bit colour (0..65535 -> 0..255, rounded)."""
    notes.append(f"{image_format} holds 8 bits per channel: {name} is written at 8 bits (0..65535 scaled to 0..255)")
    eight = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)  # rint(value / 257) in integers
    return Image.fromarray(eight, "RGBA" if array.shape[2] == 4 else "RGB")


def _save_deep_colour(
    array: np.ndarray,
    path: Path,
    image_format: str,
    like: Image.Image | dict,
    compress_level: int | None,
    notes: list[str],
) -> None:
    """Write 16-bit RGB(A) to PNG (with the ICC profile and EXIF of ``like``) or TIFF (OpenCV writes none there)."""
    mode = "RGBA" if array.shape[2] == 4 else "RGB"
    options = _metadata_options(mode, image_format, like, path.name, notes)
    icc, exif = options.get("icc_profile"), options.get("exif")
    if image_format == "TIFF" and (icc or exif):
        dropped = " or ".join(what for what, value in (("ICC profile", icc), ("EXIF", exif)) if value)
        notes.append(f"16-bit colour TIFF is written by OpenCV, without an {dropped}: {path.name} has none")
        icc = exif = None
    kinds, chunks = [], []
    if icc:
        kinds.append(cv2.IMAGE_METADATA_ICCP)
        chunks.append(np.frombuffer(icc, np.uint8))
    if exif:  # a PNG's eXIf chunk holds the TIFF structure, without the "Exif\0\0" of a JPEG's APP1
        kinds.append(cv2.IMAGE_METADATA_EXIF)
        chunks.append(np.frombuffer(exif.removeprefix(b"Exif\x00\x00"), np.uint8))
    level = 6 if compress_level is None else compress_level  # Pillow's default, so PNGs come out alike
    params = [cv2.IMWRITE_PNG_COMPRESSION, level] if image_format == "PNG" else []
    bgr = np.ascontiguousarray(array[..., [2, 1, 0, 3][: array.shape[2]]])  # RGB(A) -> OpenCV's BGR(A)
    suffix = ".png" if image_format == "PNG" else ".tif"
    try:
        if kinds:
            ok, encoded = cv2.imencodeWithMetadata(suffix, bgr, kinds, chunks, params)
        else:
            ok, encoded = cv2.imencode(suffix, bgr, params)
    except cv2.error as err:
        raise ValueError(f"cannot write {path}: OpenCV could not encode it ({err})") from err
    if not ok:
        raise ValueError(f"cannot write {path}: OpenCV could not encode it as 16-bit {image_format}")
    _write_atomically(path, lambda file: file.write_bytes(encoded.tobytes()))


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` the file to a temporary name, then rename it to ``path`` (never a half-written ``path``)."""
    # A short hidden name beside the file (the same file system, so the rename is atomic) that fits wherever the
    # final name fits: a name near the 255-byte limit must not fail because of a suffix.
    temporary = path.with_name(f".{path.stem[:32]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        temporary.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {err}") from err
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
