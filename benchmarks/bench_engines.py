"""The engines ``inpaint(engine=...)`` can run, side by side on this CPU: time of a 12-MP fill and quality against
float32 eager (issue 32).

    python benchmarks/bench_engines.py [--photo data/photos-full/holdout/<photo>.jpg] [--repeats 3] [--threads 2]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_engines.py ...   # PyTorch as on AVX2

Engines: PyTorch eager float32 (the reference), PyTorch eager bf16 autocast (only where bf16 is native: elsewhere
it is emulated and slow) and ONNX Runtime float32 on the CPU provider (the model's cached export). ONNX Runtime's
kernels (MLAS) cannot be limited to AVX2 the way oneDNN and ATen can: under the emulation its row still uses this
CPU's widest instructions.

0. The network alone on one ``--window`` (default 512x1024, the 12-MP stroke's first window), one thread, CPU
   seconds (``time.thread_time``): the figure a busy machine disturbs least.
1. Time: a 12-MP photo (4000x3000) with a 2.5-3.5 % object stroke (``pconv_hf.masks.object_mask``, as
   ``bench_fill_time.py``), ``inpaint()``'s default native strategy. Seconds per call, median of ``--repeats``
   after a warm-up, engines alternating per round; and the process's CPU seconds per call (all threads), which
   a busy machine inflates less than the wall clock.
2. Quality: ``--photos`` held-out photos resized to ``--quality_size`` pixels on the long side, one such stroke
   each, native strategy; PSNR of the hole pixels and LPIPS (alexnet) of the hole's bounding box (+32 px) against
   the original, as the difference from float32 eager (allowed: 0.05 dB and 0.002).

The first lines say which CPU this is, its kind (``pconv_hf.engines.cpu_kind``) and the engine "auto" picks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import pconv_hf
from pconv_hf.engines import (
    OnnxNetwork,
    cached_onnx_path,
    choose_engine,
    cpu_kind,
    cpu_name,
    cpu_session_options,
    network_for,
)
from pconv_hf.images import open_image
from pconv_hf.masks import object_mask
from pconv_hf.metrics import lpips, lpips_available
from pconv_hf.runtime import native_bf16

STROKE = ("stroke", (0.025, 0.035))
HOLDOUT = Path("data/photos-full/holdout")


def engines(model: pconv_hf.PConvUNet) -> dict[str, dict]:
    """inpaint() options per engine row; bf16 only where it is native (and oneDNN is not limited below it)."""
    rows = {"PyTorch float32": {"engine": "torch", "dtype": "float32"}}
    emulated = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if native_bf16("cpu") and (emulated == "ALL" or "BF16" in emulated or "AMX" in emulated):
        rows["PyTorch bf16"] = {"engine": "torch", "dtype": "bfloat16"}
    rows["ONNX Runtime float32"] = {"engine": "onnx"}
    return rows


def time_engines(model, rows: dict[str, dict], photo: np.ndarray, mask: np.ndarray, repeats: int) -> dict:
    """(median wall seconds, median CPU seconds) per row, rows alternating (reversed every other round)."""
    for options in rows.values():
        model.inpaint(photo, mask, **options)  # warm-up: export / session, oneDNN primitives for these shapes
    wall = {name: [] for name in rows}
    cpu = {name: [] for name in rows}
    names = list(rows)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            model.inpaint(photo, mask, **rows[name])
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in rows}


def network_times(model, rows: dict[str, dict], height: int, width: int, repeats: int) -> dict[str, float]:
    """CPU seconds of the network alone on one (height, width) window, on one thread (``time.thread_time``: what
    other jobs on a busy machine change least), median of ``repeats`` alternating rounds after a warm-up."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    options = cpu_session_options()
    options.intra_op_num_threads = 1
    session = OnnxNetwork(cached_onnx_path(model), providers=["CPUExecutionProvider"], session_options=options)
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    hole = object_mask(height, width, *STROKE, np.random.default_rng(0)) == 0
    valid_mask = torch.from_numpy(~hole).float()[None, None]

    @torch.inference_mode()
    def run(name: str) -> None:
        dtype = {"bfloat16": torch.bfloat16}.get(rows[name].get("dtype"))
        if rows[name]["engine"] == "onnx":
            session(image, valid_mask)
        else:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                model(image, valid_mask)

    times = {name: [] for name in rows}
    for name in rows:
        run(name)
    for round_index in range(repeats):
        for name in list(rows) if round_index % 2 == 0 else list(rows)[::-1]:
            start = time.thread_time()
            run(name)
            times[name].append(time.thread_time() - start)
    torch.set_num_threads(threads)
    return {name: statistics.median(values) for name, values in times.items()}


def hole_scores(result: np.ndarray, photo: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) of the hole pixels and LPIPS of the hole's bounding box plus 32 px, against the photo."""
    error = (result.astype(np.float64) - photo)[hole] / 255
    psnr = 10 * np.log10(1 / np.mean(error**2))
    rows, cols = np.nonzero(hole)
    top, left = max(0, rows.min() - 32), max(0, cols.min() - 32)
    box = (slice(top, rows.max() + 33), slice(left, cols.max() + 33))

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[box])).permute(2, 0, 1)[None].float() / 255

    return psnr, lpips(tensor(result), tensor(photo)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=None, help="the photo resized to 12 MP (default: skimage's astronaut)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--photos", type=int, default=8, help="held-out photos for the quality table (0: none)")
    parser.add_argument("--quality_size", type=int, default=1600, help="long side of those photos, pixels")
    parser.add_argument("--skip_time", action="store_true")
    parser.add_argument("--window", default="512x1024", help="HxW of the network-alone table ('' to skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = pconv_hf.load_model(device="cpu")
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, kind {cpu_kind()}; PyTorch kernels "
        f"{torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}"
        f"; {torch.get_num_threads()} threads"
    )
    print(f"inpaint()'s default here: {choose_engine(model).describe()}")
    rows = engines(model)
    start = time.perf_counter()
    network_for(model, choose_engine(model, engine="onnx"))
    print(f"ONNX export (cached) and session: {time.perf_counter() - start:.1f} s\n")

    if args.window:
        height, width = (int(side) for side in args.window.split("x"))
        times = network_times(model, rows, height, width, args.repeats)
        base = times["PyTorch float32"]
        print(f"The network alone on one {height}x{width} window, one thread, CPU seconds (median of {args.repeats}):")
        print("| engine | CPU seconds | ratio |\n|---|---:|---:|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")
        print()

    if not args.skip_time:
        if args.photo:
            source = np.asarray(open_image(args.photo).convert("RGB"))
        else:
            from skimage import data

            source = data.astronaut()
        photo = cv2.resize(source, (4000, 3000), interpolation=cv2.INTER_CUBIC)
        mask = (object_mask(3000, 4000, *STROKE, np.random.default_rng(1)) == 0).view(np.uint8) * 255
        times = time_engines(model, rows, photo, mask, args.repeats)
        base = times["PyTorch float32"][0]
        print(f"12-MP photo, {STROKE[1][0]:.1%}-{STROKE[1][1]:.1%} stroke, native strategy (median of {args.repeats}):")
        print("| engine | seconds per fill | ratio | CPU seconds per fill |\n|---|---:|---:|---:|")
        for name, (wall, cpu) in times.items():
            print(f"| {name} | {wall:.2f} | {wall / base:.2f}x | {cpu:.2f} |")
        print()

    photos = sorted(HOLDOUT.glob("*.jpg"))[: args.photos]
    if photos:
        if not lpips_available():
            raise SystemExit("LPIPS weights are missing: bash scripts/fetch_feature_weights.sh")
        scores = {name: [] for name in rows}
        for index, path in enumerate(photos):
            photo = np.asarray(open_image(path).convert("RGB"))
            scale = args.quality_size / max(photo.shape[:2])
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            hole = object_mask(*photo.shape[:2], *STROKE, np.random.default_rng(100 + index)) == 0
            for name, options in rows.items():
                result = model.inpaint(photo, hole.view(np.uint8) * 255, **options)
                scores[name].append(hole_scores(result, photo, hole))
        reference = np.array(scores["PyTorch float32"])
        print(f"Quality: {len(photos)} held-out photos at {args.quality_size} px, one stroke each, native strategy")
        print("| engine | hole PSNR (dB) | diff | worst photo | LPIPS | diff | worst photo |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in rows:
            values = np.array(scores[name])
            delta = values - reference
            print(
                f"| {name} | {values[:, 0].mean():.3f} | {delta[:, 0].mean():+.4f} | {delta[:, 0].min():+.4f} | "
                f"{values[:, 1].mean():.4f} | {delta[:, 1].mean():+.5f} | {delta[:, 1].max():+.5f} |"
            )


if __name__ == "__main__":
    main()
