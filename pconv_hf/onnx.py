"""ONNX: export a PConvUNet to one ``.onnx`` file, and inpaint with it on ONNX Runtime.

    pconv-export out.onnx                       # the bundled model
    pconv-export path/to/model-folder out.onnx --opset 18
    pconv-export --web site/ [--model M] [--quantize uint8]   # a static page that runs it in the browser
    pconv-export --serve site/                               # serve that page locally (wasm threads on)

The file holds the network only (no pre- or post-processing): inputs ``image`` (N, C, H, W) float32 in [0, 1]
and ``mask`` (N, 1, H, W) float32 of {0, 1} with 1 = valid, output ``output`` (N, C, H, W). Batch, height and
width are dynamic, of any size (older files, whose metadata lacks ``pconv_hf.size_multiple``, need multiples of
``2 ** layer_size``). The model config is stored as metadata (``pconv_hf.config``, JSON), so
``pconv_hf.load_model("model.onnx")`` rebuilds everything ``inpaint()`` needs from the file alone.

``onnxruntime`` (and, for exporting, ``onnx`` and ``onnxscript``) come with ``pip install 'pconv_hf[onnx]'``;
they are imported only when used.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .engines import (  # noqa: F401 - CONFIG_KEY, OUTPUT_NAME, INSTALL_HINT, execution_providers: this module's API too
    CONFIG_KEY,
    INPUT_NAMES,
    INSTALL_HINT,
    OUTPUT_NAME,
    SIZE_MULTIPLE_KEY,
    OnnxNetwork,
    _require,
    cpu_session_options,
    execution_providers,
)
from .inpainting import ImageLike, inpaint

if TYPE_CHECKING:
    from .model import PConvUNet

# torch's exporter writes opset 18 natively (its torchlib's version; others go through a version converter), and
# ONNX Runtime runs opset 18 on its CPU and CUDA providers since 1.14.
DEFAULT_OPSET = 18
MIN_OPSET = 17


# --- export ------------------------------------------------------------------------------------------------


def export_onnx(model: PConvUNet, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write ``model`` (in eval mode, float32) as an ONNX file with dynamic batch, height and width.

    Height and width of the inputs may be any size. Unlike ``PConvUNet.forward``, the graph does not check that
    the mask is binary (:class:`OnnxInpainter` does).

    Args:
        model: the network; it is copied to the CPU, so the original keeps its device, dtype and mode.
        path: the ``.onnx`` file to write (its folder is created); the weights are stored inside it.
        opset: ONNX opset, ``DEFAULT_OPSET`` (18) by default; 17 converts with ONNX's version converter.

    Returns:
        ``path``, as a ``Path``.
    """
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET} (default {DEFAULT_OPSET}), got {opset!r}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the ONNX file name must end in .onnx (load_model recognises it so), got {str(path)!r}")
    for package in ("onnx", "onnxscript"):
        _require(package, "exporting to ONNX")
    newest = _require("onnx", "exporting to ONNX").defs.onnx_opset_version()
    if opset > newest:
        raise ValueError(f"opset {opset} is newer than the installed onnx package knows (up to {newest})")

    network = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    # An odd size, so that every level pads and crops as it may have to (sizes are symbolic in the graph); not 0
    # or 1, which torch.export specialises.
    side = 2**network.layer_size + 3
    image = torch.full((2, network.in_channels, side, side), 0.5)
    valid_mask = torch.ones(2, 1, side, side)
    valid_mask[:, :, : side // 2, : side // 2] = 0
    batch = torch.export.Dim("batch", min=1)
    height = torch.export.Dim("height", min=2)
    width = torch.export.Dim("width", min=2)
    shapes = {0: batch, 2: height, 3: width}
    # No gradients: the decoder takes its inference path (convolutions before upsampling, see DecoderBlock).
    with warnings.catch_warnings(), torch.no_grad():
        # image and mask share their dimensions, so the exporter names each only once and says so.
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        program = torch.onnx.export(
            network,
            (image, valid_mask),
            dynamo=True,
            dynamic_shapes={"image": shapes, "mask": shapes},
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            verbose=False,
        )
    program.model.metadata_props[CONFIG_KEY] = json.dumps(network.config, sort_keys=True)
    program.model.metadata_props[SIZE_MULTIPLE_KEY] = "1"
    program.model.doc_string = (
        f"PConvUNet (pconv_hf). image (N, {network.in_channels}, H, W) float32 in [0, 1]; mask (N, 1, H, W) "
        f"float32, 1 = valid, 0 = hole; any H and W. Output: the network prediction, to be "
        "composited with the known pixels."
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a hidden name beside the file and renamed when complete: a full disk or Ctrl+C leaves no
    # partial .onnx (and an existing one as it was). The weights stay inside the file (torch would still split
    # them off past 1.5 GB, named after the temporary file: far above any PConvUNet).
    temporary = path.with_name(f".{path.stem[:32]}.{os.getpid()}.{secrets.token_hex(4)}.tmp.onnx")
    try:
        program.save(temporary, external_data=False)
        os.replace(temporary, path)
    except OSError as err:
        raise ValueError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        temporary.unlink(missing_ok=True)
    return path


# --- running: the session itself is pconv_hf.engines.OnnxNetwork -------------------------------------


class OnnxInpainter(OnnxNetwork):
    """A PConvUNet exported with :func:`export_onnx`, run by ONNX Runtime.

    It is an :class:`~pconv_hf.inpainting.InpaintingNetwork`, so ``inpaint()`` takes it as its model; only the
    network runs in ONNX Runtime, the pre- and post-processing is ``inpaint()``'s.

    Args:
        path: a ``.onnx`` file written by :func:`export_onnx`.
        providers: ONNX Runtime execution providers; by default CUDA when available, else CPU.
        session_options: an ``onnxruntime.SessionOptions``; by default :func:`cpu_session_options`.
    """

    def inpaint(self, image: ImageLike, mask: ImageLike, **kwargs: Any) -> ImageLike:
        """Fill the white (nonzero) area of ``mask`` in ``image``; see :func:`pconv_hf.inpainting.inpaint`."""
        return inpaint(self, image, mask, **kwargs)

    def __repr__(self) -> str:
        return f"OnnxInpainter({str(self.path)!r}, providers={self.providers})"


def is_onnx_file(name_or_path: str | os.PathLike) -> bool:
    """Whether ``load_model`` should read ``name_or_path`` as an ONNX file (by its extension)."""
    return Path(name_or_path).suffix.lower() == ".onnx"
