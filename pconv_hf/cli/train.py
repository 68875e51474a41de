"""``train_accelerate.py``'s command line (a checkout script, not an installed command): the flags are generated
from :class:`pconv_hf.training_config.TrainingConfig`, the run is :func:`pconv_hf.training.train`."""

from __future__ import annotations

from ..training import parse_args, train
from .common import fail

PROG = "train_accelerate.py"


def main(argv: list[str] | None = None) -> dict:
    """``train(parse_args(argv))``; a bad setting or a missing file ends it with a one-line ``error:`` message and
    exit status 1. Returns what :func:`~pconv_hf.training.train` returns."""
    try:
        return train(parse_args(argv))
    except (ValueError, FileNotFoundError) as error:
        fail(PROG, error)
