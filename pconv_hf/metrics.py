"""Evaluation metrics, OpenCV baselines and the per-hole-ratio evaluation loop of the paper's Table 1.

Metrics are computed on the composite (valid pixels from the ground truth, holes from the output), binned by
each image's hole ratio. ``evaluate`` is the one code path used by training-time validation and the
evaluation CLI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from pconv_hf.masks import HOLE_RATIO_BUCKETS, bucket_index, bucket_label

# PSNR of a perfect reconstruction is infinite; clamp so means over images stay finite.
PSNR_MAX_DB = 100.0

ModelFn = Callable[[Tensor, Tensor], Tensor]


def _check_pair(output: Tensor, target: Tensor) -> None:
    if output.ndim != 4 or output.shape != target.shape:
        raise ValueError(
            f"expected output and target of the same shape (N,C,H,W), got {tuple(output.shape)} and "
            f"{tuple(target.shape)}"
        )


def l1(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per image, shape (N,)."""
    _check_pair(output, target)
    return (output - target).abs().flatten(1).mean(dim=1)


def psnr(output: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB per image for images in [0,1], shape (N,), clamped to ``PSNR_MAX_DB`` (perfect -> 100)."""
    _check_pair(output, target)
    values = peak_signal_noise_ratio(output, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return values.clamp(max=PSNR_MAX_DB)


def ssim(output: Tensor, target: Tensor) -> Tensor:
    """SSIM per image (11x11 Gaussian window, sigma 1.5, mean over channels), shape (N,).

    torchmetrics averages the SSIM map over the whole (reflect-padded) image, whereas
    ``skimage.metrics.structural_similarity`` crops a 5-pixel border; they differ slightly on small images.
    """
    _check_pair(output, target)
    return structural_similarity_index_measure(output, target, data_range=1.0, reduction="none")


def _cv2_inpaint(image: Tensor, valid_mask: Tensor, radius: float, flags: int) -> Tensor:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected image of shape (N,3,H,W), got {tuple(image.shape)}")
    if (
        valid_mask.ndim != 4
        or valid_mask.shape[1] not in (1, 3)
        or (valid_mask.shape[0] != image.shape[0] or valid_mask.shape[2:] != image.shape[2:])
    ):
        raise ValueError(
            f"expected valid_mask of shape (N,1,H,W) matching image {tuple(image.shape)}, "
            f"got {tuple(valid_mask.shape)}"
        )
    # A pixel is valid only if all of its channels are.
    valid = valid_mask.amin(dim=1, keepdim=True) > 0.5
    # cv2.inpaint needs 8-bit for 3-channel input.
    pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    holes = (~valid[:, 0]).to(torch.uint8).mul(255).cpu().numpy()
    filled = np.stack([cv2.inpaint(p, h, radius, flags) for p, h in zip(pixels, holes, strict=True)])
    inpainted = torch.from_numpy(filled).permute(0, 3, 1, 2).to(image.device, image.dtype) / 255
    # Keep valid pixels exact rather than 8-bit quantised.
    return torch.where(valid, image, inpainted)


def telea(image: Tensor, valid_mask: Tensor, *, radius: float = 3.0) -> Tensor:
    """OpenCV Telea inpainting as a ``model_fn``: (N,3,H,W) in [0,1], (N,1,H,W) valid mask -> (N,3,H,W)."""
    return _cv2_inpaint(image, valid_mask, radius, cv2.INPAINT_TELEA)


def navier_stokes(image: Tensor, valid_mask: Tensor, *, radius: float = 3.0) -> Tensor:
    """OpenCV Navier-Stokes inpainting as a ``model_fn``; same contract as ``telea``."""
    return _cv2_inpaint(image, valid_mask, radius, cv2.INPAINT_NS)


def _bucket_of(ratio: float, buckets: tuple[tuple[float, float], ...]) -> int | None:
    if buckets == HOLE_RATIO_BUCKETS:
        return bucket_index(ratio)
    # masks.bucket_index only knows the paper's buckets; same (low, high] rule for custom ones.
    return next((i for i, (low, high) in enumerate(buckets) if low < ratio <= high), None)


def _batches(samples: Iterable[tuple[Tensor, Tensor]], batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Group single (3,H,W)/(1,H,W) pairs into batches; pass batched (N,3,H,W) pairs through as they are."""
    images: list[Tensor] = []
    masks: list[Tensor] = []
    for sample in samples:
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise ValueError(f"expected samples to be (image, valid_mask) pairs, got {type(sample).__name__}")
        image, valid_mask = sample
        if image.ndim != valid_mask.ndim or image.ndim not in (3, 4):
            raise ValueError(
                f"expected image (3,H,W) with valid_mask (1,H,W), or (N,3,H,W) with (N,1,H,W), got "
                f"{tuple(image.shape)} and {tuple(valid_mask.shape)}"
            )
        # Flush singles before a batch or a size change, since only equal sizes stack.
        if images and (
            image.ndim == 4 or image.shape != images[0].shape or valid_mask.shape != masks[0].shape
        ):
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
        if image.ndim == 4:
            yield image, valid_mask
            continue
        images.append(image)
        masks.append(valid_mask)
        if len(images) == batch_size:
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
    if images:
        yield torch.stack(images), torch.stack(masks)


def _check_batch(image: Tensor, valid_mask: Tensor) -> None:
    n, c, h, w = image.shape
    if (
        c != 3
        or valid_mask.shape[0] != n
        or valid_mask.shape[1] not in (1, 3)
        or valid_mask.shape[2:] != (h, w)
    ):
        raise ValueError(
            f"expected an image (N,3,H,W) and valid_mask (N,1,H,W) of the same N,H,W, got "
            f"{tuple(image.shape)} and {tuple(valid_mask.shape)}"
        )


def evaluate(
    model_fn: ModelFn,
    samples: Iterable[tuple[Tensor, Tensor]],
    *,
    buckets: tuple[tuple[float, float], ...] = HOLE_RATIO_BUCKETS,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Mean L1 / PSNR / SSIM of ``model_fn`` per hole-ratio bucket on the composite, as in the paper's tables.

    ``model_fn(image, valid_mask)`` receives the image with holes zeroed (so it cannot see the ground truth)
    and the (N,1,H,W) valid mask, and returns (N,3,H,W). An ``nn.Module`` is put in eval mode for the call
    and restored afterwards. The composite (ground truth on valid pixels, output in holes) is clamped to
    [0,1]; PSNR is clamped to ``PSNR_MAX_DB``.

    Args:
        model_fn: a model or a baseline such as ``telea``.
        samples: ``(image, valid_mask)`` pairs, single ((3,H,W), (1,H,W)) or batched ((N,3,H,W), (N,1,H,W)),
            e.g. a Dataset or a DataLoader. Single images are stacked into batches of ``batch_size``.
        buckets: (low, high] hole-ratio intervals.
        batch_size: batch size for single samples.
        device: where to run ``model_fn`` and the metrics; None keeps the samples' device.
        progress: show a tqdm progress bar.

    Returns:
        ``{masks.bucket_label(b): {"count", "l1", "psnr", "ssim"}}`` (keys like ``"0.01-0.1"``) for every
        bucket, in order, then ``"all"`` over every image (including those outside all buckets). Empty
        buckets have count 0 and NaN metrics.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = [bucket_label(b) for b in buckets] + ["all"]  # also validates the buckets
    names = ("l1", "psnr", "ssim")
    sums = [dict.fromkeys(names, 0.0) for _ in range(len(buckets) + 1)]  # last entry: "all"
    counts = [0] * (len(buckets) + 1)

    iterator: Iterable[tuple[Tensor, Tensor]] = samples
    if progress:
        iterator = tqdm(samples, desc="evaluate", total=len(samples) if hasattr(samples, "__len__") else None)

    was_training = isinstance(model_fn, nn.Module) and model_fn.training
    if isinstance(model_fn, nn.Module):
        model_fn.eval()
    try:
        with torch.inference_mode():
            for image, valid_mask in _batches(iterator, batch_size):
                _check_batch(image, valid_mask)
                h, w = image.shape[2:]
                image = image.to(device=device, dtype=torch.float32)
                valid_mask = valid_mask.to(device=device, dtype=torch.float32)
                output = model_fn(image * valid_mask, valid_mask)
                if output.shape != image.shape:
                    raise ValueError(
                        f"model_fn returned shape {tuple(output.shape)}, expected {tuple(image.shape)}"
                    )
                composite = (valid_mask * image + (1 - valid_mask) * output.float()).clamp(0, 1)
                values = {
                    "l1": l1(composite, image).tolist(),
                    "psnr": psnr(composite, image).tolist(),
                    "ssim": ssim(composite, image).tolist(),
                }
                # Same definition as masks.hole_ratio: share of pixels below 0.5, exact integer counts.
                hole_counts = (valid_mask.amin(dim=1) < 0.5).flatten(1).sum(dim=1).tolist()
                for i, holes in enumerate(hole_counts):
                    index = _bucket_of(holes / (h * w), buckets)
                    for target in (len(buckets),) if index is None else (index, len(buckets)):
                        counts[target] += 1
                        for name in names:
                            sums[target][name] += values[name][i]
    finally:
        if was_training:
            model_fn.train()

    return {
        label: {"count": count, **{n: s[n] / count if count else math.nan for n in names}}
        for label, count, s in zip(labels, counts, sums, strict=True)
    }


def format_table(results_by_method: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table in the paper's layout: one row per method, PSNR / SSIM / L1 (%) per bucket.

    Args:
        results_by_method: method name -> result of ``evaluate``. Columns follow the first method's buckets.
    """
    if not results_by_method:
        raise ValueError("results_by_method is empty; expected at least one method")
    labels = list(next(iter(results_by_method.values())))
    header = ["Method"] + [f"{label} {metric}" for label in labels for metric in ("PSNR", "SSIM", "L1 (%)")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, results in results_by_method.items():
        cells = [method]
        for label in labels:
            row = results.get(label)
            if not row or not row["count"]:
                cells += ["–"] * 3
                continue
            cells += [f"{row['psnr']:.2f}", f"{row['ssim']:.3f}", f"{100 * row['l1']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
