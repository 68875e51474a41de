"""PConv vs plain convolution, measured side by side in one run on this machine.

    python benchmarks/bench_speed.py [--repeats 5] [--batch_size 1] [--device cpu]

Prints markdown tables: PartialConv2d vs nn.Conv2d at the U-Net's layer shapes (512 px input), the full
PConvUNet vs its plain-convolution twin (forward at 512 px with layer_size=8, one training step at 256 px
with layer_size=7), and the ratio of each pair. Timings alternate between the two networks so that a
change in machine load hits both alike; the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pconv_hf import PartialConv2d, PConvUNet
from pconv_hf.masks import irregular_mask, mask_in_bucket


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer sees it done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alternating(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each callable, run in turn (one call of each per round, every other round in reverse
    order) after ``warmup`` calls each.

    Alternating spreads a change in machine load over all of them alike, instead of over whichever ran then.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(repeats):
        # Every other round in reverse (A B C, C B A, ...): a linear drift in load cancels over a pair of rounds,
        # and no callable always follows the same one (which may leave threads spinning or caches cold).
        for name in names if round_ % 2 == 0 else names[::-1]:
            fn = fns[name]
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(bucket) for name, bucket in times.items()}


def time_pair(first: Callable[[], object], second: Callable[[], object], repeats: int, device: torch.device):
    """Median seconds of each callable, run alternately after one warm-up call each."""
    times = time_alternating({"first": first, "second": second}, repeats, device)
    return times["first"], times["second"]


def real_mask(size: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """A 20-30 % irregular hole mask, (N, 1, size, size), 1 = valid."""
    masks = [mask_in_bucket(size, size, np.random.default_rng(i), (0.2, 0.3)) for i in range(batch_size)]
    return torch.from_numpy(np.stack(masks))[:, None].to(device)


def bench_layers(repeats: int, batch_size: int, device: torch.device) -> list[tuple[str, float, float]]:
    rows = []
    mask = real_mask(512, batch_size, device)
    size, in_channels = 512, 3
    # The encoder shapes of the paper's 512 px network (layer_size=8, base 64), first five levels.
    for out_channels, kernel in ((64, 7), (128, 5), (256, 5), (512, 3), (512, 3)):
        pconv = PartialConv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2).to(device).eval()
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2).to(device).eval()
        conv.load_state_dict(pconv.state_dict())
        x = torch.rand(batch_size, in_channels, size, size, device=device)
        layer_mask = nn.functional.interpolate(mask, size=(size, size), mode="nearest")
        with torch.inference_mode():
            t_pconv, t_conv = time_pair(
                lambda p=pconv, x=x, m=layer_mask: p(x, m), lambda c=conv, x=x: c(x), repeats, device
            )
        rows.append((f"{in_channels}->{out_channels}, {kernel}x{kernel}/2 at {size} px", t_pconv, t_conv))
        in_channels, size = out_channels, size // 2
    return rows


def bench_networks(repeats: int, batch_size: int, device: torch.device) -> list[tuple[str, float, float]]:
    rows = []
    pconv = PConvUNet(layer_size=8, sample_size=512).to(device).eval()
    plain = PConvUNet(layer_size=8, sample_size=512, conv_type="plain").to(device).eval()
    image = torch.rand(batch_size, 3, 512, 512, device=device)
    mask = real_mask(512, batch_size, device)
    with torch.inference_mode():
        t = time_pair(lambda: pconv(image, mask), lambda: plain(image, mask), repeats, device)
    rows.append((f"forward, 512 px, layer_size=8, batch {batch_size}", *t))

    pconv = PConvUNet(layer_size=7).to(device).train()
    plain = PConvUNet(layer_size=7, conv_type="plain").to(device).train()
    image = torch.rand(max(batch_size, 2), 3, 256, 256, device=device)
    mask = real_mask(256, max(batch_size, 2), device)
    optimizers = {id(m): torch.optim.Adam(m.parameters(), lr=2e-4) for m in (pconv, plain)}

    def step(model: PConvUNet) -> None:
        optimizer = optimizers[id(model)]
        optimizer.zero_grad(set_to_none=True)
        output = model(image, mask)
        # The pixel losses of the paper; the feature network is the same for both and left out.
        loss = ((output - image).abs() * mask).mean() + 6 * ((output - image).abs() * (1 - mask)).mean()
        loss.backward()
        optimizer.step()

    t = time_pair(lambda: step(pconv), lambda: step(plain), repeats, device)
    rows.append((f"train step (fwd+bwd+Adam), 256 px, layer_size=7, batch {max(batch_size, 2)}", *t))
    return rows


def bench_masks(seconds: float = 2.0) -> float:
    rng = np.random.default_rng(0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        irregular_mask(512, 512, rng)
        count += 1
    return count / (time.perf_counter() - start)


def table(title: str, rows: list[tuple[str, float, float]]) -> str:
    lines = [f"### {title}", "", "| shape | PConv (ms) | plain (ms) | ratio |", "|---|---:|---:|---:|"]
    for name, t_pconv, t_plain in rows:
        lines.append(f"| {name} | {t_pconv * 1e3:.1f} | {t_plain * 1e3:.1f} | {t_pconv / t_plain:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument("--batch_size", type=int, default=1, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}\n")
    print(table("PartialConv2d vs nn.Conv2d (inference)", bench_layers(args.repeats, args.batch_size, device)))
    print()
    print(table("PConvUNet vs plain-conv U-Net", bench_networks(args.repeats, args.batch_size, device)))
    print()
    print(f"irregular masks at 512 px: {bench_masks():.0f} masks/s on one process")


if __name__ == "__main__":
    main()
