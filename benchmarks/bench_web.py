"""Time the browser page (``pconv-export --web``) in headless Chromium, for the table in docs/web.md.

    python benchmarks/bench_web.py [--model M] [--weights float16,uint8] [--threads 1,2] [--out runs/bench-web]

Builds the page folder for the bundled model (or ``--model``) with each kind of stored weights, serves it on
127.0.0.1 with the cross-origin isolation headers, and for each weights x wasm-thread count opens the page in a
fresh browser context (empty cache) and measures:

- first result: from opening the page to the filled PNG of a 256x256 photo with a small hole (model download,
  session creation and one 256x256 network pass at native scale);
- 256 window: a second fill of that photo in the same page (the warm cost of one 256-window job);
- 2400x1600: a photo with two separated holes, one too wide for the network's reach (filled downscaled, then its
  edge band refined at full scale), one a thin stroke (full scale): three network passes;
- 4000x3000: issue 32's 12-MP photo with a 2.5-3.5 % object-removal stroke (``pconv_hf.masks.object_mask``, the
  mask of ``bench_fill_time.py``'s middle column), the native strategy's windows as Python plans them.

Fill columns are the worker's time (planning, resizing and the network; the page's PNG encoding excluded). For
the 2400x1600 photo the page's result is also compared with Python ONNX Runtime's default ``inpaint()`` on the
same ``model.onnx`` (largest and mean grey-level difference in the hole; pixels outside must be equal).
Each cell is one run: run it on a quiet machine, and say so when it was not.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

import pconv_hf
from pconv_hf.onnx import export_onnx
from pconv_hf.web import build_web, make_server
from pconv_hf.web.headless import CHROMIUM, CHROMIUM_ARGS, fill_through_page

TIMEOUT_MS = 600_000


def photos(folder: Path) -> dict[str, tuple[Path, Path]]:
    """The 256x256 one-window case, the 2400x1600 two-hole case and the 12-MP stroke, as PNG photo and mask files."""
    from skimage import data

    from pconv_hf.masks import object_mask

    small = Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.BICUBIC)
    small_mask = np.zeros((256, 256), np.uint8)
    small_mask[110:140, 100:140] = 255
    large = Image.fromarray(data.chelsea()).resize((2400, 1600), Image.Resampling.BICUBIC)
    large_mask = np.zeros((1600, 2400), np.uint8)
    large_mask[300:540, 350:550] = 255
    for step in range(90):
        large_mask[1150 + step : 1162 + step, 1800 + 2 * step : 1812 + 2 * step] = 255
    huge = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BICUBIC)
    huge_mask = (object_mask(3000, 4000, "stroke", (0.025, 0.035), np.random.default_rng(1)) == 0).view(np.uint8) * 255
    files = {}
    for name, photo, mask in (("small", small, small_mask), ("large", large, large_mask), ("huge", huge, huge_mask)):
        photo.save(folder / f"{name}.png")
        Image.fromarray(mask).save(folder / f"{name}-mask.png")
        files[name] = (folder / f"{name}.png", folder / f"{name}-mask.png")
    return files


def fill(page, photo: Path, mask: Path) -> tuple[float, Image.Image]:
    """Fill through the page contract; the worker's fill seconds and the result."""
    result = fill_through_page(page, photo, mask, TIMEOUT_MS)
    return float(page.evaluate("document.body.dataset.fillSeconds")), result


def parity(result: Image.Image, model_file: Path, photo: Path, mask: Path) -> str:
    """Largest / mean grey-level difference in the hole against Python ONNX Runtime (and how many values differ),
    or that pixels outside the hole changed."""
    expected = np.asarray(pconv_hf.load_model(model_file).inpaint(Image.open(photo), mask)).astype(int)
    hole = np.asarray(Image.open(mask)) > 0
    got = np.asarray(result.convert("RGB")).astype(int)
    if not np.array_equal(got[~hole], expected[~hole]):
        return "CHANGED OUTSIDE THE HOLE"
    difference = np.abs(got - expected)[hole]
    changed = f"{np.count_nonzero(difference):,} of {difference.size:,} differ"
    return f"{difference.max()} / {difference.mean():.6f} ({changed})"


def measure(browser, url: str, threads: int, files: dict, model_file: Path, check: bool) -> dict[str, str]:
    context = browser.new_context()  # an empty Cache Storage: the first visit downloads the model
    try:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(f"{url}?backend=wasm&threads={threads}")
        page.wait_for_function("document.body.dataset.model", timeout=TIMEOUT_MS)
        fill(page, *files["small"])
        first = time.perf_counter() - start
        engine = page.text_content("#engine")
        small, _ = fill(page, *files["small"])
        large, result = fill(page, *files["large"])
        huge, _ = fill(page, *files["huge"])
        row = {"first result": f"{first:.1f} s", "256 window": f"{small:.2f} s", "2400x1600": f"{large:.1f} s"}
        row["4000x3000, 3 % stroke"] = f"{huge:.1f} s"
        row["parity (max / mean)"] = parity(result, model_file, *files["large"]) if check else "(as above)"
        if f"wasm, {threads} thread" not in engine:
            row["note"] = engine
        return row
    finally:
        context.close()


def bench_weights(browser, source: Path, kind: str, threads: list[int], files: dict, folder: Path) -> list[dict]:
    """Build and serve the page with ``kind`` weights; one row per wasm thread count."""
    site = build_web(source, folder / f"site-{kind}", quantize=None if kind == "float16" else kind)
    size = (site / "model.onnx").stat().st_size / 1e6
    server = make_server(site, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rows = []
    try:
        url = "http://{}:{}/".format(*server.server_address[:2])
        for index, count in enumerate(threads):
            row = measure(browser, url, count, files, site / "model.onnx", check=index == 0)
            rows.append({"weights": kind, "model.onnx": f"{size:.1f} MB", "wasm threads": str(count), **row})
            print(" | ".join(rows[-1].values()), flush=True)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="saved model or hub id (default: the bundled one)")
    parser.add_argument("--weights", default="float16,uint8", help="stored weights to compare, comma-separated")
    parser.add_argument("--threads", default="1,2", help="wasm thread counts, comma-separated")
    parser.add_argument("--out", type=Path, default=None, help="keep the page folders here (default: a temp dir)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    weights = [value.strip() for value in args.weights.split(",")]
    threads = [int(value) for value in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        source = export_onnx(pconv_hf.load_model(args.model, device="cpu"), folder / "exported.onnx")
        files = photos(folder)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                rows = [row for kind in weights for row in bench_weights(browser, source, kind, threads, files, folder)]
            finally:
                browser.close()
    print_table(rows)


def print_table(rows: list[dict[str, str]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print()
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        print("| " + " | ".join(row.get(column, "") for column in columns) + " |")


if __name__ == "__main__":
    main()
