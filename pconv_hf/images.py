"""Reading images: decoding, EXIF orientation, pixel modes, folder listing and the one rule for user masks.

Everything that opens an image file goes through here, so a photo or a mask reads the same way in
``inpaint()``, the CLIs, evaluation and training:

- **Orientation**: files are turned upright by their EXIF orientation tag, as browsers and the app show them;
  the tag is then gone, so results hold upright pixels and carry no orientation.
- **Modes**: 16-bit integer images are scaled by 65535 (every 16/32-bit integer mode), float images are [0, 1].
- **User masks** (:func:`to_hole_mask`): white / nonzero = area to fill; transparent pixels never fill. A JPEG's
  soft or anti-aliased edge pixels are nonzero, so they fill too.
- **Errors** are ``ValueError`` naming the file: unreadable, truncated, or more pixels than Pillow's
  decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).

No ``datasets`` (or other training) import here: ``inpaint()`` and the scoring CLIs need only this.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
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


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16/32-bit integer grey is scaled by 65535, float grey is taken as [0, 1]
    (clipped), transparency is composited on white, CMYK / palette / grey / bilevel go through PIL's converters."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.clip(np.asarray(image, dtype=np.float64) / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


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

    Raises:
        ValueError: naming the file, when it is missing, not an image, truncated, or has more pixels than
            Pillow's decompression-bomb limit.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: {_bomb_message(err)}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"cannot read {what} file {os.fspath(path)!r}: {err}") from err


def _bomb_message(err: Image.DecompressionBombError) -> str:
    """Pillow's decompression-bomb error, as the size and the limit a person can act on."""
    limit = Image.MAX_IMAGE_PIXELS
    return f"{err} (the limit is {limit:,} pixels, PIL.Image.MAX_IMAGE_PIXELS; raise it only for files you trust)"


def displayed_size(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file as displayed (EXIF orientation applied), from its header alone."""
    try:
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


def to_hole_mask(
    mask: ImageLike, height: int | None = None, width: int | None = None, *, holes_are: str = "white"
) -> np.ndarray:
    """The one rule for a user's mask: a bool (H, W) array, True = fill.

    White / nonzero pixels fill (any nonzero channel of a colour mask, whatever the bit depth: a JPEG's soft
    edge or an anti-aliased brush edge fills too); transparent pixels (alpha 0) never fill. A path is read by
    :func:`open_image` (EXIF orientation applied, as for the photo). ``holes_are="black"`` inverts the colour
    test (zero pixels fill), for mask sets drawn the other way round; transparency still never fills.

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
        if mask.mode in ("P", "PA") or (mask.mode in ("L", "RGB") and "transparency" in mask.info):
            mask = mask.convert("RGBA")
        array = np.asarray(mask)
        has_alpha = mask.mode in ("RGBA", "LA", "La", "RGBa")
    elif isinstance(mask, torch.Tensor):
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
    if array.ndim not in (2, 3):
        raise ValueError(f"mask must be 2-D (H, W) or have one channel axis, got shape {array.shape}")
    if height is not None and width is not None and array.shape[:2] != (height, width):
        raise ValueError(
            f"mask size {array.shape[1]}x{array.shape[0]} (WxH) does not match image size {width}x{height}"
        )
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError("mask contains NaN; expected white / nonzero = area to fill")
    if array.ndim == 2:
        colour, opaque = array != 0, True
    elif has_alpha:
        colour, opaque = (array[..., :-1] != 0).any(axis=-1), array[..., -1] != 0
    else:
        colour, opaque = (array != 0).any(axis=-1), True
    return (colour if holes_are == "white" else ~colour) & opaque
