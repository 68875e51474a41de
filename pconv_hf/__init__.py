"""pconv_hf: image inpainting with partial convolutions (Liu et al. 2018), shipped the Hugging Face way.

Conventions:
- Images inside the network are float RGB tensors in [0, 1], shape (N, 3, H, W).
- Masks inside the network are float {0, 1} with **1 = valid (known) pixel**, as in the paper.
- At the user edge (``inpaint()``, the app, the CLI) a mask is **white / nonzero = area to fill**, as in
  diffusers and IOPaint; only those entry points convert.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .images import ImageLike
from .inpainting import inpaint as inpaint_with
from .layers import PartialConv2d
from .model import PConvUNet, default_device
from .onnx import OnnxInpainter, execution_providers, is_onnx_file
from .runtime import parse_device

__version__ = "0.1.0"

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "pconv-photos-256"
"""The bundled model: a directory loadable with ``PConvUNet.from_pretrained``."""


def bundled_model_missing(remedy: str = "reinstall pconv_hf or name a saved model folder or Hub id") -> str:
    """The one message for a missing bundled model; each entry point names its own ``remedy``."""
    return f"the bundled model is missing (no folder {DEFAULT_CHECKPOINT}); {remedy}"


def load_model(
    name_or_path: str | Path | None = None, device: str | torch.device | None = None
) -> PConvUNet | OnnxInpainter:
    """A PConvUNet in eval mode from a saved directory or Hub id; the bundled model when None.

    A ``.onnx`` file (from ``PConvUNet.export_onnx`` or ``pconv-export``) gives an :class:`OnnxInpainter` that
    runs the network on ONNX Runtime; ``.inpaint()`` and ``inpaint()`` work the same with either.
    ``device`` ("cpu", "cuda", "cuda:1", a ``torch.device``, or None / "auto") defaults to CUDA when available,
    else CPU; a device this machine lacks is a ValueError.
    """
    if name_or_path is not None and is_onnx_file(name_or_path):
        # ONNX Runtime may have CUDA where torch has not: only the name is checked here, the providers say the rest.
        return OnnxInpainter(
            name_or_path, providers=execution_providers(parse_device(device, "device", check_available=False))
        )
    device = parse_device(device, "device") or default_device()
    if name_or_path is None and not DEFAULT_CHECKPOINT.is_dir():
        raise ValueError(bundled_model_missing())
    return PConvUNet.from_pretrained(DEFAULT_CHECKPOINT if name_or_path is None else name_or_path, map_location=device)


def inpaint(
    image: ImageLike, mask: ImageLike, model: PConvUNet | OnnxInpainter | None = None, **kwargs: Any
) -> ImageLike:
    """Fill the white (nonzero) area of ``mask`` in ``image`` with ``model`` (the bundled one by default).

    See :func:`pconv_hf.inpainting.inpaint` for the options (strategy, dilate, dtype, ...).
    """
    return inpaint_with(_bundled_model() if model is None else model, image, mask, **kwargs)


@lru_cache(maxsize=1)
def _bundled_model() -> PConvUNet:
    """Loaded once per process, so repeated ``inpaint()`` calls do not re-read the weights."""
    return load_model()


__all__ = [
    "DEFAULT_CHECKPOINT",
    "OnnxInpainter",
    "PConvUNet",
    "PartialConv2d",
    "inpaint",
    "load_model",
    "__version__",
]
