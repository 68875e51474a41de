"""Mask generation speed on one CPU core.

    OMP_NUM_THREADS=1 python benchmarks/bench_masks.py [--size 512] [--seconds 2] [--border_margin 0]

Times ``irregular_mask``, ``box_mask`` and ``mask_in_bucket`` for every hole-ratio bucket in one process,
with OpenCV held to one thread (``cv2.setNumThreads(1)``; set OMP_NUM_THREADS=1 too, as above), and prints
a markdown table of masks per second and the mean hole ratio. The mask code under test uses no torch. The
project's target is >= 300 irregular masks/s at 512 px.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import cv2
import numpy as np

from pconv_hf.masks import (
    HOLE_RATIO_BUCKETS,
    box_mask,
    bucket_label,
    hole_ratio,
    irregular_mask,
    mask_in_bucket,
)

TARGET_MASKS_PER_SECOND = 300


def measure(make: Callable[[np.random.Generator], np.ndarray], seconds: float) -> tuple[float, float, int]:
    """Masks per second, mean hole ratio and mask count over at least ``seconds`` of generation."""
    make(np.random.default_rng(10**6))  # warm-up: OpenCV initialisation
    ratios = []
    busy = 0.0
    while busy < seconds:
        start = time.perf_counter()
        valid_mask = make(np.random.default_rng(len(ratios)))
        busy += time.perf_counter() - start
        ratios.append(hole_ratio(valid_mask))  # outside the timed span
    return len(ratios) / busy, float(np.mean(ratios)), len(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="mask height and width in pixels")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per row")
    parser.add_argument("--border_margin", type=int, default=0, help="for the mask_in_bucket rows")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    size, margin = args.size, args.border_margin

    def in_bucket(bucket: tuple[float, float], kind: str) -> Callable[[np.random.Generator], np.ndarray]:
        return lambda rng: mask_in_bucket(size, size, rng, bucket, border_margin=margin, kind=kind)

    rows = [
        ("irregular_mask", "any", lambda rng: irregular_mask(size, size, rng)),
        ("box_mask", "any", lambda rng: box_mask(size, size, rng)),
    ]
    for kind in ("irregular", "box"):
        rows += [(f"mask_in_bucket {kind}", bucket_label(b), in_bucket(b, kind)) for b in HOLE_RATIO_BUCKETS]

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"{size}x{size} px, mask_in_bucket border_margin {margin}, cv2 threads {cv2.getNumThreads()}, ",
        end="",
    )
    print(f"OMP_NUM_THREADS {threads}, {args.seconds:g} s per row\n")
    print("| generator | hole ratio | masks/s | mean hole ratio | masks timed |")
    print("| --- | --- | ---: | ---: | ---: |")
    slowest = float("inf")
    for name, label, make in rows:
        rate, mean_ratio, count = measure(make, args.seconds)
        if "irregular" in name:
            slowest = min(slowest, rate)
        print(f"| {name} | {label} | {rate:.0f} | {mean_ratio:.3f} | {count} |", flush=True)
    verdict = "meets" if slowest >= TARGET_MASKS_PER_SECOND else "MISSES"
    print(f"\nslowest irregular row: {slowest:.0f} masks/s, {verdict} the target of {TARGET_MASKS_PER_SECOND}")


if __name__ == "__main__":
    main()
