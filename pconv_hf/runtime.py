"""Where and how a model runs: the default device, the autocast dtype ("auto" = bf16 where the device computes it
natively), an eval-mode guard, the device a user names (``--device``) and the memory left. Shared by inference,
evaluation, training and the console commands; knows nothing of the network."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Names of the autocast dtypes the command lines accept (float32 = no autocast), besides "auto"."""


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU with bf16 (Ampere and later), or an x86 CPU with
    AVX-512 BF16 or AMX (read from /proc/cpuinfo; other CPUs and systems count as without)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


CPUINFO = "/proc/cpuinfo"
"""Where the CPU's feature flags are read (a module attribute, so tests can fake another CPU)."""


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read), read once per process."""
    try:
        with open(CPUINFO) as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def autocast_dtype(dtype: torch.dtype | str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a forward pass on ``device``: ``"auto"`` is bf16 where the device computes it
    natively (:func:`native_bf16`), else None (the model's own float32); a name of :data:`DTYPES` or a
    ``torch.dtype`` is taken as given (``torch.float32`` and ``"float32"`` mean no autocast)."""
    if isinstance(dtype, str):
        if dtype == "auto":
            return torch.bfloat16 if native_bf16(device) else None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'auto', {', '.join(map(repr, DTYPES))} or a torch.dtype, got {dtype!r}")
        return DTYPES[dtype]
    if dtype is None or dtype == torch.float32:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be 'auto', {', '.join(map(repr, DTYPES))} or a float torch.dtype, got {dtype!r}")
    return dtype


@contextlib.contextmanager
def eval_mode(model: object) -> Iterator[None]:
    """Run a PyTorch module in eval mode (BatchNorm's running statistics) and give it its mode back afterwards;
    anything else (an ONNX Runtime session, a plain function) runs as it is."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def parse_device(
    value: str | int | torch.device | None, flag: str = "--device", *, check_available: bool = True
) -> torch.device | None:
    """A device a user names (``flag``): None for "auto" (or None: CUDA when available), else the torch device,
    checked to exist on this machine unless ``check_available`` is False (ValueError naming ``flag`` and the value
    if not). A name, a ``torch.device`` or, as in PyTorch, an int (a CUDA index) is accepted. A ``flag`` that starts
    with ``--`` is a command-line flag (``--device gpu: ...``), else a keyword argument (``device='gpu': ...``)."""
    if value is None or value == "auto":
        return None
    named = f"{flag} {value}" if flag.startswith("--") else f"{flag}={value!r}"
    if isinstance(value, bool) or not isinstance(value, (str, int, torch.device)):
        raise ValueError(f"{named}: expected a device name ('cpu', 'cuda', 'cuda:1', 'auto') or a torch.device")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as err:  # torch's message lists a score of device types that cannot run here
        raise ValueError(f"{named}: not a device name; use 'cpu', 'cuda', 'cuda:1', ... or 'auto'") from err
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"{named}: not a device that runs models here; use cpu or cuda")
    if not check_available:
        return device
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{named}: MPS is not available on this machine")
    if device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ValueError(f"{named}: XPU is not available on this machine")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{named}: CUDA is not available on this machine; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{named}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def free_memory() -> int | None:
    """Bytes of memory this machine has available now (None where it cannot tell)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
