"""Driving a page in headless Chromium, for the tests and benchmarks of the browser page and the Gradio app.

Debian's ``chromium`` through the ``playwright`` package (``executable_path=CHROMIUM``; never ``playwright
install``). ``fill_through_page`` uses the browser page's contract (input#photo, input#mask, button#inpaint,
img#result) and takes a playwright ``Page``; this module itself imports nothing from playwright.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
# No first-run, sync, update or background requests: a test sees every request the page makes.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The Gradio app's pages (its editor draws on 2D canvases): the same, without a GPU process.
APP_CHROMIUM_ARGS = [*CHROMIUM_ARGS, "--disable-gpu"]
# The filled PNG behind img#result (a blob: URL), as base64.
READ_RESULT = """async () => {
  const bytes = new Uint8Array(await (await fetch(document.getElementById("result").src)).arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}"""
# True once img#result shows another image than ``before`` (its src when the fill started).
NEW_RESULT = (
    "before => { const src = document.getElementById('result').getAttribute('src'); return src && src != before; }"
)


def fill_through_page(page, photo: Path, mask: Path, timeout_ms: int) -> Image.Image:
    """Load ``photo`` and ``mask`` (white = fill) into the open browser page, press Inpaint and return the new
    result image once img#result shows it."""
    before = page.get_attribute("#result", "src")
    page.set_input_files("#photo", str(photo))
    page.wait_for_function("() => !document.getElementById('mask').disabled", timeout=timeout_ms)
    page.set_input_files("#mask", str(mask))
    page.click("#inpaint", timeout=timeout_ms)
    page.wait_for_function(NEW_RESULT, arg=before, timeout=timeout_ms)
    return Image.open(io.BytesIO(base64.b64decode(page.evaluate(READ_RESULT))))
