"""Fill time against photo size and hole size: ``inpaint()`` without and with the texture stage, and OpenCV Telea.

    python benchmarks/bench_fill_time.py [--photo data/photos-full/holdout/<16-MP photo>.jpg] [--repeats 3]

A photo (by default a scikit-image photo upscaled; better: a real 12-16 MP photo) is resized to each size; on
each size an object-removal stroke (``pconv_hf.masks.object_mask``, brush 1.5-4 % of the long side) covers
about 1 % and about 3 % of the photo, and a blob about 10 %. Each cell is the median of ``--repeats`` fills
after one warm-up, in seconds: ``texture=False`` / ``texture=True`` (issue 30: the texture stage may cost at most
what the network costs), then Telea; the 12-MP, 3 % stroke cell is issue 20's budget (<= 3 s on 2 cores).
Run it on a quiet machine: anything else on the cores shows up in the numbers. The first lines name the CPU, its
kind (``pconv_hf.engines.cpu_kind``: bf16-native, avx512, avx2) and the engine ``inpaint()`` runs with these options
(``--options engine=torch,dtype=float32`` for float32 eager; ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``
limits PyTorch's kernels to AVX2, not ONNX Runtime's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np
import torch

import pconv_hf
from pconv_hf.engines import choose_engine, cpu_kind, cpu_name
from pconv_hf.evaluation_native import parse_inpaint_options
from pconv_hf.images import open_image
from pconv_hf.masks import object_mask

SIZES_MP = (0.5, 2.0, 6.0, 12.0, 16.0)
HOLES = (("stroke", (0.008, 0.012)), ("stroke", (0.025, 0.035)), ("blob", (0.08, 0.12)))


def timed(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=None, help="a photo to resize (default: skimage's astronaut)")
    parser.add_argument("--model", default=None, help="saved model (default: the bundled one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MP)), help="megapixels, comma-separated")
    parser.add_argument("--options", default="", help="inpaint() options, key=value,... (e.g. strategy=crop)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.photo:
        source = np.asarray(open_image(args.photo).convert("RGB"))
    else:
        from skimage import data

        source = data.astronaut()
    model = pconv_hf.load_model(args.model)
    options = parse_inpaint_options(args.options)
    if "texture" in options:
        parser.error("--options must not set texture: every cell times both")
    print(f"CPU: {cpu_name()}, kind {cpu_kind()}; PyTorch kernels {torch.backends.cpu.get_cpu_capability()}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}")  # fmt: skip
    engine = {key: options[key] for key in ("engine", "dtype") if key in options}
    print(choose_engine(model, **engine).describe())
    print(f"torch threads {torch.get_num_threads()}; seconds per fill, median of {args.repeats}: network only / with "
          "the texture stage (Telea)")  # fmt: skip
    header = "| photo | " + " | ".join(f"{kind} {low:.1%}-{high:.1%}" for kind, (low, high) in HOLES) + " |"
    print(header + "\n|" + "---|" * (1 + len(HOLES)))
    for megapixels in (float(size) for size in args.sizes.split(",")):
        aspect = 4 / 3
        height = round(np.sqrt(megapixels * 1e6 / aspect))
        width = round(height * aspect)
        photo = cv2.resize(source, (width, height), interpolation=cv2.INTER_CUBIC)
        cells = []
        for index, (kind, bucket) in enumerate(HOLES):
            hole = object_mask(height, width, kind, bucket, np.random.default_rng(index)) == 0
            mask = hole.view(np.uint8) * 255
            plain, textured = (
                timed(lambda p=photo, m=mask, t=texture: model.inpaint(p, m, **options, texture=t), args.repeats)
                for texture in (False, True)
            )
            telea = timed(lambda p=photo, m=mask: cv2.inpaint(p, m, 3, cv2.INPAINT_TELEA), args.repeats)
            cells.append(f"{plain:.2f} / {textured:.2f} (Telea {telea:.2f})")
        print(f"| {width}x{height} ({megapixels:g} MP) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
