"""The app's memory under repeated load: rounds of new sessions, each filling a photo several times.

    python benchmarks/bench_app_memory.py [--rounds 4] [--clients 8] [--fills 10] [--side 1024] [--app app.py]
        [--model DIR] [-- app flags...]

Starts ``python app.py`` (the bundled model unless ``--model``) on a free port with ``--concurrency`` = clients,
then runs ``--rounds`` rounds: in each, ``--clients`` new ``gradio_client`` sessions at once, each uploading a
``--side``² photo (the first fill, stateless) and filling it ``--fills`` times in all through its step token. After
each round it prints the server's resident memory (VmRSS, and its peak VmHWM) and the size of its temporary files
(the session histories and Gradio's cache). Memory that levels off after the first rounds is bounded; memory that
grows by the same amount each round is kept per session. Errors are counted, not raised.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))


def folder_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session(url: str, photo: Path, layers: list[Path], fills: int, downloads: str) -> int:
    """One client: a stateless first fill, then ``fills - 1`` fills on the session's state. Returns the errors."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=downloads)
    errors, token = 0, None
    for index in range(fills):
        value = {
            "background": handle_file(str(photo)) if token is None else None,
            "layers": [handle_file(str(layers[index % len(layers)]))],
            "composite": None,
        }
        try:
            *_, token = client.predict(value, dilate=4, step_token=token, api_name="/inpaint")
        except Exception as error:  # counted: the point is the memory, not one call
            print(f"  error: {str(error).splitlines()[0][:160]}", file=sys.stderr)
            errors, token = errors + 1, None
    client.close()
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default=str(ROOT / "app.py"))
    parser.add_argument("--model", help="a saved model folder (default: the app's bundled model)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fills", type=int, default=10)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("app_flags", nargs="*", help="more flags for app.py (after --)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_app_memory-"))
    from skimage import data

    photo = work / "photo.png"
    Image.fromarray(data.astronaut()).resize((args.side, args.side), Image.Resampling.BICUBIC).save(photo)
    layers = []
    for index in range(4):  # strokes at different places, so that each fill changes something
        layer = np.zeros((args.side, args.side, 4), np.uint8)
        top = args.side // 8 + index * args.side // 5
        layer[top : top + args.side // 20, args.side // 6 : args.side // 2] = (255, 0, 255, 255)
        layers.append(work / f"layer{index}.png")
        Image.fromarray(layer, "RGBA").save(layers[-1])

    port = free_port()
    command = [sys.executable, args.app, "--port", str(port), "--concurrency", str(args.clients), *args.app_flags]
    if args.model:
        command += ["--model", args.model]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TMPDIR": str(work)}
    with open(work / "app.log", "w") as log:  # the child keeps its own copy of the file descriptor
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"app.py stopped:\n{(work / 'app.log').read_text()}")
                time.sleep(0.5)
        print(f"app: {args.app} {' '.join(args.app_flags)}; {args.clients} clients × {args.fills} fills of a "
              f"{args.side}² photo per round")  # fmt: skip
        rss, peak = memory_mib(server.pid)
        print("| round | sessions so far | errors | VmRSS MiB | VmHWM MiB | temp files MiB | seconds |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| start | 0 | 0 | {rss:.0f} | {peak:.0f} | 0 | |")
        downloads = work / "downloads"
        downloads.mkdir()
        for round_index in range(1, args.rounds + 1):
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                errors = sum(
                    pool.map(lambda _: session(url, photo, layers, args.fills, str(downloads)), range(args.clients))
                )
            seconds = time.perf_counter() - start
            time.sleep(2)  # the last downloads written
            rss, peak = memory_mib(server.pid)
            sessions = folder_mib(work) - folder_mib(downloads)
            print(f"| {round_index} | {round_index * args.clients} | {errors} | {rss:.0f} | {peak:.0f} | "
                  f"{sessions:.0f} | {seconds:.0f} |", flush=True)  # fmt: skip
            for path in downloads.rglob("*"):
                if path.is_file():
                    path.unlink()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        print(f"(server log: {work / 'app.log'})")


if __name__ == "__main__":
    main()
