"""ONNX: export a PConvUNet to one ``.onnx`` file, and inpaint with it on ONNX Runtime.

    pconv-export out.onnx                       # the bundled model
    pconv-export path/to/model-folder out.onnx --opset 18
    pconv-export --web site/ [--model M] [--quantize uint8]   # a static page that runs it in the browser
    pconv-export --serve site/                               # serve that page locally (wasm threads on)

The file holds the network only (no pre- or post-processing): inputs ``image`` (N, C, H, W) float32 in [0, 1]
and ``mask`` (N, 1, H, W) float32 of {0, 1} with 1 = valid, output ``output`` (N, C, H, W). Batch, height and
width are dynamic; height and width must be multiples of ``2 ** layer_size`` (the graph's dimensions say so:
``128*height_blocks``). The model config is stored as metadata (``pconv_hf.config``, JSON), so
``pconv_hf.load_model("model.onnx")`` rebuilds everything ``inpaint()`` needs from the file alone.

``onnxruntime`` (and, for exporting, ``onnx`` and ``onnxscript``) come with ``pip install 'pconv_hf[onnx]'``;
they are imported only when used.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .inpainting import ImageLike, inpaint

if TYPE_CHECKING:
    from .model import PConvUNet

CONFIG_KEY = "pconv_hf.config"
INPUT_NAMES = ("image", "mask")
OUTPUT_NAME = "output"
# torch's exporter writes opset 18 natively (its torchlib's version; others go through a version converter), and
# ONNX Runtime runs opset 18 on its CPU and CUDA providers since 1.14.
DEFAULT_OPSET = 18
MIN_OPSET = 17
INSTALL_HINT = "pip install 'pconv_hf[onnx]'"


# --- export ------------------------------------------------------------------------------------------------


def export_onnx(model: PConvUNet, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write ``model`` (in eval mode, float32) as an ONNX file with dynamic batch, height and width.

    Height and width of the inputs must be multiples of ``model.size_multiple`` (``2 ** layer_size``);
    ``inpaint()`` pads to them. Unlike ``PConvUNet.forward``, the graph does not check that the mask is binary
    (:class:`OnnxInpainter` does).

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
    multiple = network.size_multiple
    # Two blocks of each, not one: torch.export specialises dimensions whose example size is 0 or 1.
    image = torch.full((2, network.in_channels, 2 * multiple, 2 * multiple), 0.5)
    valid_mask = torch.ones(2, 1, 2 * multiple, 2 * multiple)
    valid_mask[:, :, :multiple, :multiple] = 0
    batch = torch.export.Dim("batch", min=1)
    height = multiple * torch.export.Dim("height_blocks", min=1)
    width = multiple * torch.export.Dim("width_blocks", min=1)
    shapes = {0: batch, 2: height, 3: width}
    with warnings.catch_warnings():
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
    program.model.doc_string = (
        f"PConvUNet (pconv_hf). image (N, {network.in_channels}, H, W) float32 in [0, 1]; mask (N, 1, H, W) "
        f"float32, 1 = valid, 0 = hole; H and W multiples of {multiple}. Output: the network prediction, to be "
        "composited with the known pixels."
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(path, external_data=False)  # torch still splits off the weights past 1.5 GB
    return path


# --- running -----------------------------------------------------------------------------------------------


def execution_providers(device: str | torch.device | None = None) -> list[str | tuple[str, dict[str, Any]]]:
    """ONNX Runtime execution providers for ``device``: by default CUDA when ONNX Runtime has it, else CPU."""
    onnxruntime = _require("onnxruntime", "running an ONNX model")
    available = onnxruntime.get_available_providers()
    if device is None:
        return [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ValueError(
                "this onnxruntime has no CUDA provider; install onnxruntime-gpu instead, or pass device='cpu'"
            )
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise ValueError(f"ONNX models run on 'cpu' or 'cuda' here, got device {str(device)!r}")


class OnnxInpainter:
    """A PConvUNet exported with :func:`export_onnx`, run by ONNX Runtime.

    It is an :class:`~pconv_hf.inpainting.InpaintingNetwork`, so ``inpaint()`` takes it as its model; only the
    network runs in ONNX Runtime, the pre- and post-processing is ``inpaint()``'s.

    Args:
        path: a ``.onnx`` file written by :func:`export_onnx`.
        providers: ONNX Runtime execution providers; by default CUDA when available, else CPU.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str | tuple[str, dict[str, Any]]] | None = None):
        # onnxruntime is the onnx extra (heavy, optional): imported when an ONNX model is opened, after
        # _require has named the missing package.
        onnxruntime = _require("onnxruntime", "running an ONNX model")
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"no ONNX file {str(self.path)!r}; write one with PConvUNet.export_onnx or pconv-export")
        providers = execution_providers() if providers is None else providers
        try:
            self.session = onnxruntime.InferenceSession(os.fspath(self.path), providers=providers)
        except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf) as err:
            raise ValueError(f"{str(self.path)!r} is not a readable ONNX model: {err}") from err
        metadata = self.session.get_modelmeta().custom_metadata_map
        names = tuple(value.name for value in self.session.get_inputs())
        if CONFIG_KEY not in metadata or names != INPUT_NAMES:
            raise ValueError(
                f"{str(self.path)!r} is not a PConvUNet export (no {CONFIG_KEY!r} metadata or inputs {names} instead "
                f"of {INPUT_NAMES}); write one with PConvUNet.export_onnx or pconv-export"
            )
        self.config: dict[str, Any] = json.loads(metadata[CONFIG_KEY])
        self.sample_size: int = self.config["sample_size"]
        self.layer_size: int = self.config["layer_size"]
        self.in_channels: int = self.config["in_channels"]

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return 2**self.layer_size

    @property
    def device(self) -> torch.device:
        """Where ``inpaint()`` puts the inputs: host memory; ONNX Runtime moves them to its provider."""
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, fastest first."""
        return self.session.get_providers()

    def __call__(self, image: torch.Tensor, valid_mask: torch.Tensor) -> torch.Tensor:
        """The network output (N, C, H, W) for ``image`` (N, C, H, W) and ``valid_mask`` (N, 1, H, W), 1 = valid."""
        image = np.ascontiguousarray(image.detach().to("cpu", torch.float32).numpy())
        valid_mask = np.ascontiguousarray(valid_mask.detach().to("cpu", torch.float32).numpy())
        if (
            image.ndim != 4
            or image.shape[1] != self.in_channels
            or valid_mask.shape != (len(image), 1, *image.shape[2:])
        ):
            raise ValueError(
                f"expected image (N, {self.in_channels}, H, W) and mask (N, 1, H, W), "
                f"got {image.shape} and {valid_mask.shape}"
            )
        if image.shape[2] % self.size_multiple or image.shape[3] % self.size_multiple:
            raise ValueError(
                f"image height and width must be multiples of 2**layer_size = {self.size_multiple}, "
                f"got {image.shape[2]}x{image.shape[3]}; pad or resize first (inpaint() does this for you)"
            )
        if not np.all((valid_mask == 0) | (valid_mask == 1)):
            raise ValueError("mask must contain only 0 (hole) and 1 (valid); threshold it after resizing")
        (output,) = self.session.run([OUTPUT_NAME], {INPUT_NAMES[0]: image, INPUT_NAMES[1]: valid_mask})
        return torch.from_numpy(output)

    def inpaint(self, image: ImageLike, mask: ImageLike, **kwargs: Any) -> ImageLike:
        """Fill the white (nonzero) area of ``mask`` in ``image``; see :func:`pconv_hf.inpainting.inpaint`."""
        return inpaint(self, image, mask, **kwargs)

    def __repr__(self) -> str:
        return f"OnnxInpainter({str(self.path)!r}, providers={self.providers})"


def is_onnx_file(name_or_path: str | os.PathLike) -> bool:
    """Whether ``load_model`` should read ``name_or_path`` as an ONNX file (by its extension)."""
    return Path(name_or_path).suffix.lower() == ".onnx"


def _require(package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise ImportError(f"{purpose} needs the {package!r} package: {INSTALL_HINT}") from err
