"""What the console commands share: the one-line error convention, ``--device`` / ``--dtype``, bounded int flags,
loading the model a flag names."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

import torch

import pconv_hf

from ..runtime import parse_device


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 1."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except None and False (required flags, switches, 'not set')."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def fail(prog: str, error: BaseException | str) -> NoReturn:
    """``prog: error: message`` on stderr and exit status 1: never a traceback for a problem the user can fix."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(1)


INTERRUPTED = 130
"""Exit status after Ctrl+C (128 + SIGINT), as shells report it."""


def interrupted(prog: str, error: KeyboardInterrupt) -> NoReturn:
    """``prog: interrupted[: what was done]`` on stderr and exit status 130; a ``KeyboardInterrupt`` raised with
    a message (what was written, how to go on) carries it here."""
    print(f"{prog}: interrupted{f': {error}' if str(error) else ''}", file=sys.stderr)
    sys.exit(INTERRUPTED)


def run(prog: str, command: Callable[[], object]) -> None:
    """Run ``command``; a :class:`CliError`, ``ValueError`` or ``OSError`` (missing file, no permission, disk
    full, ...) or running out of memory ends the program in one line, and warnings print as one line each.
    Ctrl+C ends it with :func:`interrupted` (exit status 130)."""

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            command()
    except (CliError, ValueError, OSError) as error:
        fail(prog, error)
    except KeyboardInterrupt as error:
        interrupted(prog, error)
    except (MemoryError, torch.OutOfMemoryError) as error:
        fail(
            prog,
            f"out of memory ({str(error).splitlines()[0] if str(error) else type(error).__name__}); use "
            "smaller sizes or batches, or a device with more memory",
        )


PORT = (0, 65535)
"""The TCP port range a ``--port`` flag takes (0: a free port picked by the system)."""


def int_range(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an int from ``low`` to ``high`` (``why`` says where the bound comes from)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be from {low:,} to {high:,}{f' ({why})' if why else ''}, got {value:,}"
            )
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def add_runtime_arguments(parser: argparse.ArgumentParser, *, dtype_default: str = "auto") -> None:
    """``--device`` (default auto: CUDA when available; read with :func:`parse_device`) and ``--dtype``."""
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:1', ... (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        default=dtype_default,
        choices=DTYPE_CHOICES,
        help="precision of the network's forward pass (auto: bfloat16 where the device has it natively, else float32; "
        "float16: half precision, for GPUs (on a CPU it runs, about 3x slower than float32))",
    )


def model_from_flag(name_or_path: str | None, device: str | None = "auto", flag: str = "--model"):
    """The model a ``--model`` flag names (None: the bundled one) on the ``--device`` flag's device, by
    :func:`pconv_hf.load_model`; a bad device or model becomes a :class:`CliError` naming ``flag``."""
    chosen = parse_device(device)
    if name_or_path is None and not pconv_hf.DEFAULT_CHECKPOINT.is_dir():
        raise CliError(
            pconv_hf.bundled_model_missing(
                f"pass {flag} DIR (a folder with config.json and model.safetensors) or a Hub id"
            )
        )
    try:
        return pconv_hf.load_model(name_or_path, device=chosen)
    except (ValueError, OSError) as err:
        raise CliError(f"{flag} {name_or_path}: {err}" if name_or_path else str(err)) from err
