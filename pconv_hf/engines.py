"""Which engine runs ``inpaint()``'s network on this machine: ``engine="auto"`` picks the fastest correct one.

Measured on a native-strategy window (512x1024, the bundled model, the network's CPU time on one thread; the
README's timing table and ``benchmarks/bench_engines.py`` for whole fills):

- CUDA, or a CPU that computes bf16 natively (AVX-512 BF16 or AMX): PyTorch eager with bf16 autocast. On such a
  CPU (AMD Zen 4) it took 0.50x the time of float32 eager, ONNX Runtime float32 0.79x (quiet, 2026-12-07).
- Any other CPU (AVX2 only, like most laptops and many cloud CPUs): ONNX Runtime float32 on its CPU provider
  (every graph optimisation, one intra-op thread per PyTorch thread), running an export of the model made once
  and cached on disk (:func:`cached_onnx_path`). It took 0.81x the time of float32 eager with PyTorch's kernels
  limited to AVX2 (ONNX Runtime's cannot be limited so), 0.75x for a whole 12-MP fill; its fill is float32's
  within 1 grey level. Since PyTorch's inference runs in place and in one memory format (the model's
  ``premasked`` path), the two are close on a whole 12-MP fill here (PyTorch float32 with AVX2 kernels 2.02 s,
  ONNX Runtime 1.83 s, both with the refine pass on boxes and windows at their own size); ONNX Runtime stays the
  choice until a real AVX2-only CPU says otherwise.
- Tried and not used: static int8 (QDQ, per-channel weights, calibrated on training photos) of every convolution
  lost 0.51 dB PSNR on the hole (0.05 dB allowed); with the three full-resolution layers left in float32, 0.05 dB
  on average and 0.11 dB on the worst photo, at a speed not measurable for AVX2 here (this CPU's int8 has VNNI).
  Channels-last float32 (the model converted, before the ``premasked`` path) took 0.92x of eager. torch.compile
  was not tried here: its cold compile took 55 s for the training step (README), and every new window shape
  compiles again.

:class:`OnnxNetwork` is the ONNX Runtime session as a network ``inpaint()`` can run (``pconv_hf.onnx`` adds the
export and :class:`~pconv_hf.onnx.OnnxInpainter`'s ``.inpaint()`` on top of it).

Without ``onnxruntime`` (the ``onnx`` extra), or without a cached export and the exporter to make one, ``"auto"``
falls back to PyTorch float32 and says so in :func:`EngineChoice.describe`. Small networks (under
:data:`MIN_ONNX_PARAMETERS`, e.g. test-sized ones) stay in PyTorch: exporting them costs more than it saves.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import runtime

if TYPE_CHECKING:
    from .model import PConvUNet

ENGINES = ("auto", "torch", "onnx")
"""``inpaint(engine=...)``: "auto" (the fastest measured for this machine), "torch" (PyTorch eager, ``dtype``'s
autocast), "onnx" (ONNX Runtime float32 on the CPU, from a cached export)."""
CONFIG_KEY = "pconv_hf.config"
"""The ONNX file's metadata key holding the model config (JSON): the file describes itself."""
SIZE_MULTIPLE_KEY = "pconv_hf.size_multiple"
"""The ONNX file's metadata key saying what its inputs' height and width must be multiples of ("1": any size).
Older files, without it, need multiples of ``2 ** layer_size``."""
INPUT_NAMES = ("image", "mask")
OUTPUT_NAME = "output"
INSTALL_HINT = "pip install 'pconv_hf[onnx]'"
MIN_ONNX_PARAMETERS = 1_000_000
"""Networks smaller than this stay in PyTorch under "auto" (the bundled model has 24.6 M parameters)."""
_SOURCES = ("layers.py", "model.py", "onnx.py")
"""The files that define the exported graph: a change to any of them makes a new cache entry."""


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """This CPU as the timing table names it: "bf16-native" (AVX-512 BF16 or AMX), "avx512", "avx2" or "other"
    (read from /proc/cpuinfo's flags, or ``flags`` when given)."""
    flags = runtime._cpu_flags() if flags is None else flags
    if flags & {"avx512_bf16", "amx_bf16"}:
        return "bf16-native"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, for benchmark headers ("unknown CPU" where it cannot be read)."""
    try:
        with open(runtime.CPUINFO) as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


@dataclass(frozen=True)
class EngineChoice:
    """What runs the network: ``engine`` ("torch" or "onnx"), the autocast ``dtype`` of a torch run (None =
    float32), why (``reason``, shown by :meth:`describe`) and whether the caller named it (``forced``)."""

    engine: str
    dtype: torch.dtype | None
    reason: str
    forced: bool = False

    def describe(self) -> str:
        """One line for the CLI and the app, e.g. "engine: ONNX Runtime float32 (CPU without native bf16)"."""
        if self.engine == "onnx":
            name = "ONNX Runtime float32"
        else:
            name = f"PyTorch {'float32' if self.dtype is None else str(self.dtype).removeprefix('torch.')}"
        return f"engine: {name} ({self.reason})"


def choose_engine(model: object, engine: str = "auto", dtype: torch.dtype | str | None = "auto") -> EngineChoice:
    """The engine ``inpaint()`` runs ``model`` on; nothing is exported or loaded here.

    "auto" with ``dtype="auto"``: bf16 autocast where the device computes bf16 natively (and on every CUDA device
    without it, float32); on other CPUs ONNX Runtime when it is installed and the network is full-size, else
    PyTorch float32. An explicit ``dtype`` keeps PyTorch (it names a PyTorch autocast). "torch" and "onnx" force
    one (ValueError if ONNX Runtime cannot run it).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    if not isinstance(model, torch.nn.Module):
        if engine == "torch":
            raise ValueError(f"engine='torch' needs a PyTorch model; {type(model).__name__} runs on ONNX Runtime")
        return EngineChoice("onnx", None, "an ONNX model")
    device = torch.device(getattr(model, "device", "cpu"))
    if engine == "onnx":
        if dtype not in ("auto", "float32", None, torch.float32):
            raise ValueError(f"engine='onnx' runs float32; got dtype={dtype!r} (use engine='torch' for autocast)")
        problem = _onnx_problem(model, device, need_size=False)
        if problem:
            raise ValueError(f"engine='onnx' cannot run this model: {problem}")
        return EngineChoice("onnx", None, "asked for", forced=True)
    autocast = runtime.autocast_dtype(dtype, device)
    if engine == "torch" or dtype != "auto":
        return EngineChoice("torch", autocast, "asked for" if engine == "torch" else f"dtype={dtype!r}")
    if autocast is not None:
        where = "GPU" if device.type == "cuda" else "CPU"
        return EngineChoice("torch", autocast, f"{where} with native bf16")
    if device.type != "cpu":
        return EngineChoice("torch", None, f"{device.type} without native bf16")
    problem = _onnx_problem(model, device, need_size=True)
    if problem:
        return EngineChoice("torch", None, f"{cpu_kind()}; {problem}")
    first = "" if cached_onnx_path(model).is_file() else "; the first fill exports the model once, about 20 s"
    return EngineChoice("onnx", None, f"{cpu_kind()} CPU without native bf16{first}")


def _onnx_problem(model: torch.nn.Module, device: torch.device, need_size: bool) -> str | None:
    """Why ONNX Runtime cannot (or, under "auto", should not) run ``model``; None when it can."""
    if device.type != "cpu":
        return f"the model is on {device}, ONNX Runtime runs it on the CPU here"
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'pconv_hf[onnx]')"
    if need_size and sum(p.numel() for p in model.parameters()) < MIN_ONNX_PARAMETERS:
        return "a small network, faster in PyTorch than its export costs"
    if not cached_onnx_path(model).is_file() and not all(
        importlib.util.find_spec(name) for name in ("onnx", "onnxscript")
    ):
        return "no cached ONNX export and no exporter to make one (pip install 'pconv_hf[onnx]')"
    return None


# --- ONNX Runtime -----------------------------------------------------------------------------------------------


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


def cpu_session_options() -> Any:
    """ONNX Runtime session options for the CPU provider: every graph optimisation (constant folding, BatchNorm and
    activation fusion, the NCHWc convolution layout) and as many intra-op threads as PyTorch uses (its default is
    one per physical core; ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` set both)."""
    onnxruntime = _require("onnxruntime", "running an ONNX model")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1  # one graph branch at a time: the intra-op threads already fill the cores
    return options


class OnnxNetwork:
    """A PConvUNet exported with :func:`pconv_hf.onnx.export_onnx`, run by ONNX Runtime: an
    :class:`~pconv_hf.inpainting.InpaintingNetwork` (``engine="onnx"`` runs this; :class:`~pconv_hf.onnx.OnnxInpainter`
    adds ``.inpaint()``).

    Args:
        path: a ``.onnx`` file written by :func:`pconv_hf.onnx.export_onnx`.
        providers: ONNX Runtime execution providers; by default CUDA when available, else CPU.
        session_options: an ``onnxruntime.SessionOptions``; by default :func:`cpu_session_options`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: list[str | tuple[str, dict[str, Any]]] | None = None,
        session_options: Any | None = None,
    ):
        # onnxruntime is the onnx extra (heavy, optional): imported when an ONNX model is opened, after
        # _require has named the missing package.
        onnxruntime = _require("onnxruntime", "running an ONNX model")
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"no ONNX file {str(self.path)!r}; write one with PConvUNet.export_onnx or pconv-export")
        providers = execution_providers() if providers is None else providers
        try:
            self.session = onnxruntime.InferenceSession(
                os.fspath(self.path),
                cpu_session_options() if session_options is None else session_options,
                providers=providers,
            )
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
        self._size_multiple = onnx_size_multiple(metadata)

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this (1, any size, for exports with ``SIZE_MULTIPLE_KEY``)."""
        return self._size_multiple

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
                f"image height and width must be multiples of {self.size_multiple} for this export (an older one), "
                f"got {image.shape[2]}x{image.shape[3]}; pad or resize first (inpaint() does this for you)"
            )
        if not np.all((valid_mask == 0) | (valid_mask == 1)):
            raise ValueError("mask must contain only 0 (hole) and 1 (valid); threshold it after resizing")
        (output,) = self.session.run([OUTPUT_NAME], {INPUT_NAMES[0]: image, INPUT_NAMES[1]: valid_mask})
        return torch.from_numpy(output)


def onnx_size_multiple(metadata: dict[str, str]) -> int:
    """What an export's inputs' height and width must be multiples of, from its metadata: "1" (any size) in exports
    that say so, ``2 ** layer_size`` in older ones (their graphs have no padding of odd levels)."""
    if SIZE_MULTIPLE_KEY in metadata:
        return int(metadata[SIZE_MULTIPLE_KEY])
    return 2 ** json.loads(metadata[CONFIG_KEY])["layer_size"]


def _require(package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise ImportError(f"{purpose} needs the {package!r} package: {INSTALL_HINT}") from err


# --- the cached export -------------------------------------------------------------------------------------

# One ONNX Runtime session per model object, remade when its weights change (tensor version counters).
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cache_dir() -> Path:
    """Where exports are cached: ``$PCONV_HF_HOME/onnx`` or ``~/.cache/pconv_hf/onnx``."""
    home = os.environ.get("PCONV_HF_HOME")
    return Path(home) / "onnx" if home else Path.home() / ".cache" / "pconv_hf" / "onnx"


def model_fingerprint(model: PConvUNet) -> str:
    """A digest of the model's config, its weights and buffers, and the package files that define the graph:
    equal for the same network, whatever object or process holds it."""
    digest = hashlib.sha256(json.dumps(model.config, sort_keys=True).encode())
    package = Path(__file__).parent
    for name in _SOURCES:
        digest.update((package / name).read_bytes())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_onnx_path(model: PConvUNet) -> Path:
    """The cache file for ``model``'s export (it may not exist yet)."""
    return cache_dir() / f"pconv-{_fingerprint(model)}.onnx"


def onnx_network(model: PConvUNet) -> OnnxNetwork:
    """An :class:`OnnxNetwork` for ``model`` on the CPU: the cached export, made first if
    missing (about 20 s for the bundled model, once per machine), in a session kept while the model lives."""
    versions = _versions(model)
    held = _SESSIONS.get(model)
    if held is not None and held[0] == versions:
        return held[1]
    path = cached_onnx_path(model)
    if not path.is_file():
        model.export_onnx(path)  # written under a temporary name and renamed: never half a file
    network = OnnxNetwork(path, providers=["CPUExecutionProvider"])
    _SESSIONS[model] = (versions, network)
    return network


def network_for(model: object, choice: EngineChoice) -> tuple[object, torch.dtype | None]:
    """What ``inpaint()`` calls for ``choice`` and the autocast dtype to call it in: ``model`` itself, or its
    ONNX Runtime session. When "auto" chose ONNX Runtime and the export fails, PyTorch float32 runs instead, with a
    warning naming the error; a forced ``engine="onnx"`` raises it."""
    if choice.engine != "onnx" or not isinstance(model, torch.nn.Module):
        return model, choice.dtype
    try:
        return onnx_network(model), None
    except Exception as err:  # noqa: BLE001 - any export failure leaves PyTorch, which always works
        if choice.forced:
            raise
        warnings.warn(f"ONNX export failed, running PyTorch float32 instead: {err}", stacklevel=3)
        return model, None


def _versions(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes when any weight or buffer is modified in place or replaced (optimizer steps, load_state_dict)."""
    return tuple((id(tensor), tensor._version) for tensor in model.state_dict(keep_vars=True).values())


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(model: PConvUNet) -> str:
    """:func:`model_fingerprint`, hashed once per model object and state (0.2 s for the bundled model)."""
    versions = _versions(model)
    held = _FINGERPRINTS.get(model)
    if held is None or held[0] != versions:
        held = (versions, model_fingerprint(model))
        _FINGERPRINTS[model] = held
    return held[1]
