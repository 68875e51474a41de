"""The old path of ``pconv-export``'s command line, now :mod:`pconv_hf.cli.export`; kept only until
tests/test_web.py imports that (then delete this file)."""

from .cli.export import build_parser, main  # noqa: F401
