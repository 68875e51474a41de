"""The old home of the console commands' shared helpers, now :mod:`pconv_hf.cli.common`; kept only until
pconv_hf/evaluation_native.py imports that (then delete this file)."""

from .cli.common import add_runtime_arguments, run  # noqa: F401
from .cli.common import model_from_flag as load_model  # noqa: F401
