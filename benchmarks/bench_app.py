"""The app's round trip for a big photo, as a new user sees it: upload, one brush stroke, Inpaint, result shown.

    python benchmarks/bench_app.py [--repeats 3] [--photo photo.jpg] [--app app.py --app old_app.py] [--loop]

Starts ``python app.py`` (the bundled model) on a free port, makes a 4000×3000 JPEG of about 1 MB (scikit-image's
astronaut, upscaled, with sensor-like noise) unless ``--photo`` is given, and drives Debian's Chromium through
Playwright: upload the photo, paint one stroke, press Inpaint, wait until the result image is loaded in the page.
Every round is a new page (a new user). Prints markdown tables: upload seconds, click -> result-visible seconds,
the fill time the app reports, their ratio (medians over ``--repeats``), where the click's time went, and what
travelled over the network for one click. With several ``--app`` (e.g. an older app.py, from
``git show HEAD:app.py > old_app.py``), their rounds alternate, so a change in machine load hits them alike.

``--loop`` (apps with Undo / Redo): each round goes on in the same page with a second stroke lower down and a second
Inpaint on the result, then Undo and Redo; it times click -> result shown for each, and checks the full-size
downloads bit for bit (the second fill equals the first state outside its mask and the photo outside both masks;
Undo gives the first state back, Redo the second).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pconv_hf.web.headless import APP_CHROMIUM_ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 180_000
EDITOR_HINT = "select the draw tool to start"
# Counts the PNG / JPEG / WebP encodes the page does (the image editor exports its canvas with canvas.toBlob).
ENCODE_HOOK = """
window.__encodes = [];
const toBlob = HTMLCanvasElement.prototype.toBlob;
HTMLCanvasElement.prototype.toBlob = function (callback, type, quality) {
  const start = Date.now(), width = this.width, height = this.height;
  return toBlob.call(this, (blob) => {
    window.__encodes.push({start, ms: Date.now() - start, width, height, bytes: blob ? blob.size : 0});
    callback(blob);
  }, type, quality);
};
"""
DOWNLOADS_LISTED = "() => document.querySelectorAll('#downloads a[href]').length >= 2 ? Date.now() : false"
RESULT_CHANGED = """(old) => {
  const img = document.querySelector('#result img');
  return img && img.src !== old && img.complete && img.naturalWidth > 0 ? Date.now() : false;
}"""
RESULT_SHOWN = """() => {
  const img = document.querySelector('#result img');
  return img && img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0 ? Date.now() : false;
}"""


def make_photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A photo-like JPEG of about 1 MB: the astronaut upscaled, plus grey sensor noise, quality 80."""
    from skimage import data

    upscaled = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 3, (height, width, 1))
    pixels = np.clip(np.asarray(upscaled) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=80)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    app: Path
    url: str
    process: subprocess.Popen
    log: Path


def start_server(app: Path, extra: list[str], log_dir: Path) -> Server:
    port = free_port()
    log = log_dir / f"{app.stem}-{port}.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(app), "--port", str(port), *extra]
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return Server(app, url, process, log)
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"bench_app.py: {app} did not start:\n{log.read_text()}")
        time.sleep(0.5)


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@dataclass
class Transfer:
    method: str
    url: str
    name: str
    start: float  # seconds after the click (or the upload)
    end: float
    sent: int  # request body bytes
    received: int  # response body bytes


@dataclass
class Round:
    upload: float
    click_to_result: float
    fill: float
    export: float  # click -> the first upload request (the page exports the editor's canvas)
    server: float  # the queue request -> the request for the result shown (the server's handling, fill included)
    show: float  # that request -> result visible (download + decode of what is shown)
    downloads: float  # click -> the download links listed
    encodes: list[dict] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    download_bytes: int = 0
    download_size: tuple[int, int] = (0, 0)
    loop: dict[str, float] = field(default_factory=dict)  # --loop: second fill, Undo, Redo (seconds, fill)


def transfers_since(requests: list, since_ms: float, url: str) -> list[Transfer]:
    rows = []
    for request in requests:
        timing = request.timing
        if timing["startTime"] < since_ms or "/heartbeat/" in request.url:
            continue
        name = request.url[len(url) - 1 :].split("?")[0]
        if name.startswith("/gradio_api/file="):
            name = "file " + name.rsplit("/", 1)[-1]
        end = timing["startTime"] + max(timing["responseEnd"], 0)
        sent = int(request.header_value("content-length") or 0) if request.method == "POST" else 0
        rows.append(
            Transfer(
                request.method,
                request.url,
                name,
                (timing["startTime"] - since_ms) / 1000,
                (end - since_ms) / 1000,
                sent,
                request.sizes()["responseBodySize"],
            )
        )
    return sorted(rows, key=lambda row: row.start)


def one_round(browser, server: Server, photo: Path, loop: bool = False) -> Round:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script(ENCODE_HOOK)
    requests: list = []
    page.on("requestfinished", lambda request: requests.append(request))
    try:
        page.goto(server.url)
        hint = page.get_by_text(EDITOR_HINT)  # shown by the ready editor until it has a photo
        hint.wait_for(state="visible")

        # Upload: into the photo box (this app) or straight into the editor (older versions of app.py), until the
        # editor shows the photo (its hint gone, one frame drawn).
        target = page.locator("#photo input[type=file]")
        if not target.count():
            target = page.locator("#editor input[type=file]")
        page.wait_for_timeout(1000)  # settle: an editor still wiring itself up drops files (older app.py)
        upload_start = time.time() * 1000
        target.set_input_files(photo)
        try:
            hint.wait_for(state="hidden", timeout=60_000)
        except PlaywrightTimeout:
            print("upload dropped by the page; uploading again (timed from the retry)", file=sys.stderr)
            upload_start = time.time() * 1000
            target.set_input_files(photo)
            hint.wait_for(state="hidden")
        shown = page.evaluate("() => new Promise(resolve => requestAnimationFrame(() => resolve(Date.now())))")
        upload = (shown - upload_start) / 1000

        stroke(page)

        page.evaluate("window.__encodes = []")
        page.evaluate("document.addEventListener('click', () => { window.__clicked = Date.now(); }, {capture: true})")
        page.get_by_role("button", name="Inpaint", exact=True).click()
        result_shown = page.wait_for_function(RESULT_SHOWN, polling="raf").json_value()
        clicked = page.evaluate("window.__clicked")
        result_url = page.evaluate("document.querySelector('#result img').src")
        listed = page.wait_for_function(DOWNLOADS_LISTED, polling=50).json_value()
        summary = page.get_by_text(re.compile(r"^Filled \d+ regions? in")).inner_text()
        fill = float(re.search(r"in ([\d.]+) s", summary).group(1))
        page.wait_for_timeout(1000)  # late requests (re-exports after the result) still count
        encodes = page.evaluate("window.__encodes")
        transfers = transfers_since(requests, clicked, server.url)

        uploads = [row for row in transfers if row.name == "/gradio_api/upload"]
        joins = [row for row in transfers if row.name.endswith("/queue/join")]
        results = [row for row in transfers if row.url == result_url]
        click_to_result = (result_shown - clicked) / 1000
        export = uploads[0].start if uploads else float("nan")
        result_requested = results[0].start if results else float("nan")
        server_seconds = result_requested - joins[0].start if joins else float("nan")
        row = Round(
            upload,
            click_to_result,
            fill,
            export,
            server_seconds,
            click_to_result - result_requested,
            (listed - clicked) / 1000,
        )
        row.encodes, row.transfers = encodes, transfers

        # The download: full size and lossless (not timed).
        href = page.locator("#downloads a[href]").first.get_attribute("href")
        response = page.request.get(href)
        row.download_bytes = len(response.body())
        with Image.open(io.BytesIO(response.body())) as image:
            row.download_size = image.size
        if loop:
            row.loop = edit_loop(page, photo)
        return row
    finally:
        page.close()


def stroke(page, down: float = 0.0) -> None:
    """One brush stroke across the middle of the editor, or ``down`` canvas heights below it."""
    page.get_by_label("Brush", exact=True).click()
    canvas = page.locator("#editor canvas").first.bounding_box()
    center_x, center_y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] * (0.5 + down)
    page.mouse.move(center_x - 60, center_y)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(center_x - 60 + step * 10, center_y)
    page.mouse.up()
    page.wait_for_timeout(500)


def downloads(page) -> tuple[np.ndarray, np.ndarray]:
    """The full-size result and mask PNGs the downloads list."""
    arrays = []
    for index in range(2):
        response = page.request.get(page.locator("#downloads a[href]").nth(index).get_attribute("href"))
        with Image.open(io.BytesIO(response.body())) as image:
            arrays.append(np.asarray(image))
    return arrays[0], arrays[1]


def timed_click(page, button: str) -> float:
    """Click ``button``; seconds until the result shown has changed and is loaded and the downloads list a new
    first file."""
    old_src = page.evaluate("document.querySelector('#result img').src")
    old_href = page.locator("#downloads a[href]").first.get_attribute("href")
    start = page.evaluate("Date.now()")
    page.get_by_role("button", name=button, exact=True).click()
    shown = page.wait_for_function(RESULT_CHANGED, arg=old_src, polling="raf").json_value()
    page.wait_for_function(
        "(old) => { const a = document.querySelector('#downloads a[href]'); return a && a.href !== old; }",
        arg=page.evaluate("(href) => new URL(href, location.href).href", old_href),
        polling=50,
    )
    return (shown - start) / 1000


def edit_loop(page, photo_path: Path) -> dict[str, float]:
    """Second fill on the result, Undo, Redo in the page of a round; their times, checked bit for bit."""
    with Image.open(photo_path) as image:
        photo = np.asarray(image)
    first, first_mask = downloads(page)
    page.wait_for_timeout(1000)  # the editor gets the result's copy
    stroke(page, down=0.2)
    second_click = timed_click(page, "Inpaint")
    summary = page.get_by_text(re.compile(r"^Filled \d+ regions? in")).inner_text()
    second_fill = float(re.search(r"in ([\d.]+) s", summary).group(1))
    second, second_mask = downloads(page)
    page.wait_for_timeout(1000)  # the editor gets the result's copy (clicked meanwhile, Undo waits for the page)
    undo = timed_click(page, "Undo")
    undone, _ = downloads(page)
    redo = timed_click(page, "Redo")
    redone, _ = downloads(page)
    hole1, hole2 = first_mask > 0, second_mask > 0
    checks = {
        "second keeps first": np.array_equal(second[~hole2], first[~hole2]),
        "second is the photo outside both": np.array_equal(second[~(hole1 | hole2)], photo[~(hole1 | hole2)]),
        "undo is the first state": np.array_equal(undone, first),
        "redo is the second state": np.array_equal(redone, second),
    }
    failed = [name for name, passed in checks.items() if not passed]
    if failed:
        sys.exit(f"bench_app.py: edit loop pixels differ: {', '.join(failed)}")
    return {"second_click": second_click, "second_fill": second_fill, "undo": undo, "redo": redo}


def megabytes(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


def report(photo: Path, results: dict[str, list[Round]], warmup: int) -> None:
    def median(values) -> float:
        return statistics.median(values)

    with Image.open(photo) as image:
        size = image.size
    rounds_done = len(next(iter(results.values())))
    print(f"\nPhoto: {photo.name}, {size[0]}×{size[1]}, {megabytes(photo.stat().st_size)} JPEG. ", end="")
    print(f"Medians of {rounds_done} round(s) per app, after {warmup} warm-up round(s).\n")
    print(
        "| app | upload s | click → result shown s | fill s (app) | ratio | click → downloads listed s "
        "| sent on click | received on click |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rounds in results.items():
        sent = median([sum(t.sent for t in r.transfers) for r in rounds])
        received = median([sum(max(t.received, 0) for t in r.transfers) for r in rounds])
        print(
            f"| {name} | {median([r.upload for r in rounds]):.2f} | {median([r.click_to_result for r in rounds]):.2f} "
            f"| {median([r.fill for r in rounds]):.2f} | {median([r.click_to_result / r.fill for r in rounds]):.1f} "
            f"| {median([r.downloads for r in rounds]):.2f} | {megabytes(int(sent))} | {megabytes(int(received))} |"
        )
    print("\nWhere the time from click to result shown goes (medians, seconds):\n")
    print(
        "| app | page exports the editor (click → first upload) | server (queue join → result requested) "
        "| page shows it (requested → loaded) | canvas encodes in the page, last round |"
    )
    print("|---|---:|---:|---:|---|")
    for name, rounds in results.items():
        encodes = rounds[-1].encodes
        listed = ", ".join(f"{e['width']}×{e['height']} {megabytes(e['bytes'])}" for e in encodes) or "none"
        print(
            f"| {name} | {median([r.export for r in rounds]):.2f} | {median([r.server for r in rounds]):.2f} "
            f"| {median([r.show for r in rounds]):.2f} | {len(encodes)}: {listed} |"
        )
    if any(r.loop for rounds in results.values() for r in rounds):
        print("\nThe edit loop (--loop; every round's pixels checked bit for bit), medians, seconds:\n")
        print("| app | second fill: click → result shown | its fill (app) | ratio | Undo | Redo |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, rounds in results.items():
            loops = [r.loop for r in rounds if r.loop]
            values = {key: median([loop[key] for loop in loops]) for key in loops[0]}
            ratio = median([loop["second_click"] / loop["second_fill"] for loop in loops])
            print(
                f"| {name} | {values['second_click']:.2f} | {values['second_fill']:.2f} | {ratio:.1f} "
                f"| {values['undo']:.2f} | {values['redo']:.2f} |"
            )
    for name, rounds in results.items():
        last = rounds[-1]
        print(f"\nRequests of the last click, {name} (seconds after the click):\n")
        print("| request | start | end | sent | received |")
        print("|---|---:|---:|---:|---:|")
        for row in last.transfers:
            received = megabytes(row.received) if row.received >= 0 else "(stream)"
            print(f"| {row.method} {row.name} | {row.start:.2f} | {row.end:.2f} | {megabytes(row.sent)} | {received} |")
        print(
            f"\nDownload: {megabytes(last.download_bytes)} PNG, {last.download_size[0]}×{last.download_size[1]} "
            "(full size, lossless)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, help="a photo to use (default: a generated 4000×3000 JPEG of ~1 MB)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per app (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (the model's first run)")
    parser.add_argument("--app", type=Path, action="append", help="app.py to time; repeat to compare versions")
    parser.add_argument("--device", help="passed to app.py --device (default: the app's own default)")
    parser.add_argument("--loop", action="store_true", help="also time a second fill, Undo and Redo (see above)")
    args = parser.parse_args(argv)
    apps = args.app or [ROOT / "app.py"]
    extra = [] if args.device is None else ["--device", args.device]

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench_app-") as scratch:
        scratch = Path(scratch)
        photo = args.photo or make_photo(scratch / "photo.jpg")
        servers = [start_server(app.resolve(), extra, scratch) for app in apps]
        names = [str(app) if apps.count(app) == 1 else f"{app} #{i}" for i, app in enumerate(apps)]
        results: dict[str, list[Round]] = {name: [] for name in names}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=APP_CHROMIUM_ARGS)
                for round_index in range(args.warmup + args.repeats):
                    for name, server in zip(names, servers):
                        row = one_round(browser, server, photo, args.loop)
                        kind = "warm-up" if round_index < args.warmup else "round"
                        print(
                            f"{name} {kind} {round_index + 1}: upload {row.upload:.2f} s, click -> result "
                            f"{row.click_to_result:.2f} s, fill {row.fill:.2f} s",
                            file=sys.stderr,
                        )
                        if round_index >= args.warmup:
                            results[name].append(row)
                browser.close()
        finally:
            for server in servers:
                stop_server(server)
        report(photo, results, args.warmup)


if __name__ == "__main__":
    main()
