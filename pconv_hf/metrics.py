"""Evaluation metrics, OpenCV baselines and the per-hole-ratio evaluation loop of the paper's Table 1.

Metrics are computed on the composite (valid pixels from the ground truth, holes from the output), binned by
each image's hole ratio. ``evaluate`` is the one code path used by training-time validation and the
evaluation CLI. LPIPS (Zhang et al. 2018, v0.1) uses the ImageNet networks and linear heads converted by
``pconv_hf.feature_weights`` (local files, never downloaded).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from pconv_hf import seams as seam_measures
from pconv_hf.feature_weights import feature_weights_dir, feature_weights_path, load_feature_weights, missing_message
from pconv_hf.features import alexnet_layers, vgg16_layers
from pconv_hf.masks import HOLE_RATIO_BUCKETS, bucket_index, bucket_label
from pconv_hf.model import compose, eval_mode
from pconv_hf.seams import ModelFn

# PSNR of a perfect reconstruction is infinite; clamp so means over images stay finite.
PSNR_MAX_DB = 100.0


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


# LPIPS v0.1 "scaling layer": its networks expect ((x in [-1,1]) - shift) / scale.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_NETWORKS = ("alexnet", "vgg16")
# Smallest image side whose last feature map is still at least 1x1.
LPIPS_MIN_SIZE = {"alexnet": 31, "vgg16": 16}
# Added to the channel norm before dividing, as in the reference implementation.
_LPIPS_EPS = 1e-10


# torchvision's features[:count] and the ends of the five stages LPIPS compares: relu1 ... relu5 of AlexNet;
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16.
_LPIPS_ARCHITECTURES = {
    "alexnet": (alexnet_layers, 12, (2, 5, 8, 10, 12)),
    "vgg16": (vgg16_layers, 30, (4, 9, 16, 23, 30)),
}


class LPIPS(nn.Module):
    """LPIPS v0.1 distance (lower = more similar), frozen and always in eval mode.

    Matches the reference ``lpips`` package (``LPIPS(net=..., version="0.1")`` with ``normalize=True``): images
    in [0,1] are mapped to [-1,1] and through the scaling layer, each of five ReLU feature maps is unit-normalised
    over channels, the squared difference is weighted by a learned 1x1 head and averaged over space, and the five
    layers are summed. Always computed in float32, with autocast disabled.

    Args:
        net: ``"alexnet"`` (the variant papers report as "LPIPS") or ``"vgg16"``.
        device: where to create the weights.

    Raises:
        FileNotFoundError: the converted weights are not there (the message says how to make them).
    """

    def __init__(self, net: str = "alexnet", *, device: torch.device | str | None = None) -> None:
        super().__init__()
        if net not in LPIPS_NETWORKS:
            raise ValueError(f"net must be one of {LPIPS_NETWORKS}, got {net!r}")
        self.net = net
        build, count, self.stage_ends = _LPIPS_ARCHITECTURES[net]
        layers = build(count, device=device)
        # Named "features" with torchvision's indices so the converted keys "features.<i>.*" map one to one.
        self.features = nn.Sequential(*layers)
        # One 1x1 head (no bias) per stage, on the channels of the stage's last convolution; "lin<i>" in the file.
        stage_channels = [
            [m for m in layers[:end] if isinstance(m, nn.Conv2d)][-1].out_channels for end in self.stage_ends
        ]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False, device=device) for c in stage_channels)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE, device=device).view(1, 3, 1, 1), persistent=False)
        self._load_weights()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def _load_weights(self) -> None:
        features = load_feature_weights(self.net)
        heads = load_feature_weights(f"lpips-{self.net}")
        try:
            self.features.load_state_dict({k.removeprefix("features."): v for k, v in features.items()})
            self.heads.load_state_dict({k.removeprefix("lin"): v for k, v in heads.items()})
        except RuntimeError as error:
            raise ValueError(
                f"the converted {self.net} / lpips-{self.net} weights in {feature_weights_dir()} do not fit LPIPS "
                f"({error}); re-run bash scripts/fetch_feature_weights.sh"
            ) from error

    def train(self, mode: bool = True) -> LPIPS:
        """Ignore ``mode``: LPIPS is frozen and always stays in eval mode."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"net={self.net}, version=0.1"

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Distances (N,) between (N,3,H,W) images in [0,1]."""
        _check_pair(output, target)
        n, c, h, w = output.shape
        if c != 3:
            raise ValueError(f"expected RGB images (N,3,H,W), got {tuple(output.shape)}")
        if min(h, w) < LPIPS_MIN_SIZE[self.net]:
            raise ValueError(
                f"LPIPS ({self.net}) needs images of at least {LPIPS_MIN_SIZE[self.net]} px a side, got {h}x{w}; "
                "evaluate(..., lpips=False) or evaluate.py --no_lpips leaves it out"
            )
        with torch.autocast(device_type=output.device.type, enabled=False):
            # 1. Both images in one batch: [0,1] -> [-1,1] -> the networks' input scaling.
            x = torch.cat([output, target]).float() * 2 - 1
            x = (x - self.shift) / self.scale
            distance = torch.zeros(n, device=output.device)
            start = 0
            for end, head in zip(self.stage_ends, self.heads, strict=True):
                # 2. The next ReLU feature map, unit-normalised over channels.
                x = self.features[start:end](x)
                start = end
                unit = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + _LPIPS_EPS)
                # 3. Learned channel weights of the squared difference, averaged over space.
                distance = distance + head((unit[:n] - unit[n:]).pow(2)).mean(dim=(1, 2, 3))
        return distance


def lpips_available(net: str = "alexnet") -> bool:
    """Whether the converted weights LPIPS(``net``) needs are in ``feature_weights_dir()``."""
    return all(feature_weights_path(name).is_file() for name in (net, f"lpips-{net}"))


def _require_lpips_weights(net: str) -> None:
    for name in (net, f"lpips-{net}"):
        if not feature_weights_path(name).is_file():
            raise FileNotFoundError(missing_message(name))


@functools.lru_cache(maxsize=8)
def _lpips_module(net: str, device: torch.device, weights_dir: Path) -> LPIPS:
    # weights_dir is only part of the key: a changed PCONV_HF_HOME loads afresh. Built outside inference mode so
    # that a module first made inside evaluate() can later be used where autograd is on.
    del weights_dir
    with torch.inference_mode(False):
        return LPIPS(net, device=device)


def lpips(output: Tensor, target: Tensor, net: str = "alexnet") -> Tensor:
    """LPIPS v0.1 distance per image for (N,3,H,W) images in [0,1], shape (N,); lower is more similar.

    Uses one cached :class:`LPIPS` per (net, device). 0 for identical images; about 0.43 (alexnet) between
    ``skimage.data.astronaut()`` and its Gaussian blur with sigma 3.
    """
    _check_pair(output, target)
    return _lpips_module(net, output.device, feature_weights_dir())(output, target)


def _check_model_fn_pair(image: Tensor, valid_mask: Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected image of shape (N,3,H,W), got {tuple(image.shape)}")
    if (
        valid_mask.ndim != 4
        or valid_mask.shape[1] not in (1, 3)
        or (valid_mask.shape[0] != image.shape[0] or valid_mask.shape[2:] != image.shape[2:])
    ):
        raise ValueError(
            f"expected valid_mask of shape (N,1,H,W) matching image {tuple(image.shape)}, got {tuple(valid_mask.shape)}"
        )


def _fill_each(
    image: Tensor, valid_mask: Tensor, fill: Callable[[np.ndarray, np.ndarray], np.ndarray], workers: int = 1
) -> Tensor:
    """Run ``fill(photo (H,W,3) uint8, hole (H,W) bool) -> (H,W,3) uint8`` on every image of a batch, on up to
    ``workers`` threads (OpenCV releases the GIL)."""
    _check_model_fn_pair(image, valid_mask)
    # A pixel is valid only if all of its channels are.
    valid = valid_mask.amin(dim=1, keepdim=True) > 0.5
    # The OpenCV methods need 8-bit input for 3 channels.
    pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    holes = (~valid[:, 0]).cpu().numpy()
    if workers > 1 and len(pixels) > 1:
        with ThreadPoolExecutor(min(workers, len(pixels))) as pool:
            filled = np.stack(list(pool.map(fill, pixels, holes)))
    else:
        filled = np.stack([fill(p, h) for p, h in zip(pixels, holes, strict=True)])
    inpainted = torch.from_numpy(filled).permute(0, 3, 1, 2).to(image.device, image.dtype) / 255
    # Keep valid pixels exact rather than 8-bit quantised.
    return torch.where(valid, image, inpainted)


def telea(image: Tensor, valid_mask: Tensor, *, radius: float = 3.0) -> Tensor:
    """OpenCV Telea inpainting as a ``model_fn``: (N,3,H,W) in [0,1], (N,1,H,W) valid mask -> (N,3,H,W)."""
    return _fill_each(image, valid_mask, lambda p, h: cv2.inpaint(p, h.view(np.uint8) * 255, radius, cv2.INPAINT_TELEA))


def navier_stokes(image: Tensor, valid_mask: Tensor, *, radius: float = 3.0) -> Tensor:
    """OpenCV Navier-Stokes inpainting as a ``model_fn``; same contract as ``telea``."""
    return _fill_each(image, valid_mask, lambda p, h: cv2.inpaint(p, h.view(np.uint8) * 255, radius, cv2.INPAINT_NS))


# cv2.xphoto's shift-map works on the photo shrunk to fit SHIFTMAP_WORK_SIZE (long side, short side) and copies the
# chosen shifts back at full size; the graph cut over the hole's pixels at that size is what it costs.
SHIFTMAP_WORK_SIZE = (800, 600)


def shiftmap_fill(photo: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV's exemplar-based shift-map fill (He & Sun 2012, ``cv2.xphoto.inpaint(..., INPAINT_SHIFTMAP)``).

    Copies the photo's own pixels into the hole: a graph cut picks, for every hole pixel, one of the 60 most common
    patch offsets. Deterministic. OpenCV works on the photo shrunk to fit 800x600 and copies the chosen offsets
    back at full size, so the cost is bounded whatever the photo's size; it grows with the hole. CPU seconds
    measured (2026-12-07, one thread): 3-17 for a 256-px image with 9-56 % irregular holes, 7 for 0.36 MP with a
    3 % stroke, 20-32 for 16 MP with 3-23 % holes; Telea takes hundredths to a few seconds.

    Args:
        photo: (H, W, 3) uint8 RGB.
        hole: (H, W) bool, True = pixel to fill.

    Returns:
        The photo with only the hole pixels replaced, (H, W, 3) uint8.
    """
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected an (H,W,3) uint8 photo, got {photo.shape} {photo.dtype}")
    if hole.shape != photo.shape[:2]:
        raise ValueError(f"expected an (H,W) hole of the photo's size {photo.shape[:2]}, got {hole.shape}")
    hole = hole.astype(bool)
    if not hole.any():
        return photo.copy()
    if hole.all():
        raise ValueError("shift-map needs known pixels to copy from, got a hole covering the whole photo")
    height, width = hole.shape
    long_side, short_side = SHIFTMAP_WORK_SIZE
    shrink = max(min(max(height, width) / long_side, min(height, width) / short_side), 1.0)
    # OpenCV shrinks the mask by nearest neighbour, which can drop a stroke thinner than the shrink factor and
    # leave it unfilled: grow the hole it is given by that much (only the true hole's pixels are kept).
    grow = math.ceil(shrink) if shrink > 1 else 0
    work_hole = cv2.dilate(hole.view(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)).view(bool) if grow else hole
    if work_hole.all():  # a hole that leaves only a thin frame: keep the frame as it is
        work_hole = hole
    # The source in CIELab as OpenCV expects; the pixels to replace are set to the mean known colour so that
    # nothing of them reaches the fill (OpenCV keeps the full-size source where it copies back).
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2Lab)
    lab[work_hole] = lab[~work_hole].mean(axis=0).round().astype(np.uint8)
    known = np.where(work_hole, 0, 255).astype(np.uint8)  # nonzero = known pixel there
    result = np.empty_like(lab)
    cv2.xphoto.inpaint(lab, known, result, cv2.xphoto.INPAINT_SHIFTMAP)
    filled = photo.copy()
    filled[hole] = cv2.cvtColor(result, cv2.COLOR_Lab2RGB)[hole]
    return filled


def shiftmap(image: Tensor, valid_mask: Tensor) -> Tensor:
    """OpenCV's exemplar-based shift-map (:func:`shiftmap_fill`) as a ``model_fn``; same contract as ``telea``.

    Single-threaded inside OpenCV and seconds per 256-px image, so the images of a batch are filled side by side
    on ``torch.get_num_threads()`` threads.
    """
    return _fill_each(image, valid_mask, shiftmap_fill, workers=torch.get_num_threads())


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
        if images and (image.ndim == 4 or image.shape != images[0].shape or valid_mask.shape != masks[0].shape):
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
    if c != 3 or valid_mask.shape[0] != n or valid_mask.shape[1] not in (1, 3) or valid_mask.shape[2:] != (h, w):
        raise ValueError(
            f"expected an image (N,3,H,W) and valid_mask (N,1,H,W) of the same N,H,W, got "
            f"{tuple(image.shape)} and {tuple(valid_mask.shape)}"
        )


def eval_samples(
    images: list[torch.Tensor], masks: list[tuple[int, np.ndarray]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pair every image with one mask of every bucket: image i gets the bucket's mask ``i % masks_per_bucket``.

    Args:
        images: (3, H, W) tensors.
        masks: ``pconv_hf.masks.fixed_masks`` output, (bucket index, valid mask) pairs.

    Returns:
        (image, valid mask (1, H, W)) pairs, bucket by bucket.
    """
    by_bucket: dict[int, list[np.ndarray]] = {}
    for bucket, valid_mask in masks:
        by_bucket.setdefault(bucket, []).append(valid_mask)
    samples = []
    for bucket in sorted(by_bucket):
        bucket_masks = by_bucket[bucket]
        for i, image in enumerate(images):
            valid_mask = torch.from_numpy(np.ascontiguousarray(bucket_masks[i % len(bucket_masks)]))[None]
            samples.append((image, valid_mask.float()))
    return samples


def evaluate(
    model_fn: ModelFn,
    samples: Iterable[tuple[Tensor, Tensor]],
    *,
    buckets: tuple[tuple[float, float], ...] = HOLE_RATIO_BUCKETS,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    progress: bool = False,
    lpips: bool | None = None,
    seams: bool = True,
) -> dict[str, dict[str, float]]:
    """Mean L1 / PSNR / SSIM (LPIPS, seam measures) of ``model_fn`` per hole-ratio bucket on the composite.

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
        lpips: add LPIPS v0.1 (AlexNet; lower is better). None: when its converted weights are present
            (``lpips_available()``); True: always (FileNotFoundError if they are missing); False: never.
        seams: add the boundary-artifact measures of ``pconv_hf.seams``, pooled over the bucket's hole pixels:
            ``ring`` (error in the 2-px ring inside the hole edge / the next ring inward; OpenCV about 0.6) and
            ``corner`` (error at hole pixels with 5 valid neighbours / with 4; a dotted edge line makes it high).

    Returns:
        ``{masks.bucket_label(b): {"count", "l1", "psnr", "ssim"[, "lpips"][, "ring", "corner"]}}`` (keys like
        ``"0.01-0.1"``) for every bucket, in order, then ``"all"`` over every image (including those outside all
        buckets). Empty buckets have count 0 and NaN metrics.

    Raises:
        FileNotFoundError: ``lpips=True`` and the LPIPS weights are not there (the message says how to make them).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = [bucket_label(b) for b in buckets] + ["all"]  # also validates the buckets
    if lpips is None:
        lpips = lpips_available()
    elif lpips:
        _require_lpips_weights("alexnet")  # before running any model
    names = ("l1", "psnr", "ssim", "lpips") if lpips else ("l1", "psnr", "ssim")
    sums = [dict.fromkeys(names, 0.0) for _ in range(len(buckets) + 1)]  # last entry: "all"
    counts = [0] * (len(buckets) + 1)
    # Seam measures pool pixels, not images: [ring inner sum, count, outer sum, count, corner 5 sum, count, 4 ...]
    seam_sums = [[0.0] * 8 for _ in range(len(buckets) + 1)]

    iterator: Iterable[tuple[Tensor, Tensor]] = samples
    if progress:
        iterator = tqdm(samples, desc="evaluate", total=len(samples) if hasattr(samples, "__len__") else None)

    with eval_mode(model_fn), torch.inference_mode():
        for image, valid_mask in _batches(iterator, batch_size):
            _check_batch(image, valid_mask)
            h, w = image.shape[2:]
            image = image.to(device=device, dtype=torch.float32)
            valid_mask = valid_mask.to(device=device, dtype=torch.float32)
            output = model_fn(image * valid_mask, valid_mask)
            if output.shape != image.shape:
                raise ValueError(f"model_fn returned shape {tuple(output.shape)}, expected {tuple(image.shape)}")
            composite = compose(image, valid_mask, output.float()).clamp(0, 1)
            values = {
                "l1": l1(composite, image).tolist(),
                "psnr": psnr(composite, image).tolist(),
                "ssim": ssim(composite, image).tolist(),
            }
            if lpips:
                values["lpips"] = _lpips_module("alexnet", composite.device, feature_weights_dir())(
                    composite, image
                ).tolist()
            # Same definition as masks.hole_ratio: share of pixels below 0.5, exact integer counts.
            hole_counts = (valid_mask.amin(dim=1) < 0.5).flatten(1).sum(dim=1).tolist()
            for i, holes in enumerate(hole_counts):
                index = bucket_index(holes / (h * w), buckets)
                one = slice(i, i + 1)
                seam_values = _seam_sums(composite[one], image[one], valid_mask[one]) if seams else ()
                for target in (len(buckets),) if index is None else (index, len(buckets)):
                    counts[target] += 1
                    for name in names:
                        sums[target][name] += values[name][i]
                    for j, value in enumerate(seam_values):
                        seam_sums[target][j] += value

    results = {
        label: {"count": count, **{n: s[n] / count if count else math.nan for n in names}}
        for label, count, s in zip(labels, counts, sums, strict=True)
    }
    if seams:
        for label, pooled in zip(labels, seam_sums, strict=True):
            results[label]["ring"] = seam_measures.ratio_of_means(*pooled[:4])
            results[label]["corner"] = seam_measures.ratio_of_means(*pooled[4:])
    return results


def _seam_sums(output: Tensor, target: Tensor, valid_mask: Tensor) -> tuple[float, ...]:
    by_neighbours = seam_measures.error_by_valid_neighbours(output, target, valid_mask)
    return (*seam_measures.ring_error_sums(output, target, valid_mask), *by_neighbours[5], *by_neighbours[4])


def format_table(results_by_method: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table in the paper's layout: one row per method, PSNR / SSIM / L1 (%) per bucket.

    When any method's results hold ``"lpips"`` or ``"ring"``, every bucket also gets an "LPIPS ↓" or
    "ring ↓" column (lower is better; "–" for a method without it).

    Args:
        results_by_method: method name -> result of ``evaluate``. Columns follow the first method's buckets.
    """
    if not results_by_method:
        raise ValueError("results_by_method is empty; expected at least one method")
    labels = list(next(iter(results_by_method.values())))
    columns = [("PSNR", "psnr", "{:.2f}", 1), ("SSIM", "ssim", "{:.3f}", 1), ("L1 (%)", "l1", "{:.2f}", 100)]
    for header, key in (("LPIPS ↓", "lpips"), ("ring ↓", "ring")):
        if any(key in row for results in results_by_method.values() for row in results.values()):
            columns.append((header, key, "{:.3f}", 1))
    header = ["Method"] + [f"{label} {column[0]}" for label in labels for column in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, results in results_by_method.items():
        cells = [method]
        for label in labels:
            row = results.get(label)
            for _, key, fmt, scale in columns:
                present = row and row["count"] and key in row
                cells.append(fmt.format(scale * row[key]) if present else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
