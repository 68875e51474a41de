"""``inpaint(model, image, mask)``: fill the painted area of a photo of any size, mode and type.

This is the user edge: the mask here is **white / nonzero = area to fill** (diffusers' and IOPaint's
convention); it becomes the network's 1 = valid mask inside. Every pixel outside the hole comes back
bit-identical: the result is the original with only hole pixels replaced.

Large photos use the "crop" strategy: each hole region is inpainted in a window around it at the model's
working resolution (``model.sample_size``) and pasted back, so a 12-megapixel photo with a small hole costs
one model pass. "resize" runs the whole photo downscaled to the working resolution; "full" runs it at
native resolution (memory grows with the photo).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np
import torch
from PIL import Image

from .images import ImageLike, open_image, to_hole_mask
from .model import autocast_dtype, eval_mode

Strategy = Literal["crop", "resize", "full"]
Box = tuple[int, int, int, int]  # top, left, height, width

MAX_DILATE = 4096
"""Largest ``dilate`` (pixels)."""
MAX_RESOLUTION = 8192
"""Largest working ``resolution``: an 8192² window is 64 MP, the most one forward pass may hold."""
MAX_CONTEXT = 64.0
"""Largest ``context``: windows are clipped to the photo, so more adds nothing."""
MAX_BATCH_SIZE = 256

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
_PIL_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "I;16", "I;16L", "I;16B", "F"}
_MAX_WINDOWS = 256


class InpaintingNetwork(Protocol):
    """What ``inpaint()`` needs from a model: a :class:`~pconv_hf.PConvUNet` or an ONNX Runtime
    :class:`~pconv_hf.onnx.OnnxInpainter`.

    ``network(image, valid_mask)`` maps images (N, C, H, W) in [0, 1] and masks (N, 1, H, W) of {0, 1}
    (1 = valid), both given on ``device`` in ``dtype``, to the network output (N, C, H, W); H and W are
    multiples of ``size_multiple``.
    """

    sample_size: int

    @property
    def size_multiple(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def __call__(self, image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor: ...


def inpaint(
    model: InpaintingNetwork,
    image: ImageLike,
    mask: ImageLike,
    *,
    strategy: Strategy = "crop",
    resolution: int | None = None,
    context: float = 2.0,
    dilate: int = 0,
    batch_size: int = 8,
    dtype: torch.dtype | str | None = "auto",
) -> Image.Image | np.ndarray | torch.Tensor:
    """Fill the white (nonzero) area of ``mask`` in ``image``.

    Args:
        model: the network (any :class:`InpaintingNetwork`); a PConvUNet runs on its own device (move it with
            ``.to("cuda")``), an ``OnnxInpainter`` on its ONNX Runtime providers.
        image: a PIL image (any mode: RGB, RGBA, L, 16-bit, palette, CMYK, ...), a numpy array (H, W),
            (H, W, 1|3|4) of uint8, uint16 or float in [0, 1], a tensor (H, W), (C, H, W) or (1, C, H, W)
            of uint8 or float in [0, 1], or a file path. A file is turned upright by its EXIF orientation (as
            browsers and the app show it) and the result holds those upright pixels; a PIL image is used as it
            is (apply ``PIL.ImageOps.exif_transpose`` first if it came from a camera).
        mask: same height and width as ``image`` (as displayed, for a file); white / nonzero = area to fill,
            transparent pixels never fill (:func:`pconv_hf.images.to_hole_mask`, the rule everywhere).
        strategy: "crop" (default: windows around the holes), "resize" (whole photo at the working
            resolution) or "full" (whole photo at native resolution).
        resolution: working resolution for "crop" and "resize"; defaults to ``model.sample_size``.
        context: a crop window's side is at least ``context`` times the hole region's longer side, so the
            model sees enough surroundings; larger windows are downscaled to ``resolution``.
        dilate: grow the mask by this many pixels first (covers halos around painted objects).
        batch_size: windows per forward pass.
        dtype: autocast dtype of a PyTorch model's forward pass. "auto" (default): bf16 where the device computes
            it natively (CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX), else the model's own float32;
            "float32" / None never autocasts; "bfloat16", "float16" or a ``torch.dtype`` force one. bf16 changes the
            held-out PSNR / SSIM by less than 0.05 dB / 0.001 (see the README). An ONNX model runs in its own
            dtype ("auto" or "float32" only).

    Returns:
        The same kind of object as ``image`` (a path gives a PIL image), same size and mode family: palette
        images keep their palette, RGBA/LA keep their alpha, 16-bit stays 16-bit.
    """
    if strategy not in ("crop", "resize", "full"):
        raise ValueError(f"strategy must be 'crop', 'resize' or 'full', got {strategy!r}")
    _check_model(model)
    resolution = _bounded_int(
        "resolution",
        model.sample_size if resolution is None else resolution,
        model.size_multiple,
        MAX_RESOLUTION,
        f"pixels, a multiple of {model.size_multiple}; a larger square window is over 64 MP, more than one "
        "forward pass may hold in memory",
    )
    if resolution % model.size_multiple:
        raise ValueError(f"resolution must be a multiple of {model.size_multiple} pixels, got {resolution}")
    dilate = _bounded_int("dilate", dilate, 0, MAX_DILATE, "pixels; a larger grow covers any photo's holes anyway")
    if isinstance(context, bool) or not isinstance(context, (int, float, np.number)) or not 1 <= context <= MAX_CONTEXT:
        raise ValueError(
            f"context must be a number from 1 to {MAX_CONTEXT:g} (window side / hole side), got {context!r}"
        )
    batch_size = _bounded_int("batch_size", batch_size, 1, MAX_BATCH_SIZE, "windows per forward pass")
    if not isinstance(model, torch.nn.Module):
        if dtype not in ("auto", "float32", None, torch.float32):
            raise ValueError(f"dtype (autocast) needs a PyTorch model; {type(model).__name__} runs in its own dtype")
        dtype = None
    else:
        dtype = autocast_dtype(dtype, model.device)

    source = to_source(image)
    hole_mask = to_hole_mask(mask, source.height, source.width)
    hole_mask = grow_mask(hole_mask, dilate)
    if not hole_mask.any():
        return source.compose([])
    if hole_mask.all():
        grown = f" once grown by dilate={dilate}" if dilate else ""
        raise ValueError(
            f"the mask covers the whole image{grown}: nothing is left to fill from (white / nonzero = area to fill)"
        )

    if strategy == "crop":
        boxes = plan_windows(hole_mask, resolution, context)
    else:
        boxes = [(0, 0, source.height, source.width)]
    scale_to = None if strategy == "full" else resolution

    patches = []
    with eval_mode(model):
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start : start + batch_size]
            predictions = _predict_windows(model, source, hole_mask, chunk, scale_to, dtype)
            patches.extend(zip(chunk, predictions))
    return source.compose([(box, prediction, _crop(hole_mask, box)) for box, prediction in patches])


def grow_mask(hole_mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool (H, W) hole mask by ``pixels`` in every direction (a square neighbourhood): the pixels within
    chessboard distance ``pixels`` of a hole, so time and memory grow with the photo, not with ``pixels``."""
    if not pixels or not hole_mask.any():
        return hole_mask
    known = (~hole_mask).view(np.uint8)
    return cv2.distanceTransform(known, cv2.DIST_C, 3) <= pixels


def _check_model(model: object) -> None:
    """A network :func:`inpaint` can run: not a name or path, not weights on the meta device."""
    if isinstance(model, torch.nn.Module) or hasattr(model, "sample_size") and callable(model):
        if getattr(model, "device", None) is not None and torch.device(model.device).type == "meta":
            raise ValueError(
                "the model is on the meta device and holds no weights; load it with pconv_hf.load_model(path, "
                "device='cpu') or move it with .to('cpu')"
            )
        if hasattr(model, "sample_size") and hasattr(model, "size_multiple"):
            return
    raise ValueError(
        f"model must be a PConvUNet or OnnxInpainter (e.g. pconv_hf.load_model(path)), got {type(model).__name__}"
        f"{f' {model!r}' if isinstance(model, (str, os.PathLike)) else ''}"
    )


def _bounded_int(name: str, value: object, low: int, high: int, unit: str) -> int:
    """``value`` as an int from ``low`` to ``high`` (numpy integers accepted, bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int ({unit}), got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high} ({unit}), got {value}")
    return int(value)


# --- planning ----------------------------------------------------------------------------------------------


def plan_windows(hole_mask: np.ndarray, resolution: int, context: float = 2.0) -> list[Box]:
    """Non-overlapping windows that together cover every hole pixel, each with context around its holes.

    Holes closer than an eighth of the working resolution are grouped first, then windows that overlap
    are merged until none do. If the windows would cover as much as the whole photo, the photo is one window.
    """
    height, width = hole_mask.shape
    gap = max(1, resolution // 8)
    grouped = cv2.dilate(hole_mask.view(np.uint8), np.ones((gap, gap), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    if count - 1 > _MAX_WINDOWS:
        return [(0, 0, height, width)]
    # Regions as (top, left, bottom, right) of the holes themselves (undo the grouping dilation).
    regions = []
    for left, top, w, h, _ in stats[1:]:
        sub = hole_mask[top : top + h, left : left + w]
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        if rows.size:
            top, left = int(top + rows[0]), int(left + cols[0])
            regions.append((top, left, top + int(rows[-1] - rows[0]) + 1, left + int(cols[-1] - cols[0]) + 1))

    def window(region: tuple[int, int, int, int]) -> Box:
        top, left, bottom, right = region
        side = max(resolution, math.ceil(context * max(bottom - top, right - left)))
        win_h, win_w = min(side, height), min(side, width)
        win_top = min(max((top + bottom - win_h) // 2, 0), height - win_h)
        win_left = min(max((left + right - win_w) // 2, 0), width - win_w)
        return win_top, win_left, win_h, win_w

    merged = True
    while merged:
        merged = False
        windows = [window(region) for region in regions]
        for i in range(len(windows)):
            for j in range(i + 1, len(windows)):
                if _overlap(windows[i], windows[j]):
                    a, b = regions[i], regions[j]
                    regions[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del regions[j]
                    merged = True
                    break
            if merged:
                break
    windows = [window(region) for region in regions]
    if sum(h * w for _, _, h, w in windows) >= height * width:
        return [(0, 0, height, width)]
    return windows


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _crop(array: np.ndarray, box: Box) -> np.ndarray:
    top, left, height, width = box
    return array[top : top + height, left : left + width]


# --- running the model -------------------------------------------------------------------------------------


@torch.inference_mode()
def _predict_windows(
    model: InpaintingNetwork,
    source: Source,
    hole_mask: np.ndarray,
    boxes: list[Box],
    scale_to: int | None,
    dtype: torch.dtype | None,
) -> list[np.ndarray]:
    """Model predictions (float32 RGB in [0, 1]) for each window, at the window's own size."""
    images, valid_masks, sizes = [], [], []
    for box in boxes:
        rgb, hole = source.crop_rgb(box), _crop(hole_mask, box)
        height, width = hole.shape
        scale = 1.0 if scale_to is None else min(1.0, scale_to / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            # Any pixel that touches the hole stays hole, so the upsampled prediction covers the hole.
            hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        images.append(rgb)
        valid_masks.append(~hole)
        sizes.append((height, width))

    # Pad every window to one canvas, a multiple of 2**layer_size; padding is marked as hole so the
    # partial convolutions ignore it.
    multiple = model.size_multiple
    canvas_h = max(multiple, math.ceil(max(im.shape[0] for im in images) / multiple) * multiple)
    canvas_w = max(multiple, math.ceil(max(im.shape[1] for im in images) / multiple) * multiple)
    batch = np.zeros((len(images), canvas_h, canvas_w, 3), np.float32)
    valid = np.zeros((len(images), canvas_h, canvas_w), np.float32)
    for i, (im, v) in enumerate(zip(images, valid_masks)):
        batch[i, : im.shape[0], : im.shape[1]] = im
        valid[i, : v.shape[0], : v.shape[1]] = v

    device = model.device
    image_tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device=device, dtype=model.dtype)
    valid_tensor = torch.from_numpy(valid)[:, None].to(device=device, dtype=model.dtype)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        output = model(image_tensor, valid_tensor)
    output = output.float().clamp_(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    predictions = []
    for out, im, (height, width) in zip(output, images, sizes):
        out = out[: im.shape[0], : im.shape[1]]
        if out.shape[:2] != (height, width):
            out = np.clip(cv2.resize(out, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)
        predictions.append(out)
    return predictions


# --- inputs and outputs ------------------------------------------------------------------------------------


@dataclass
class Source:
    """The user's image: model-facing RGB plus a way to rebuild the original type with new hole pixels."""

    rgb: np.ndarray  # (H, W, 3) uint8 / uint16 / float, not yet scaled
    peak: float  # value of full white in ``rgb``
    compose: Callable[[list[tuple[Box, np.ndarray, np.ndarray]]], Image.Image | np.ndarray | torch.Tensor]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def crop_rgb(self, box: Box) -> np.ndarray:
        return _crop(self.rgb, box).astype(np.float32) / np.float32(self.peak)


def to_source(image: ImageLike) -> Source:
    """Wrap a PIL image, array, tensor or file path as a :class:`Source`."""
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image, "image")
    if isinstance(image, Image.Image):
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

    def compose(patches: list[tuple[Box, np.ndarray, np.ndarray]]) -> np.ndarray:
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
            raise ValueError(f"float images must lie in [0, 1], got values from {low:g} to {high:g}{hint}")
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


def _tensor_source(tensor: torch.Tensor) -> Source:
    shape = tuple(tensor.shape)
    if tensor.ndim == 4 and shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
        array = tensor.detach().permute(1, 2, 0)
    elif tensor.ndim == 2:
        array = tensor.detach()
    else:
        raise ValueError(f"image tensor must be (H, W), (C, H, W) or (1, C, H, W) with C in 1, 3, 4, got {shape}")
    if tensor.device.type == "meta":
        raise ValueError("image tensor is on the meta device and holds no values; pass a CPU or CUDA tensor")
    if tensor.dtype not in (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"image tensor dtype must be uint8 or float in [0, 1], got {tensor.dtype}")
    numpy_dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    inner = _array_source(array.to("cpu", numpy_dtype).numpy())

    def compose(patches: list[tuple[Box, np.ndarray, np.ndarray]]) -> torch.Tensor:
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

        def compose_numeric(patches: list[tuple[Box, np.ndarray, np.ndarray]]) -> Image.Image:
            out = inner.compose(patches)
            if mode == "I":
                return Image.fromarray(out.astype(np.int32))
            result = Image.fromarray(out)
            return result if result.mode == mode else result.convert(mode)

        return Source(inner.rgb, inner.peak, compose_numeric)

    if mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    rgb = np.asarray(image.convert("RGB"))

    def compose(patches: list[tuple[Box, np.ndarray, np.ndarray]]) -> Image.Image:
        out = image.copy()
        for (top, left, _, _), prediction, hole in patches:
            patch = Image.fromarray(np.clip(np.rint(prediction * 255), 0, 255).astype(np.uint8), "RGB")
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
