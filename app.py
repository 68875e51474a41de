"""Gradio demo: upload a photo, paint over what should go, press Inpaint; paint more, Inpaint again; Undo, Redo.

    python app.py                                  # the bundled model on http://127.0.0.1:7860
    python app.py --model path/to/model --models_dir runs/   # choose among several saved models

Every browser session keeps a history of full-size states on the server (:class:`History`): the first is the
uploaded photo, each Inpaint adds the result, Undo / Redo step through them. A big photo stays on the server: the page
gets a copy of at most EDIT_SIDE pixels to paint on and previews of at most SCREEN_SIDE pixels; only the downloads are
full size (docs/app.md, "What goes over the network"). The events are exposed to ``gradio_client`` (``/inpaint``,
``/undo``, ``/redo``, ``/load_mask``, ``/reuse_mask``, ``/select_object``); docs/app.md shows how to call them.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import torch
from PIL import Image

import pconv_hf
from pconv_hf import PConvUNet, images
from pconv_hf.cli.common import CliError, add_runtime_arguments, fail
from pconv_hf.engines import choose_engine, network_for
from pconv_hf.inpainting import grow_mask
from pconv_hf.runtime import parse_device

LOG = logging.getLogger("pconv_hf.app")
EXAMPLES_DIR = Path(pconv_hf.__file__).parent / "examples"
# The strategies inpaint() knows, its default first on the page; the radio's labels for those the app can name.
STRATEGY_LABELS = {
    "native": "Native resolution around holes",
    "crop": "Crop around holes",
    "resize": "Resize whole photo",
    "full": "Full resolution",
}
DEFAULT_STRATEGY = inspect.signature(pconv_hf.inpainting.inpaint).parameters["strategy"].default
STRATEGY_VALUES = typing.get_args(pconv_hf.inpainting.Strategy)
STRATEGIES = [(STRATEGY_LABELS.get(value, value), value) for value in STRATEGY_VALUES]
# inpaint()'s own default for its texture stage (copy the hole's fine detail from the photo), read, never repeated.
DEFAULT_TEXTURE = inspect.signature(pconv_hf.inpainting.inpaint).parameters["texture"].default
DEFAULT_DILATE = 4
MAX_DILATE = 64
DEFAULT_MAX_MEGAPIXELS = 40.0
HISTORY_STEPS = 20  # fills a session can undo
HISTORY_MEGABYTES = 2048  # disk one session's history may take; the oldest states go first (never the current)
SESSION_IDLE_SECONDS = 3600  # histories of sessions unused this long are removed (API clients never "close")
MAX_SESSIONS = 64  # histories kept; beyond, the least recently used one is removed (memory and disk level off)
DECODED_SESSIONS = 2  # histories that keep their current state decoded in memory (the others read it from disk)
BUSY_SECONDS = 600  # a request waits this long for the one before it in the same session, then gives up
IMAGE_BUTTONS = ["download", "fullscreen"]
# Big photos stay on the server; the page gets copies. The editor's copy, to paint on: the page sends the editor's
# canvas back as PNGs on every Inpaint (background, painted layer and composite), which takes about 1 s per
# megapixel in a browser without a GPU. Twice the editor's on-screen size, for zooming in.
EDIT_SIDE = 1024
SCREEN_SIDE = 1600  # the result, before/after and mask as shown (full-screen view included); downloads are full size
SCREEN_QUALITY = 90  # JPEG / WebP quality of those screen copies
SELECT_SIDE = 640  # object selection (GrabCut) works on a copy of at most this many pixels a side
PAINT_RGBA = (255, 0, 255, 153)  # how a loaded mask or a selection is shown: the brush's first colour
BRUSH = gr.Brush(colors=[("#ff00ff", 0.6), ("#00ffff", 0.6), ("#ffffff", 1.0), ("#000000", 1.0)], color_mode="defaults")


# --- models ------------------------------------------------------------------------------------------------


def model_sources(specs: list[str], models_dir: str | Path | None = None) -> dict[str, str]:
    """The models to offer, by display name: the ``--model`` entries (or the bundled model) + saved models found
    under ``models_dir`` (any folder with config.json and model.safetensors)."""
    sources = {spec: spec for entry in specs for spec in (part.strip() for part in entry.split(",")) if spec}
    if not sources and pconv_hf.DEFAULT_CHECKPOINT.is_dir():
        sources[f"{pconv_hf.DEFAULT_CHECKPOINT.name} (bundled)"] = str(pconv_hf.DEFAULT_CHECKPOINT)
    if models_dir is not None:
        if not Path(models_dir).is_dir():
            raise ValueError(f"--models_dir {os.fspath(models_dir)!r} is not a folder")
        known = {os.path.realpath(source) for source in sources.values()}
        for config in sorted(Path(models_dir).rglob("config.json")):
            folder = config.parent
            if (folder / "model.safetensors").is_file() and os.path.realpath(folder) not in known:
                sources[str(folder)] = str(folder)
    if not sources:
        raise ValueError(
            pconv_hf.bundled_model_missing(
                "pass a saved model with --model DIR (a folder with config.json and model.safetensors) or a Hub id, "
                "or --models_dir DIR to offer every saved model under DIR"
            )
        )
    return sources


def load_models(sources: Mapping[str, str], device: str | torch.device | None = None) -> dict[str, PConvUNet]:
    """Load every model once, at startup, so a bad path fails now rather than on someone's first click.

    Raises:
        ValueError: naming the model that could not be loaded (one broken folder among many).
    """
    models = {}
    for name, source in sources.items():
        try:
            models[name] = pconv_hf.load_model(source, device=device)
        except (ValueError, OSError, RuntimeError) as err:
            raise ValueError(f"could not load the model {source!r}: {err}") from err
    return models


def check_settings(
    max_megapixels: float,
    history_steps: int,
    history_megabytes: int,
    concurrency: int = 1,
    *,
    max_sessions: int = MAX_SESSIONS,
    flags: bool = False,
) -> None:
    """Refuse settings that would turn a limit off or hang the app (NaN, negative, zero workers).

    Raises:
        ValueError: naming the setting (as a command-line flag when ``flags``) and its value.
    """
    names = {"history_megabytes": "history_mb"} if flags else {}

    def name(setting: str) -> str:
        return f"--{names.get(setting, setting)}" if flags else setting

    def is_number(value) -> bool:
        return isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)

    if not is_number(max_megapixels) or max_megapixels <= 0:
        raise ValueError(f"{name('max_megapixels')} must be a number of megapixels above 0, not {max_megapixels!r}")
    for setting, value, low in [
        ("history_steps", history_steps, 0),
        ("history_megabytes", history_megabytes, 0),
        ("concurrency", concurrency, 1),
        ("max_sessions", max_sessions, 1),
    ]:
        if not is_number(value) or int(value) != value or value < low:
            raise ValueError(f"{name(setting)} must be a whole number from {low}, not {value!r}")


# --- messages for the person -------------------------------------------------------------------------------

# An absolute path (POSIX or Windows), e.g. /tmp/gradio/<hash>/photo.jpg: shown as its file name only.
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\\/\s'\"]+)+[\\/]([^\\/\s'\"]+)")


def user_error(message: str) -> gr.Error:
    """A :class:`gr.Error` for something the person can fix: server paths shown as file names, one log line.

    (Gradio prints a full traceback for every error unless it is told not to; these are not the server's faults.)
    """
    message = _PATH.sub(r"\1", message)
    LOG.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


class Notice(gr.Error):
    """Something harmless to tell the person ("Nothing is painted", "Nothing to undo"): the events show it as a
    warning toast and leave every output as it is (:meth:`Events.noted`); outside them, an error like any other."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)
        self.text = message


def check_size(size: tuple[int, int], max_megapixels: float) -> None:
    width, height = size
    if width * height > max_megapixels * 1e6:
        raise user_error(
            f"The photo is {width}×{height} ({width * height / 1e6:.3g} megapixels); this app takes photos up to "
            f"{max_megapixels:g} megapixels. Downscale it and try again."
        )


# --- photos in ---------------------------------------------------------------------------------------------


def open_photo(path: str | Path) -> tuple[Image.Image, dict]:
    """An uploaded photo file -> (the photo upright and 8-bit, its ICC profile and EXIF for the downloads).

    Read by :func:`pconv_hf.images.open_image` (EXIF orientation, HEIC, ...) and shown as
    :func:`pconv_hf.images.to_eight_bit` makes it; unreadable files are a message.
    """
    try:
        opened = images.open_image(path, "photo")
    except ValueError as err:
        raise user_error(f"Could not read the uploaded photo ({err}). Use a PNG, JPEG, WebP or HEIC image.") from err
    metadata = {key: opened.info[key] for key in ("icc_profile", "exif") if opened.info.get(key)}
    return images.to_eight_bit(opened), metadata


_BOMB = re.compile(r"Image size \((\d+) pixels\)")  # Pillow's decompression-bomb error, which gives no width


def read_photo(path: str | Path, max_megapixels: float) -> tuple[Image.Image, dict]:
    """:func:`open_photo`, after checking the file's size from its header: a 20000×20000 PNG is refused with its
    size and the limit before it is decoded (1.2 GB), an empty or non-image file with what it is."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise user_error(f"The uploaded photo {Path(path).name} is an empty file (0 bytes). Upload the photo again.")
    try:
        size = images.displayed_size(path, "photo")
    except ValueError as err:
        pixels = _BOMB.search(str(err))
        if pixels:
            raise user_error(
                f"The photo has {int(pixels[1]) / 1e6:.3g} megapixels; this app takes photos up to "
                f"{max_megapixels:g} megapixels. Downscale it and try again."
            ) from err
        raise user_error(f"Could not read the uploaded photo ({err}). Use a PNG, JPEG, WebP or HEIC image.") from err
    check_size(size, max_megapixels)
    return open_photo(path)


# --- masks: painted, loaded, scaled ------------------------------------------------------------------------


def painted_area(layers: list[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) at ``size`` (W, H): every painted pixel of every layer (:func:`images.painted_hole_mask`)."""
    hole_mask = np.zeros((size[1], size[0]), bool)
    for layer in layers:
        if layer.size != size:
            raise user_error(
                f"A painted layer is {layer.width}×{layer.height} but the photo is {size[0]}×{size[1]}; "
                "layers must be the size of the photo."
            )
        try:
            hole_mask |= images.painted_hole_mask(layer, size[1], size[0])
        except ValueError as err:
            raise user_error(f"Could not read a painted layer: {err}") from err
    return hole_mask


def scale_mask(hole_mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``hole_mask`` (painted on a downscaled copy) at ``size`` (W, H): every photo pixel it touches is filled."""
    if hole_mask.shape == (size[1], size[0]):
        return hole_mask
    scaled = cv2.resize(hole_mask.view(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR)
    return scaled > 0


def shrink_mask(hole_mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A full-size ``hole_mask`` on a copy of ``size`` (W, H): every copy pixel that covers a hole pixel.

    (So :func:`scale_mask` of the result covers ``hole_mask`` again.)
    """
    if hole_mask.shape == (size[1], size[0]):
        return hole_mask
    return cv2.resize(hole_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def paint_layer(hole_mask: np.ndarray) -> Image.Image:
    """``hole_mask`` as paint: an RGBA layer, PAINT_RGBA where True, clear elsewhere."""
    layer = np.zeros((*hole_mask.shape, 4), np.uint8)
    layer[hole_mask] = PAINT_RGBA
    return Image.fromarray(layer, "RGBA")


class ProposedMask:
    """A full-size mask put on the page as paint (a loaded mask file, the last mask, a selection).

    Painting keeps the full-size mask where its paint stays, and adds what is painted beyond it; erasing removes.
    Kept as bits (a 12-MP mask: 1.5 MB, not 12 MB), as every session may hold one.
    """

    def __init__(self, full: np.ndarray, shown: np.ndarray) -> None:
        self.shape, self.bits = full.shape, np.packbits(full, axis=None)
        self.shown = shown  # bool, at the editor copy's size: the paint the page got

    @property
    def full(self) -> np.ndarray:
        """Bool (H, W) at the photo's size."""
        return np.unpackbits(self.bits, count=self.shape[0] * self.shape[1]).reshape(self.shape).view(bool)

    def hole(self, painted: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The full-size hole for ``painted`` (the editor's paint, at the copy's size)."""
        if painted.shape != self.shown.shape:
            return scale_mask(painted, size)
        kept = self.full & scale_mask(painted & self.shown, size)
        # The browser draws the paint it is sent with a soft edge (a faint pixel around it): paint within one pixel
        # of the proposal is the proposal's edge, not a stroke of the person's.
        near = cv2.dilate(self.shown.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
        return kept | scale_mask(painted & ~near, size)


# --- the pure part: photo + hole in, inpainted photo out ---------------------------------------------------


@dataclass
class Inpainting:
    photo: Image.Image  # the photo as inpainted (alpha dropped when fully opaque, grey as "L")
    result: Image.Image  # same size and mode as ``photo``; pixels outside ``mask`` are identical
    mask: Image.Image  # "L", white = filled (painted area grown by ``dilate``)
    summary: str
    painted: np.ndarray | None = None  # bool: the area asked for, before growing (what "Reuse last mask" reuses)


def check_options(
    strategy: str | None, dilate: int, model_name: str | None, models: Mapping, texture: bool | None = None
) -> str:
    """Refuse options the page cannot send (API calls can send anything); returns the model's name (the first when
    None). Every option the page offers is checked here, not by its Gradio component (see :func:`raw_input`)."""
    if strategy is not None and strategy not in STRATEGY_VALUES:
        raise user_error(f"Unknown strategy {strategy!r}; use {', '.join(map(repr, STRATEGY_VALUES))}.")
    if texture is not None and not isinstance(texture, bool | np.bool_):
        raise user_error(f"Texture from the photo is true or false, not {texture!r}.")
    number = isinstance(dilate, int | float | np.number) and not isinstance(dilate, bool) and math.isfinite(dilate)
    if not number or not 0 <= dilate <= MAX_DILATE or int(dilate) != dilate:
        raise user_error(f"The mask can grow by a whole number of pixels from 0 to {MAX_DILATE}, not {dilate!r}.")
    if model_name is None:
        model_name = next(iter(models))
    if model_name not in models:
        raise user_error(f"Unknown model {model_name!r}; this app offers {', '.join(models)}.")
    return model_name


def fill(
    photo: Image.Image,
    hole_mask: np.ndarray,
    strategy: str | None = None,
    dilate: int = DEFAULT_DILATE,
    model_name: str | None = None,
    texture: bool | None = None,
    *,
    models: Mapping[str, PConvUNet],
    dtype: str = "auto",
) -> Inpainting:
    """Fill ``hole_mask`` (bool, the photo's size, True = fill) grown by ``dilate`` pixels, with inpaint()'s
    defaults for everything the page does not choose (``strategy`` or ``texture`` None: inpaint()'s own default)."""
    start = time.perf_counter()
    model_name = check_options(strategy, dilate, model_name, models, texture)
    if not hole_mask.any():
        raise Notice("Nothing is painted. Pick the brush, paint over what should go, then press Inpaint.")
    painted, hole_mask = hole_mask, grow_mask(hole_mask, int(dilate))  # here, so the mask shown is the mask used
    mask = Image.fromarray(hole_mask.view(np.uint8) * 255, "L")
    photo = images.simplest_mode(photo)
    options = {"dtype": dtype} | ({} if strategy is None else {"strategy": strategy})
    options |= {} if texture is None else {"texture": bool(texture)}
    try:
        result = pconv_hf.inpaint(photo, mask, model=models[model_name], **options)
    except ValueError as err:
        raise user_error(f"Could not inpaint this photo: {err}") from err
    regions = cv2.connectedComponents(hole_mask.view(np.uint8), connectivity=8)[0] - 1
    seconds = time.perf_counter() - start
    width, height = photo.size
    summary = f"Filled {regions} region{'' if regions == 1 else 's'} in {seconds:.2f} s at {width}×{height}"
    return Inpainting(photo, result, mask, summary, painted)


def predict(
    editor_value: dict | None,
    strategy: str | None = None,
    dilate: int = DEFAULT_DILATE,
    model_name: str | None = None,
    texture: bool | None = None,
    *,
    models: Mapping[str, PConvUNet],
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    dtype: str = "auto",
) -> Inpainting:
    """Fill the painted area of an editor value whose background is the photo itself (stateless; no history).

    Args:
        editor_value: ``gr.ImageEditor`` value with PIL images: "background" is the photo, every pixel of
            "layers" that is not transparent is to be filled, whatever its colour. A fully opaque layer (a
            black-and-white mask sent through the API) fills its white / nonzero pixels instead.
        strategy: one of STRATEGY_VALUES (see :func:`pconv_hf.inpainting.inpaint`); None: inpaint()'s default.
        dilate: grow the painted area by this many pixels (covers halos and the brush's soft edge).
        model_name: a key of ``models``; the first one when None.
        texture: copy the hole's fine detail from the photo's own known pixels after the network fills (as
            ``inpaint(texture=...)``); None: inpaint()'s default.
        dtype: the network's precision, as ``inpaint(dtype=...)`` ("auto": bf16 where the device has it natively).
    """
    photo = (editor_value or {}).get("background")
    check_photo(photo, max_megapixels)
    hole_mask = painted_area(editor_value.get("layers") or [], photo.size)
    return fill(photo, hole_mask, strategy, dilate, model_name, texture, models=models, dtype=dtype)


def check_photo(photo: Image.Image | None, max_megapixels: float) -> None:
    if photo is None:
        raise user_error("Upload or paste a photo first, then paint over what should go.")
    check_size(photo.size, max_megapixels)
    if all(low == high for low, high in photo.convert("RGB").getextrema()):
        # Painting on the editor's empty canvas sends a blank white "photo".
        raise user_error("There is no photo (the image is one flat colour). Upload or paste a photo first.")


# --- selecting an object (classical: OpenCV GrabCut, no weights) --------------------------------------------


def paint_roles(layers: list[Image.Image], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all paint, white paint, black paint) of the editor's layers, bool at ``size``: for :func:`select_object`,
    the box is the all-paint's bounding box, white marks the object, black what is not the object."""
    painted = painted_area(layers, size)
    inside = np.zeros_like(painted)
    outside = np.zeros_like(painted)
    for layer in layers:
        rgba = np.asarray(layer.convert("RGBA"))
        solid = rgba[..., 3] >= 250
        inside |= solid & (rgba[..., :3].min(axis=-1) >= 230)
        outside |= solid & (rgba[..., :3].max(axis=-1) <= 25)
    return painted, inside, outside


def select_object(
    photo: Image.Image,
    box: tuple[int, int, int, int],
    inside: np.ndarray | None = None,
    outside: np.ndarray | None = None,
    iterations: int = 5,
) -> np.ndarray:
    """The object inside ``box`` (left, top, right, bottom; exclusive) of ``photo``: bool (H, W), True = object.

    OpenCV's GrabCut (colour models of object and background, graph cut), on a copy of at most SELECT_SIDE pixels,
    seeded with the box (outside = background) and optional ``inside`` / ``outside`` marks (bool, photo size);
    then only the parts touching the marks (or, without marks, the largest part) are kept, holes closed.
    """
    width, height = photo.size
    left, top, right, bottom = box
    if right - left < 4 or bottom - top < 4:
        raise Notice("Drag the brush across the object from one corner to the opposite corner first (that is the box).")
    scale = min(1.0, SELECT_SIDE / max(width, height))
    work_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = np.asarray(photo.convert("RGB").resize(work_size, Image.Resampling.BOX))
    seeds = np.full((work_size[1], work_size[0]), cv2.GC_BGD, np.uint8)
    x0, y0 = int(left * scale), int(top * scale)
    x1, y1 = max(x0 + 2, round(right * scale)), max(y0 + 2, round(bottom * scale))
    seeds[y0:y1, x0:x1] = cv2.GC_PR_FGD
    if not (seeds == cv2.GC_BGD).any():  # the box is the whole photo: its rim is probably background
        rim = max(1, min(work_size) // 50)
        seeds[:rim], seeds[-rim:], seeds[:, :rim], seeds[:, -rim:] = (cv2.GC_PR_BGD,) * 4
    marks = {cv2.GC_FGD: inside, cv2.GC_BGD: outside}
    for label, mark in marks.items():
        if mark is not None and mark.any():
            seeds[shrink_mask(mark, work_size)] = label
    if not ((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any() or not (seeds % 2 == 1).any():
        # GrabCut needs some of each to learn the two colour models (else cv2.error, "!bgdSamples.empty()").
        raise user_error(
            "Nothing is left to tell the object from: the paint marks the whole photo as the object (white) or as "
            "not the object (black). Drag a box across the object only, or dot less, and try again."
        )
    background_model, object_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(
        cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), seeds, None, background_model, object_model, iterations,
        cv2.GC_INIT_WITH_MASK,
    )  # fmt: skip
    selected = clean_selection((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD), marks[cv2.GC_FGD], work_size)
    return cv2.resize(selected.view(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR) > 127


def clean_selection(selected: np.ndarray, inside: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """The parts of a GrabCut selection that touch the ``inside`` marks (else its largest part), holes filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(selected.view(np.uint8), connectivity=8)
    if count <= 1:
        return selected
    if inside is not None and inside.any():
        keep = np.unique(labels[shrink_mask(inside, size) & selected])
        keep = keep[keep > 0]
    else:
        keep = [1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    part = np.isin(labels, keep).view(np.uint8)
    # Holes: what the background flood from the border does not reach.
    outside = np.pad(1 - part, 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2) | part.astype(bool)


# --- the history of one session ----------------------------------------------------------------------------


def fit_screen(image: Image.Image, side: int = SCREEN_SIDE) -> Image.Image:
    """``image`` downscaled to at most ``side`` pixels a side (itself when it fits)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)  # box-reduce first: 3x faster


def screen_copy(image: Image.Image, path: Path, *, side: int = SCREEN_SIDE, lossless: bool = False) -> Path:
    """Save ``image`` for the page, downscaled to ``side``: JPEG (WebP when it has alpha; PNG if ``lossless``).

    ``path`` is without suffix; returns the file written.
    """
    image = fit_screen(image, side)
    if lossless:
        path = path.with_suffix(".png")
        image.save(path, compress_level=1)
    elif image.mode == "RGBA":
        path = path.with_suffix(".webp")
        image.save(path, quality=SCREEN_QUALITY)
    else:
        path = path.with_suffix(".jpg")
        image.save(path, quality=SCREEN_QUALITY)
    return path


@dataclass
class Step:
    """One state of the photo: its full-size file and the copies the page gets."""

    token: str  # names this state to the page and to API clients (the `step` they send back)
    folder: Path
    photo: Path  # full size: the uploaded file (first state) or inpainted.png
    copy: Path  # the editor's copy, at most EDIT_SIDE
    shown: Path  # at most SCREEN_SIDE
    copy_size: tuple[int, int]
    size: tuple[int, int] = (0, 0)  # full size (W, H)
    mask: Path | None = None  # full-size mask.png of the fill that made this state
    mask_shown: Path | None = None
    summary: str = ""


@dataclass(eq=False)
class History:
    """The states of one session's photo on disk: Undo / Redo move ``position``; a fill drops the redo branch.

    Bounded: at most ``max_steps`` fills back and ``max_bytes`` of files (the oldest states go first; the current
    state and the uploaded photo's before-copy stay). ``close()`` removes the folder. Its memory: the current state
    decoded (dropped by :meth:`Sessions.get` once other sessions were used since), a proposal as bits; the last
    fill's mask is on disk. One request at a time changes it: the events hold ``lock``.
    """

    folder: Path
    max_steps: int = HISTORY_STEPS
    max_bytes: int = HISTORY_MEGABYTES << 20
    steps: list[Step] = field(default_factory=list)
    position: int = -1
    metadata: dict = field(default_factory=dict)  # the upload's ICC profile and EXIF, for the downloads
    before: Path | None = None  # the uploaded photo, at most SCREEN_SIDE
    proposal: ProposedMask | None = None  # a mask put on the page as paint, for the next fill
    used: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Names this history in its tokens: a token of another (an earlier server, a removed session) is told apart.
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _image: Image.Image | None = None  # the current state, decoded
    _serial: int = 0

    @property
    def current(self) -> Step | None:
        return self.steps[self.position] if self.steps else None

    def find(self, token: str | None) -> Step | None:
        """The current state when ``token`` names it (the page shows it), else None."""
        current = self.current
        return current if current is not None and token == current.token else None

    def issued(self, token: str | None) -> bool:
        """Whether ``token`` names a state of this history, current or not (one that another request replaced)."""
        prefix = f"{self.folder.name}:{self.instance}:"
        serial = token[len(prefix) :] if isinstance(token, str) and token.startswith(prefix) else ""
        return serial.isdigit() and int(serial) <= self._serial

    @property
    def last_mask_file(self) -> Path:
        return self.folder / "last-mask.png"

    def last_mask(self) -> np.ndarray | None:
        """The last fill's area before growing (bool, full size), kept on disk across photos; None before any."""
        if not self.last_mask_file.is_file():
            return None
        with Image.open(self.last_mask_file) as mask:
            return np.asarray(mask.convert("L")) > 0

    def start(self, photo: Image.Image, metadata: dict, upload: str | Path | None = None) -> Step:
        """A new photo: forget every state, keep its file (``upload``, else a lossless copy of ``photo``)."""
        self.clear()
        step = self._new_step()
        if upload is not None:
            step.photo = step.folder / f"photo{Path(upload).suffix.lower()}"
            shutil.copyfile(upload, step.photo)
        else:
            step.photo = step.folder / "photo.png"
            photo.save(step.photo, compress_level=1)
        self.metadata, self._image = metadata, photo
        self._add_copies(step, photo)
        self.before = self.folder / f"before-{self._serial:04d}{step.shown.suffix}"  # outlives the state
        shutil.copyfile(step.shown, self.before)
        self.steps, self.position = [step], 0
        return step

    def upload_downloads(self, step: Step) -> None:
        """The downloads of the uploaded photo's state: the file as uploaded (its pixels, exactly) and a mask.png
        with nothing filled; the mask is written the first time the state is shown again (after Undo)."""
        if step.mask is None and step.summary == "":
            mask = step.folder / "mask.png"
            save_download(Image.new("L", step.size, 0), mask, {})
            step.mask = mask

    def push(self, done: Inpainting) -> Step:
        """A fill's result becomes the current state (copies written now; the full size by :meth:`write`)."""
        for dropped in self.steps[self.position + 1 :]:
            shutil.rmtree(dropped.folder, ignore_errors=True)
        step = self._new_step()
        step.summary = done.summary
        self._add_copies(step, done.result)
        step.mask_shown = screen_copy(done.mask, step.folder / "mask_shown", lossless=True)
        self.steps[self.position + 1 :] = [step]
        self.position = len(self.steps) - 1
        self._image, self.proposal = done.result, None
        painted = np.asarray(done.mask) > 0 if done.painted is None else done.painted
        Image.fromarray(painted).save(self.last_mask_file)  # mode "1": a few kB
        return step

    def write(self, step: Step, done: Inpainting) -> None:
        """The full-size, lossless downloads of ``step`` (the photo's ICC profile and EXIF kept); then the oldest
        states beyond the bounds are removed."""
        step.photo, step.mask = step.folder / "inpainted.png", step.folder / "mask.png"
        save_download(done.result, step.photo, self.metadata)
        save_download(done.mask, step.mask, {})
        self.trim()

    def move(self, by: int) -> Step | None:
        """Undo (-1) / Redo (+1): the state moved to, or None when there is none that way."""
        if not self.steps or not 0 <= self.position + by < len(self.steps):
            return None
        self.position += by
        self._image, self.proposal = None, None
        return self.current

    def image(self) -> Image.Image:
        """The current state at full size (decoded from its file once)."""
        if self._image is None:
            self._image, _ = open_photo(self.current.photo)
        return self._image

    def forget_image(self) -> None:
        """Free the decoded current state (read from its file again when needed)."""
        self._image = None

    def trim(self) -> None:
        def size(step: Step) -> int:
            return sum(path.stat().st_size for path in step.folder.iterdir())

        while len(self.steps) > 1 and self.position > 0:
            if len(self.steps) - 1 <= self.max_steps and sum(map(size, self.steps)) <= self.max_bytes:
                break
            shutil.rmtree(self.steps.pop(0).folder, ignore_errors=True)
            self.position -= 1

    def clear(self) -> None:
        for step in self.steps:
            shutil.rmtree(step.folder, ignore_errors=True)
        if self.before is not None:
            self.before.unlink(missing_ok=True)
        self.steps, self.position, self._image, self.proposal, self.before = [], -1, None, None, None

    def close(self) -> None:
        self.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _new_step(self) -> Step:
        self._serial += 1
        folder = self.folder / f"step-{self._serial:04d}"
        folder.mkdir(parents=True)
        token = f"{self.folder.name}:{self.instance}:{self._serial}"
        return Step(token, folder, folder / "inpainted.png", folder / "copy", folder / "shown", (0, 0))

    def _add_copies(self, step: Step, image: Image.Image) -> None:
        step.copy = screen_copy(image, step.folder / "copy", side=EDIT_SIDE)
        step.shown = screen_copy(image, step.folder / "shown")
        step.copy_size = fit_screen(image, EDIT_SIDE).size if max(image.size) > EDIT_SIDE else image.size
        step.size = image.size


def save_download(image: Image.Image, path: Path, metadata: dict) -> None:
    """A full-size, lossless PNG download with the upload's ICC profile and EXIF (:func:`images.save_image`)."""
    images.save_image(image, path, like=metadata, compress_level=1)  # 12 MP: ~1 s instead of ~7 s at level 6


class Sessions:
    """One :class:`History` per browser session (``gr.Request.session_hash``), each in a folder under ``root``.

    Bounded, so that the server's memory and disk level off however many sessions come: at most ``max_sessions``
    histories (the least recently used one beyond is removed, as after SESSION_IDLE_SECONDS unused), and only the
    ``decoded`` most recently used keep their current state decoded in memory. A history in use (its lock held) is
    never removed.
    """

    def __init__(
        self,
        root: Path,
        max_steps: int = HISTORY_STEPS,
        max_megabytes: int = HISTORY_MEGABYTES,
        max_sessions: int = MAX_SESSIONS,
        decoded: int = DECODED_SESSIONS,
    ) -> None:
        self.root, self.max_steps, self.max_bytes = Path(root), max_steps, max_megabytes << 20
        self.max_sessions, self.decoded = max_sessions, decoded
        self.histories: dict[str, History] = {}  # least recently used first
        self._lock = threading.Lock()  # requests of different sessions run in different threads

    def get(self, request: gr.Request | None) -> History:
        key = getattr(request, "session_hash", None) or uuid.uuid4().hex  # a bare HTTP call: its own history
        with self._lock:
            history = self.histories.pop(key, None)
            if history is None:
                folder = self.root / f"session-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
                history = History(folder, self.max_steps, self.max_bytes)
            self.histories[key] = history  # now the most recently used
            history.used = time.time()
            self._sweep(keep=history)
        return history

    def close(self, request: gr.Request | None) -> None:
        """The session ended (its tab was closed): its files go at once."""
        with self._lock:
            history = self.histories.pop(getattr(request, "session_hash", None) or "", None)
        if history is not None:
            with history.lock:
                history.close()

    def sweep(self, idle_seconds: float = SESSION_IDLE_SECONDS) -> None:
        with self._lock:
            self._sweep(idle_seconds)

    def _sweep(self, idle_seconds: float = SESSION_IDLE_SECONDS, keep: History | None = None) -> None:
        """Remove idle histories and the least recently used beyond ``max_sessions``; forget decoded states."""
        now, excess = time.time(), len(self.histories) - self.max_sessions
        for key, history in list(self.histories.items()):  # least recently used first
            if history is keep or not history.lock.acquire(blocking=False):
                continue  # in use: its request goes on
            try:
                if excess > 0 or now - history.used > idle_seconds:
                    del self.histories[key]
                    history.close()
                    excess -= 1
            finally:
                history.lock.release()
        for history in list(self.histories.values())[: max(0, len(self.histories) - self.decoded)]:
            if history is not keep and history.lock.acquire(blocking=False):
                history.forget_image()
                history.lock.release()


# --- Gradio 6.31 work-arounds, in one place ----------------------------------------------------------------

GRADIO_MEASURED = "6.31.0"  # the Gradio version the work-arounds below were measured on (tests/test_browser.py)
COPY_JS = "(value) => value"  # a frontend-only event that copies one component's value into another
COPY_TWICE_JS = "(value) => [value, value]"  # the same, into two components
# The editor's own stroke Undo / Redo buttons are renamed, so the page's Undo / Redo (of fills) are the only buttons
# named exactly that (Gradio sets their aria-label once, when the toolbar is drawn).
RENAME_JS = """() => {
  const rename = () => document.querySelectorAll('#editor button[aria-label="Undo"], #editor button[aria-label="Redo"]')
    .forEach((button) => {
      const name = `${button.getAttribute("aria-label")} stroke`;
      button.setAttribute("aria-label", name);
      button.title = name;
    });
  rename();
  new MutationObserver(rename).observe(document.body, {childList: true, subtree: true});
}"""

# The editor's layout (Gradio 6 takes CSS only in launch(), so the page adds it on load, whoever launches the app):
# before a photo its 8-pixel canvas (work-around 2 below) would show at 1000 % under tools that do nothing, so those
# are hidden and one line says where photos come from; with a photo, the canvas starts right of the tool bar, which
# covered the photo's left edge (narrowed when the photo arrives: the editor re-fits its canvas on that resize, not
# on one before its canvas exists). A photo dropped on the editor goes into the photo box, the one way photos come in.
EDITOR_CSS = """
#editor:has(.image-container > .empty) :is(.pixi-target, .pixi-target-crop, .top-panel, .toolbar-wrap) {
  visibility: hidden;
}
#editor .image-container > .empty::before {
  content: "Upload or drop a photo (in the Photo box above, or here), then";
  display: block;
}
#editor:not(:has(.image-container > .empty)) :is(.pixi-target, .pixi-target-crop) {
  left: 56px !important;
  width: calc(100% - 56px) !important;
}
"""
LAYOUT_JS = f"""() => {{
  const style = document.createElement("style");
  style.textContent = `{EDITOR_CSS}`;
  document.head.appendChild(style);
  const overEditor = (event) => event.target instanceof Element && event.target.closest("#editor") !== null;
  document.addEventListener("dragover", (event) => {{
    if (overEditor(event) && event.dataTransfer?.types.includes("Files")) event.preventDefault();
  }}, true);
  document.addEventListener("drop", (event) => {{
    const input = document.querySelector("#photo input[type=file]");
    if (!overEditor(event) || !input || !event.dataTransfer?.files.length) return;
    event.preventDefault();
    event.stopPropagation();
    input.files = event.dataTransfer.files;
    input.dispatchEvent(new Event("change", {{bubbles: true}}));
  }}, true);
}}"""


class EditorRelay:
    """The image editor as the page shows it, and a hidden twin that carries its value to and from the server.

    Work-arounds for Gradio's ImageEditor, measured on Gradio GRADIO_MEASURED (the browser tests check them):

    1. **Hidden relay editor and copy events.** Gradio re-reads every component that is an input or output of a
       server event on each status update of every later event; for an ImageEditor that means exporting its canvas
       as PNGs and uploading them again (7 times per click for a photo loaded by the server). So the visible
       ``editor`` takes part in no server event: :meth:`send` copies its value into the hidden ``relay`` in the
       browser (a frontend-only event: no status, no re-reads) before a server event reads the relay, and
       :meth:`show` copies the hidden ``reply`` (what the server event wrote) back into it.
    2. **canvas_size=(8, 8).** Gradio positions layers loaded with a value (the examples, a loaded mask, a
       selection) inside the canvas it had before the photo arrived; a canvas smaller than any photo keeps them
       aligned.
    3. **The wrapped preprocess** of the relay (:meth:`_read`): the composite it is sent is skipped (the app never
       uses it: decoding it is wasted time), a photo sent as a file (the API) is read by :func:`open_photo`
       (upright by its EXIF orientation, 16-bit and float scaled, not clipped) rather than by Gradio, and an
       unreadable upload is a message instead of a stack trace. (Wrapping the instance, not subclassing: Gradio
       writes a ``.pyi`` stub beside any module that subclasses a component.)
    4. **Renamed stroke Undo / Redo** (:meth:`rename_stroke_buttons`): the editor's toolbar has buttons named
       "Undo" and "Redo" (of strokes) that no option removes; a script run on page load names them "Undo stroke" /
       "Redo stroke", so the page's own Undo / Redo (of fills) are the only ones named exactly that.
    5. **No upload fingerprint any more**: the page says which state its editor shows with the state's token
       (a hidden textbox the server sets), so a photo sent through the API is never mistaken for the session's.
    6. **Read by one component, written by another** (``relay`` in, ``reply`` out). When an event returns an update
       for an output (``gr.skip()``, as every harmless note does), Gradio re-creates that component for the session
       from its constructor arguments (``Blocks.postprocess_data``), and the re-created one reads with Gradio's own
       preprocess, not :meth:`_read`: after one "Nothing is painted" every later photo of that session sent through
       the API was decoded by Gradio (EXIF orientation ignored, 16-bit clipped, an unreadable file a traceback).
       So the relay, whose preprocess is wrapped, is never an output of a server event (nor is any
       :func:`raw_input` component, but for the photo box an example fills with a value, never an update);
       :meth:`send` copies the editor into both, so that a note, which leaves the reply as it is, hands the editor
       back its own paint.
    7. **Layout** (:meth:`arrange`, :data:`EDITOR_CSS`): no 8-pixel canvas at 1000 % before a photo, the tool bar
       beside the photo rather than over its left edge, and a photo dropped on the editor loaded by the photo box.
    """

    def __init__(self, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, **editor_options) -> None:
        self.max_megapixels = max_megapixels
        if gr.__version__ != GRADIO_MEASURED:
            LOG.info("Gradio %s: the editor work-arounds were measured on %s", gr.__version__, GRADIO_MEASURED)
        self.editor = gr.ImageEditor(canvas_size=(8, 8), **editor_options)
        self.relay = gr.ImageEditor(
            label="Photo and painted layers", type="pil", image_mode="RGBA", format="png", visible=False
        )
        self._preprocess = self.relay.preprocess
        self.relay.preprocess = self._read
        # What server events write for the editor (never read by the server: its preprocess may be Gradio's).
        self.reply = gr.ImageEditor(
            label="Photo and painted layers", type="pil", image_mode="RGBA", format="png", visible=False
        )

    def send(self, trigger: Callable) -> gr.events.Dependency:
        """``trigger`` (e.g. ``button.click``) copies the editor into the relay and the reply; chain the server
        event with ``.then(...)`` reading the relay and writing the reply."""
        return trigger(None, js=COPY_TWICE_JS, inputs=self.editor, outputs=[self.relay, self.reply])

    def show(self, dependency: gr.events.Dependency) -> gr.events.Dependency:
        """After ``dependency`` succeeded, the reply's value (written by the server) goes into the editor."""
        return dependency.success(None, js=COPY_JS, inputs=self.reply, outputs=self.editor)

    def rename_stroke_buttons(self, demo: gr.Blocks) -> None:
        demo.load(None, js=RENAME_JS)

    def arrange(self, demo: gr.Blocks) -> None:
        """The editor's CSS and its photo drops (:data:`LAYOUT_JS`), set up when the page loads."""
        demo.load(None, js=LAYOUT_JS)

    def _read(self, payload):
        if payload is None:
            return None
        background = getattr(payload, "background", None)
        path = getattr(background, "path", None)
        update = {"composite": None} | ({"background": None} if path else {})
        try:
            value = self._preprocess(payload.model_copy(update=update))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise user_error(f"Could not read the uploaded photo ({err}). Use a PNG, JPEG or WebP image.") from err
        if path:
            photo, metadata = read_photo(path, self.max_megapixels)
            photo.info.update(metadata)  # kept for the downloads of a stateless /inpaint (Events.photo_and_hole)
            value["background"] = photo
        return value


def raw_input(component: gr.components.Component) -> gr.components.Component:
    """Hand ``component``'s value to the event as sent, unchecked: the event checks it (:func:`check_options`,
    :meth:`Events.upload`) with the app's one-line messages. (Gradio's own checks of a slider's range, a radio's or
    dropdown's choices and an uploaded image's format raise errors that print a traceback on the server, and
    TypeErrors for ``None`` or text where a number belongs.) A file is handed over as its path."""

    gradio_preprocess = component.preprocess

    def preprocess(payload):
        if not hasattr(payload, "path"):
            return payload  # a number, a choice
        if payload.path:
            return payload.path
        try:  # an image sent inline (a data: URL), written to a file by Gradio
            return gradio_preprocess(payload)
        except Exception as err:  # whatever Gradio raises for a file it cannot read: the person's problem
            raise user_error(f"Could not read the uploaded file ({err}).") from err

    component.preprocess = preprocess
    return component


# --- the events --------------------------------------------------------------------------------------------


def examples() -> list[dict]:
    """An editor value (photo + painted layer) for every bundled photo that has a ``*_mask.png`` beside it."""
    return [
        {"background": str(photo), "layers": [str(layer)], "composite": None}
        for photo in sorted(EXAMPLES_DIR.glob("*.jpg"))
        if (layer := photo.with_name(f"{photo.stem}_mask.png")).is_file()
    ]


Shown = tuple  # (result shown, summary, downloads, (before, after), mask shown, editor value, step token)
SHOWN_OUTPUTS = 7


@dataclass
class Events:
    """What each button does, for one app: the functions Gradio calls (each takes the session's request)."""

    models: Mapping[str, PConvUNet]
    sessions: Sessions
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    dtype: str = "auto"
    example_values: list[dict] = field(default_factory=examples)

    @staticmethod
    @contextmanager
    def locked(history: History) -> Iterator[None]:
        """Hold ``history`` for one request: one session's history changes one step at a time, whatever
        ``--concurrency`` (a second request of the session waits for the first)."""
        if not history.lock.acquire(timeout=BUSY_SECONDS):
            raise user_error("This session is still busy with an earlier request; try again when it is done.")
        try:
            yield
        finally:
            history.lock.release()

    @staticmethod
    def noted(note: Notice, outputs: int) -> tuple:
        """A harmless message as a warning toast; every output left as it is."""
        LOG.info("note: %s", note.text)
        gr.Warning(note.text)
        return (gr.skip(),) * outputs

    def upload(self, photo: str | None, request: gr.Request | None = None) -> tuple:
        """A photo file dropped in the photo box: a new history; (editor value, step token, the outputs cleared)."""
        history = self.sessions.get(request)
        with self.locked(history):
            if photo is None:
                history.clear()
                return None, "", None, "", None, None, None
            path = photo
            photo, metadata = read_photo(path, self.max_megapixels)
            step = history.start(photo, metadata, upload=path)
            return self.editor_value(step), step.token, None, "", None, None, None

    def example(self, index: int, request: gr.Request | None = None) -> tuple:
        """An example: a new history, the editor gets the photo and its painted layer; (editor, token, photo)."""
        count = len(self.example_values)
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < count:
            raise user_error(f"There is no example {index!r}; the examples are numbered 0 to {count - 1}.")
        value = self.example_values[index]
        photo, metadata = open_photo(value["background"])
        history = self.sessions.get(request)
        with self.locked(history):
            step = history.start(photo, metadata, upload=value["background"])
        # (Opened, not paths: Gradio only serves files from its own folders.) The examples are small: the editor
        # shows the photo itself.
        opened = {"background": photo, "layers": [Image.open(layer) for layer in value["layers"]], "composite": None}
        return opened, step.token, photo

    def inpaint(
        self,
        editor_value: dict | None,
        strategy: str | None = None,
        dilate: int = DEFAULT_DILATE,
        model_name: str | None = None,
        step_token: str | None = None,
        texture: bool | None = DEFAULT_TEXTURE,
        request: gr.Request | None = None,
    ) -> Iterator[Shown]:
        """One press of Inpaint. Yields what is shown (downloads None while the full-size PNGs are written), then
        again with the downloads; the last yield is complete (what API clients get). ``texture``: "Texture from the
        photo" (None: inpaint()'s default).

        ``step_token`` names the state the editor shows (its background a copy of that state): the fill works on
        that state at full size. Without it (API calls), the editor value's background is a new photo; a token of a
        state the session no longer has is refused.
        """
        history = self.sessions.get(request)
        with self.locked(history):  # held until the downloads are written and handed over (Gradio closes the
            try:  # generator of a cancelled request, which releases it)
                photo, hole_mask = self.photo_and_hole(history, editor_value, step_token)
                done = fill(
                    photo, hole_mask, strategy, dilate, model_name, texture, models=self.models, dtype=self.dtype
                )
            except Notice as note:
                yield self.noted(note, SHOWN_OUTPUTS)
                return
            step = history.push(done)
            shown = self.shown(history, step)
            big = max(done.result.size) > SCREEN_SIDE
            if big:
                yield (*shown[:1], f"{done.summary} · writing the full-size PNGs…", None, *shown[3:])
            history.write(step, done)
            yield self.shown(history, step)

    def photo_and_hole(
        self, history: History, editor_value: dict | None, step_token: str | None
    ) -> tuple[Image.Image, np.ndarray]:
        """The photo to fill at full size and its hole: the session's current state when the editor shows it,
        else the editor value's background as a new photo."""
        editor_value = editor_value or {}
        layers = editor_value.get("layers") or []
        step = history.find(step_token)
        if step is None and history.issued(step_token):  # another request of this session came first
            raise user_error(
                f"The photo changed before this Inpaint could start: another Inpaint, Undo or Redo of this session "
                f"came first (the photo is now at state {history.position + 1} of {len(history.steps)}). Nothing "
                "was filled; paint on the photo as it is now and press Inpaint again."
            )
        if step is None and step_token:  # never the editor's 1024-pixel copy taken for the photo, silently
            raise user_error(
                "This photo's history is no longer on the server (the app restarted, the session was idle for an "
                f"hour, or it was the least recently used of more than {self.sessions.max_sessions}). Upload the "
                "photo again."
            )
        if step is None:
            photo = editor_value.get("background")
            check_photo(photo, self.max_megapixels)
            # The photo's ICC profile and EXIF, as the relay read them (EditorRelay._read), for the downloads.
            history.start(photo, {key: photo.info[key] for key in ("icc_profile", "exif") if photo.info.get(key)})
            return photo, painted_area(layers, photo.size)
        photo = history.image()
        paint_size = step.copy_size if not layers or layers[0].size == step.copy_size else photo.size
        painted = painted_area(layers, paint_size)
        if history.proposal is not None and paint_size == step.copy_size:
            return photo, history.proposal.hole(painted, photo.size)
        return photo, scale_mask(painted, photo.size)

    def undo(self, request: gr.Request | None = None) -> Shown:
        return self.move(-1, request)

    def redo(self, request: gr.Request | None = None) -> Shown:
        return self.move(+1, request)

    def move(self, by: int, request: gr.Request | None) -> Shown:
        history = self.sessions.get(request)
        with self.locked(history):
            if history.move(by) is None:
                what = "undo" if by < 0 else "redo"
                return self.noted(Notice(f"Nothing to {what}." if history.steps else "Upload a photo first."),
                                  SHOWN_OUTPUTS)  # fmt: skip
            shown = self.shown(history, history.current)
            where = f"{'Undone' if by < 0 else 'Redone'}: state {history.position + 1} of {len(history.steps)}"
            return (shown[0], f"{where}. {shown[1]}", *shown[2:])

    def load_mask(
        self, editor_value: dict | None, mask: str | None, step_token: str | None, request: gr.Request | None = None
    ) -> tuple:
        """A mask file (white / nonzero = fill, :func:`images.to_hole_mask`) put on the current photo as paint,
        beside what is painted; (editor value, summary)."""

        def load(history: History, step: Step) -> tuple:
            if mask is None:
                raise Notice("Choose a mask file (white = fill) to load.")
            width, height = history.image().size
            try:
                hole_mask = images.to_hole_mask(images.open_image(mask, "mask"))
            except ValueError as err:
                raise user_error(f"Could not read the mask ({err}).") from err
            if hole_mask.shape != (height, width):
                raise user_error(
                    f"The mask is {hole_mask.shape[1]}×{hole_mask.shape[0]} but the photo is {width}×{height}; "
                    "a mask must be the size of the photo."
                )
            return self.propose(history, step, editor_value, hole_mask, f"Mask {Path(mask).name} loaded")

        return self.proposing(request, step_token, load)

    def reuse_mask(self, editor_value: dict | None, step_token: str | None, request: gr.Request | None = None) -> tuple:
        """The last fill's mask (of this photo or the one before) put on the current photo as paint."""

        def reuse(history: History, step: Step) -> tuple:
            last_mask = history.last_mask()
            if last_mask is None:
                raise Notice("There is no last mask yet: inpaint something first.")
            width, height = history.image().size
            if last_mask.shape != (height, width):
                raise user_error(
                    f"The last mask is {last_mask.shape[1]}×{last_mask.shape[0]} but this photo is "
                    f"{width}×{height}; it can only be reused on a photo of its size."
                )
            return self.propose(history, step, editor_value, last_mask, "Last mask reused")

        return self.proposing(request, step_token, reuse)

    def select(self, editor_value: dict | None, step_token: str | None, request: gr.Request | None = None) -> tuple:
        """Select the object in the box dragged with the brush (white dots: object, black: not) -> paint."""

        def select(history: History, step: Step) -> tuple:
            layers = (editor_value or {}).get("layers") or []
            painted, inside, outside = paint_roles(layers, step.copy_size)
            if not painted.any():
                raise Notice("Drag the brush across the object from one corner to the opposite corner first.")
            strokes = painted & ~inside & ~outside
            rows, columns = np.nonzero(strokes if strokes.any() else painted)
            box = (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
            photo = history.image()
            scale = photo.width / step.copy_size[0]
            full_box = tuple(round(value * scale) for value in box)
            selected = select_object(photo, full_box, scale_mask(inside, photo.size), scale_mask(outside, photo.size))
            if not selected.any():
                raise Notice("Nothing was selected in that box; drag a box around the object and try again.")
            note = f"Selected {selected.mean():.1%} of the photo"
            return self.propose(history, step, {"layers": []}, selected, note)

        return self.proposing(request, step_token, select)

    def proposing(self, request: gr.Request | None, step_token: str | None, propose: Callable) -> tuple:
        """Run ``propose(history, step)`` on the session's current state, holding its history; a notice leaves
        the editor and the summary as they are."""
        history = self.sessions.get(request)
        with self.locked(history):
            try:
                return propose(history, self.current(history, step_token))
            except Notice as note:
                return self.noted(note, 2)

    def current(self, history: History, step_token: str | None) -> Step:
        """The state ``step_token`` names, when it is the current one; else why not."""
        step = history.find(step_token)
        if step is not None:
            return step
        if history.issued(step_token):
            raise user_error(
                "The photo changed before this request could start: another request of this session came first. "
                "Nothing was done; try again on the photo as it is now."
            )
        if step_token:
            raise user_error("This photo's history is no longer on the server; upload the photo again.")
        raise Notice("Upload a photo first (or press Inpaint once with it, through the API).")

    @staticmethod
    def propose(history: History, step: Step, editor_value: dict | None, hole_mask: np.ndarray, note: str) -> tuple:
        """Put ``hole_mask`` (full size) on the page as paint, merged with the paint already there."""
        shown = shrink_mask(hole_mask, step.copy_size)
        painted = painted_area((editor_value or {}).get("layers") or [], step.copy_size)
        history.proposal = ProposedMask(hole_mask, shown)
        value = {"background": str(step.copy), "layers": [paint_layer(shown | painted)], "composite": None}
        return value, f"{note}: correct it with the brush and eraser, then press Inpaint."

    @staticmethod
    def editor_value(step: Step) -> dict:
        return {"background": str(step.copy), "layers": [], "composite": None}

    def shown(self, history: History, step: Step) -> Shown:
        """The outputs for the current state ``step``: what the page shows, the downloads (the current state at
        full size and the mask of the fill that made it; for the uploaded photo, its file and an empty mask), the
        editor value (the state's copy, nothing painted) and the state's token."""
        history.upload_downloads(step)
        written = step.mask is not None and step.mask.is_file()
        downloads = [str(step.photo), str(step.mask)] if written else None
        summary = step.summary or "The uploaded photo."
        shown, mask_shown = str(step.shown), str(step.mask_shown) if step.mask_shown is not None else None
        if written and step.summary and max(step.size) <= SCREEN_SIDE:  # shown as the lossless download itself
            shown, mask_shown = downloads
        comparison = (str(history.before), shown)
        return shown, summary, downloads, comparison, mask_shown, self.editor_value(step), step.token


# --- the UI ------------------------------------------------------------------------------------------------


@dataclass
class Page:
    """The components of the page (built by :func:`build_page`)."""

    photo: gr.Image
    editor: EditorRelay
    step: gr.Textbox
    strategy: gr.Radio
    dilate: gr.Slider
    texture: gr.Checkbox
    model: gr.Dropdown
    inpaint: gr.Button
    undo: gr.Button
    redo: gr.Button
    load_mask: gr.UploadButton
    reuse_mask: gr.Button
    select: gr.Button
    examples: gr.Dataset
    result: gr.Image
    comparison: gr.ImageSlider
    mask: gr.Image
    summary: gr.Markdown
    downloads: gr.File

    @property
    def shown(self) -> list:
        """The outputs of :meth:`Events.shown`, in order."""
        return [self.result, self.summary, self.downloads, self.comparison, self.mask, self.editor.reply, self.step]


def build_page(models: Mapping[str, PConvUNet], max_megapixels: float, example_values: list[dict]) -> Page:
    """Lay out the page (inside a ``gr.Blocks``); no events."""
    gr.Markdown(
        "# Remove things from photos\n"
        "Upload or paste a photo, pick the **brush** and paint over what should go (any colour), then press "
        "**Inpaint**. Keep painting and inpainting the result; **Undo** / **Redo** step through the fills. "
        "Partial-convolution U-Net ([Liu et al. 2018](https://arxiv.org/abs/1804.07723)); "
        f"photos up to {max_megapixels:g} megapixels, the result keeps the photo's full resolution."
    )
    with gr.Row():
        with gr.Column():
            # The photo arrives here as its own file; the editor gets a copy of at most EDIT_SIDE pixels.
            # (Uploaded into the editor itself, a 12-MP photo would be sent back as 15-MB PNGs on every click.)
            photo = raw_input(gr.Image(
                label="Photo (full resolution stays on the server)",
                elem_id="photo",
                type="filepath",
                image_mode=None,  # the file as it is: no decode and re-encode on the way in
                sources=("upload", "clipboard"),
                height=180,
                buttons=["fullscreen"],
            ))  # fmt: skip
            editor = EditorRelay(
                max_megapixels,
                label="Paint over what should go",
                elem_id="editor",
                type="pil",
                image_mode="RGBA",
                sources=(),  # photos come through the photo box above
                transforms=(),  # no crop / resize tools: the photo stays whole
                layers=False,
                brush=BRUSH,
                format="png",
                height=600,
            )
            step = gr.Textbox(visible=False, label="step")  # the token of the state the editor shows
            with gr.Row():
                inpaint = gr.Button("Inpaint", variant="primary")
                undo = gr.Button("Undo")
                redo = gr.Button("Redo")
            with gr.Row():
                load_mask = gr.UploadButton("Load mask…", file_types=["image"], type="filepath", elem_id="load_mask")
                reuse_mask = gr.Button("Reuse last mask")
                select = gr.Button("Select object")
            gr.Markdown(
                "**Select object**: drag the brush across the object from one corner to the opposite one (its box); "
                "optionally dot it with white (object) or black (not the object); press *Select object*, correct "
                "the proposed paint, then *Inpaint*. **Load mask**: a file the size of the photo, white = fill."
            )
            with gr.Row():
                strategy = raw_input(gr.Radio(STRATEGIES, value=DEFAULT_STRATEGY, label="Large photos"))
                dilate = raw_input(gr.Slider(0, MAX_DILATE, value=DEFAULT_DILATE, step=1, label="Grow mask (pixels)"))
                texture = raw_input(gr.Checkbox(
                    value=DEFAULT_TEXTURE,
                    label="Texture from the photo",
                    info="after the network fills, copy fine detail from the photo's own pixels (slower)",
                ))  # fmt: skip
            model = raw_input(
                gr.Dropdown(list(models), value=next(iter(models)), label="Model", visible=len(models) > 1)
            )
            example_list = gr.Dataset(
                components=[editor.editor],
                samples=[[value] for value in example_values],
                type="index",
                label="Examples: click one, then Inpaint",
                elem_id="examples",
            )
        with gr.Column():
            with gr.Tabs():
                with gr.Tab("Result"):
                    result = gr.Image(
                        label="Result", elem_id="result", type="filepath", interactive=False, buttons=IMAGE_BUTTONS
                    )
                with gr.Tab("Before / after"):
                    comparison = gr.ImageSlider(label="Before / after", type="filepath", interactive=False)
                with gr.Tab("Mask used"):
                    mask = gr.Image(
                        label="Mask used (white = filled)",
                        elem_id="mask",
                        type="filepath",
                        interactive=False,
                        buttons=IMAGE_BUTTONS,
                    )
            summary = gr.Markdown(label="summary")
            downloads = gr.File(
                label="Downloads: the current result and the mask of its fill, full size, lossless PNG",
                elem_id="downloads",
                file_count="multiple",
                interactive=False,
            )
    return Page(photo, editor, step, strategy, dilate, texture, model, inpaint, undo, redo, load_mask, reuse_mask,
                select, example_list, result, comparison, mask, summary, downloads)  # fmt: skip


def wire_events(page: Page, events: Events) -> None:
    """Connect the page to ``events``. Every event that reads or writes the history runs in one queue
    ("history"), so an Undo never overtakes the fill before it."""
    editor, queue = page.editor, {"concurrency_id": "history"}
    cleared = [editor.reply, page.step, page.result, page.summary, page.downloads, page.comparison, page.mask]
    uploaded = page.photo.upload(
        events.upload, inputs=page.photo, outputs=cleared, show_progress="hidden", api_name="load_photo", **queue
    )
    editor.show(uploaded)  # not after an error: the strokes stay
    editor.show(page.photo.clear(events.upload, inputs=page.photo, outputs=cleared, api_visibility="private"))
    editor.show(
        page.examples.click(
            events.example,
            inputs=page.examples,
            outputs=[editor.reply, page.step, page.photo],
            show_progress="hidden",
            api_visibility="undocumented",
            **queue,
        )
    )
    settings = [page.strategy, page.dilate, page.model, page.step, page.texture]  # new inputs last: API compatible
    editor.show(
        editor.send(page.inpaint.click).then(
            events.inpaint,
            inputs=[editor.relay, *settings],
            outputs=page.shown,
            api_name="inpaint",
            show_progress_on=page.result,  # one spinner (or error badge), not one per output
            **queue,
        )
    )
    # Undo / Redo read nothing from the editor, but a harmless note ("Nothing to undo") leaves every output as it is
    # and the editor then gets the reply back: sent first, the reply holds the editor's own paint, never older.
    editor.show(editor.send(page.undo.click).then(events.undo, outputs=page.shown, api_name="undo", **queue))
    editor.show(editor.send(page.redo.click).then(events.redo, outputs=page.shown, api_name="redo", **queue))
    proposals = [
        (page.load_mask.upload, events.load_mask, [page.load_mask, page.step], "load_mask"),
        (page.reuse_mask.click, events.reuse_mask, [page.step], "reuse_mask"),
        (page.select.click, events.select, [page.step], "select_object"),
    ]
    for trigger, function, inputs, name in proposals:
        editor.show(
            editor.send(trigger).then(
                function, inputs=[editor.relay, *inputs], outputs=[editor.reply, page.summary], api_name=name, **queue
            )
        )


def build_demo(
    models: Mapping[str, PConvUNet],
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    dtype: str = "auto",
    *,
    history_steps: int = HISTORY_STEPS,
    history_megabytes: int = HISTORY_MEGABYTES,
    max_sessions: int = MAX_SESSIONS,
    workdir: str | Path | None = None,
) -> gr.Blocks:
    """The Blocks app; call ``.queue(...).launch(...)`` on it.

    Each session's history lives in a folder under ``workdir`` (default: a temporary folder removed when the app
    exits), removed when the session's tab closes, after SESSION_IDLE_SECONDS unused, or when it is the least
    recently used of more than ``max_sessions``. ``demo.sessions`` holds them (:class:`Sessions`).

    Raises:
        ValueError: for a limit that is not a number, negative, or (``max_megapixels``) NaN or 0.
    """
    check_settings(max_megapixels, history_steps, history_megabytes, max_sessions=max_sessions)
    temporary = tempfile.TemporaryDirectory(prefix="pconv_hf_app-") if workdir is None else None
    sessions = Sessions(Path(workdir or temporary.name), history_steps, history_megabytes, max_sessions)
    events = Events(models, sessions, max_megapixels, dtype)
    with gr.Blocks(title="pconv_hf inpainting", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        page = build_page(models, max_megapixels, events.example_values)
        wire_events(page, events)
        page.editor.rename_stroke_buttons(demo)
        page.editor.arrange(demo)
        demo.unload(sessions.close)
    demo.sessions = sessions
    demo.workdir = temporary  # the temporary folder lives (and is removed) with the app
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Inpainting demo: paint over what should go, press Inpaint.")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR_OR_HUB_ID",
        help="a saved model folder or Hub id; repeat or comma-separate to offer several (default: the bundled model)",
    )
    parser.add_argument("--models_dir", help="also offer every saved model (config.json + model.safetensors) under it")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    add_runtime_arguments(parser)
    parser.add_argument("--max_megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, help="largest photo accepted")
    parser.add_argument("--concurrency", type=int, default=1, help="requests inpainted at the same time")
    parser.add_argument("--history_steps", type=int, default=HISTORY_STEPS, help="fills each session can undo")
    parser.add_argument(
        "--history_mb", type=int, default=HISTORY_MEGABYTES, help="disk space of one session's history (MB)"
    )
    parser.add_argument(
        "--max_sessions", type=int, default=MAX_SESSIONS, help="histories kept (the least recently used goes first)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    LOG.setLevel(logging.INFO)  # one line per refused request
    try:
        check_settings(
            args.max_megapixels, args.history_steps, args.history_mb, args.concurrency,
            max_sessions=args.max_sessions, flags=True,
        )  # fmt: skip
        models = load_models(model_sources(args.model, args.models_dir), parse_device(args.device))
    except (CliError, ValueError, RuntimeError) as err:
        fail("app.py", err)
    for name, model in models.items():  # which engine fills (pconv_hf.engines): one line per model
        choice = choose_engine(model, dtype=args.dtype)
        print(f"{name}: {choice.describe()}", flush=True)
        network_for(model, choice)  # an ONNX export or session is made now, not on the first click
    demo = build_demo(
        models,
        max_megapixels=args.max_megapixels,
        dtype=args.dtype,
        history_steps=args.history_steps,
        history_megabytes=args.history_mb,
        max_sessions=args.max_sessions,
    )
    demo.queue(default_concurrency_limit=args.concurrency, max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
