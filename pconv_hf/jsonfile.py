"""Settings files (a saved model's ``config.json``, a detector's ``anomaly.json``): one JSON object, read with a
one-line ``ValueError`` that names the file when it is not UTF-8, empty, broken or not an object."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json_object(path: str | os.PathLike, label: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; messages name the file as ``label`` and say it should hold ``what`` (e.g.
    ``'settings like {"mode": "inpainting"}'``). Keys and values are the caller's to check."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{label} is not UTF-8 text (byte {err.start}); save it again as UTF-8 JSON") from err
    if not text.strip():
        raise ValueError(f"{label} is empty; expected a JSON object of {what}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{label} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"{label} must hold a JSON object of {what}, got {shown}")
    return value
