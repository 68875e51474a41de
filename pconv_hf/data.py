"""Image streams for training and evaluation: sources (local folders, ``save_to_disk`` folders, Hub datasets),
the training transforms and the (image, valid mask) batches. The only module that imports ``datasets``.

Every source becomes a ``datasets.IterableDataset`` whose ``image`` column holds undecoded
``{"bytes", "path"}`` dicts (``datasets.Image(decode=False)``); ``pconv_hf.images.decode_image`` decodes them so
that a corrupt, truncated or tiny file is skipped and counted instead of crashing a long run.

Randomness: the crop, flip and mask of a training sample come from
``np.random.default_rng([seed, epoch, rank, position])``, where ``position`` is the sample's index in this
rank's (shuffled) stream of the epoch. Nothing reads global random state, so a resumed run reproduces the
crops and masks of an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from PIL import Image

from .images import (
    DATASET_FOLDER_MARKERS,
    DEFAULT_MIN_SIDE,
    SKIP_REASONS,
    BadImageError,
    center_crop_resize,
    decode_image,
    image_folder,
    resize_square,
    to_tensor,
)
from .masks import MaskSource

IMAGE_COLUMN_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp")
_MAX_LOCAL_SHARDS = 5040  # divisible by 1-10, 12, 14, 16: whole shards per rank for common world sizes
_CROP_AREA_RANGE = (0.25, 1.0)

DefectSource = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]
"""``(clean image (3, H, W), rng) -> image with a synthetic defect``, e.g. ``pconv_hf.anomaly.DefectPainter``."""

TRAIN_TRANSFORMS = ("random_resized_crop", "multiscale_crop", "resize_flip")
"""Training transforms: ``random_resized_crop`` (the inpainting default), ``multiscale_crop`` (crops from native
pixel scale up to the whole short side, for high-resolution photos) or ``resize_flip`` (anomaly detection:
nothing is cropped, so the model trains at the scale it scores at)."""
# multiscale_crop decodes JPEGs at no less than this many training resolutions on the short side.
_MULTISCALE_DRAFT_FACTOR = 4


# ---------------------------------------------------------------------------------------------------------
# Decoding


def example_id(example: dict[str, Any]) -> str:
    """A stable identifier of a stream example: its file path, its webdataset key, else a hash of its bytes."""
    image = example.get("image")
    if isinstance(image, dict) and image.get("path"):
        return str(image["path"])
    if example.get("__key__"):
        return str(example["__key__"])
    if isinstance(image, dict) and image.get("bytes") is not None:
        return "sha1:" + hashlib.sha1(image["bytes"]).hexdigest()[:16]
    return "unknown"


# ---------------------------------------------------------------------------------------------------------
# Transforms


def random_resized_crop(image: Image.Image, resolution: int, rng: np.random.Generator) -> Image.Image:
    """The training crop: a random square covering 25-100 % of the area of the short-side square (its side
    is 50-100 % of the short side), resized to ``resolution`` and flipped horizontally half the time.

    This equals "resize the short side to anything in [resolution, 2 x resolution], crop a square of 25-100 %
    of that area, resize to ``resolution``" done in one resampling step (Lanczos with ``reducing_gap``)
    straight from the original pixels: the resized size cancels out. Images smaller than ``resolution``
    are upscaled.
    """
    width, height = image.size
    short = min(width, height)
    crop = short * math.sqrt(rng.uniform(*_CROP_AREA_RANGE))
    return _resized_square(image, resolution, crop, rng)


def _resized_square(image: Image.Image, resolution: int, crop: float, rng: np.random.Generator) -> Image.Image:
    """A square of side ``crop`` at a random place, resized to ``resolution``, flipped horizontally half the time."""
    width, height = image.size
    left = rng.uniform(0, width - crop)
    top = rng.uniform(0, height - crop)
    flip = rng.random() < 0.5
    out = image.resize(
        (resolution, resolution),
        Image.Resampling.LANCZOS,
        box=(left, top, left + crop, top + crop),
        reducing_gap=3.0,
    )
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def multiscale_crop(image: Image.Image, resolution: int, rng: np.random.Generator) -> Image.Image:
    """A random square whose side is log-uniform between ``resolution`` px (the photo's own pixels, 1:1) and
    the short side (the whole photo's scale), resized to ``resolution`` and flipped horizontally half the time.

    From a high-resolution photo this gives fine texture at native scale as often as whole-scene structure;
    ``random_resized_crop`` only ever sees a photo at 1-2x the scale of its short side.
    """
    width, height = image.size
    short = min(width, height)
    low = min(resolution, short)
    crop = math.exp(rng.uniform(math.log(low), math.log(short)))
    return _resized_square(image, resolution, crop, rng)


def native_crop(image: Image.Image, resolution: int, rng: np.random.Generator) -> Image.Image:
    """A ``resolution`` x ``resolution`` square at the photo's own pixel scale (1:1, no resampling) at a random
    place, flipped horizontally half the time: what ``inpaint()`` shows the network when a thin hole is filled at
    native resolution. Images smaller than ``resolution`` on a side are resized up to it first."""
    width, height = image.size
    if min(width, height) < resolution:
        return _resized_square(image, resolution, min(width, height), rng)
    left = int(rng.integers(0, width - resolution + 1))
    top = int(rng.integers(0, height - resolution + 1))
    out = image.crop((left, top, left + resolution, top + resolution))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out


def resize_flip(image: Image.Image, resolution: int, rng: np.random.Generator) -> Image.Image:
    """The anomaly-detection training transform: the whole image resized to ``resolution`` x ``resolution``
    (aspect ratio not kept, nothing cropped away), flipped horizontally and vertically, each half the time.

    Scoring (``pconv_hf.anomaly``) resizes the same way, so the model trains at the scale it is used at.
    """
    out = resize_square(image, resolution)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return out


# ---------------------------------------------------------------------------------------------------------
# Sources


def detect_image_column(features: datasets.Features | None, example: dict[str, Any] | None = None) -> str:
    """The first column of ``datasets.Image`` type, else the first of "image", "img", "jpg", ... present."""
    if features:
        for name, feature in features.items():
            if isinstance(feature, datasets.Image):
                return name
        names = list(features)
    else:
        names = list(example or {})
        for name, value in (example or {}).items():
            if isinstance(value, Image.Image) or (isinstance(value, dict) and "bytes" in value):
                return name
    for candidate in IMAGE_COLUMN_NAMES:
        if candidate in names:
            return candidate
    raise ValueError(f"cannot find an image column among {names}; pass --image_column")


def load_examples(
    source: str | os.PathLike,
    *,
    split: str = "train",
    config: str | None = None,
    image_column: str | None = None,
) -> datasets.IterableDataset:
    """An unshuffled stream with an undecoded ``image`` column (plus ``__key__`` when the source has one).

    ``source`` is a folder of images (searched recursively, sorted paths), a ``Dataset.save_to_disk`` folder,
    another local folder ``datasets.load_dataset`` understands (parquet, arrow, ...), or a Hub dataset id.
    """
    path = Path(source)
    if files := image_folder(path):
        paths = [str(f) for f in files]
        table = datasets.Dataset.from_dict(
            {"image": paths}, features=datasets.Features({"image": datasets.Image(decode=False)})
        )
        return table.to_iterable_dataset(num_shards=min(len(paths), _MAX_LOCAL_SHARDS))

    if path.is_dir() and any((path / marker).is_file() for marker in DATASET_FOLDER_MARKERS):
        saved = datasets.load_from_disk(str(path))
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise ValueError(f"split {split!r} not in {str(path)!r}; available: {list(saved)}")
            saved = saved[split]
        stream = saved.to_iterable_dataset(num_shards=min(len(saved), _MAX_LOCAL_SHARDS) or 1)
    else:
        try:
            stream = datasets.load_dataset(str(source), config, split=split, streaming=True)
        except FileNotFoundError as error:
            raise ValueError(
                f"{str(source)!r} is neither a folder of images nor a dataset datasets can load "
                f"(a local folder or a Hub id; offline, Hub ids only work from the local cache): {error}"
            ) from error

    features = stream.features
    example = None if features else next(iter(stream))
    column = image_column or detect_image_column(features, example)
    names = list(features) if features else list(example)
    if column not in names:
        raise ValueError(f"image column {column!r} not in the dataset's columns {names}")
    keep = [column] + (["__key__"] if "__key__" in names else [])
    stream = stream.select_columns(keep)
    if column != "image":
        stream = stream.rename_column(column, "image")
    return stream.cast_column("image", datasets.Image(decode=False))


def rank_stream(
    examples: datasets.IterableDataset, *, seed: int, shuffle_buffer_size: int, rank: int, world_size: int
) -> datasets.IterableDataset:
    """Shuffle (shard order and a buffer, reseeded by ``set_epoch``) and keep this rank's part.

    The shuffle seed is the same on every rank, so the ranks split one shuffled order into disjoint parts.
    """
    if shuffle_buffer_size > 1:
        examples = examples.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    if world_size > 1:
        # Whole shards per rank when num_shards % world_size == 0, else every rank keeps 1 example in world_size.
        examples = split_dataset_by_node(examples, rank=rank, world_size=world_size)
    return examples


def iter_examples(examples: datasets.IterableDataset) -> Iterator[dict[str, Any]]:
    """Rows one by one. ``IterableDataset.iter`` does not split shards among DataLoader workers (plain
    iteration would), so every worker sees the whole rank stream and ``TrainingStream`` splits it."""
    for batch in examples.iter(batch_size=1):
        yield {name: values[0] for name, values in batch.items()}


# ---------------------------------------------------------------------------------------------------------
# Training stream


class TrainingStream(torch.utils.data.IterableDataset):
    """Endless batches of ``{"image", "valid_mask", "ids", "state"}`` (plus ``"input"`` with synthetic defects)
    for one rank, epoch after epoch.

    Batching happens here (use ``DataLoader(stream, batch_size=None)``). With W DataLoader workers, worker l
    decodes the examples at positions ``p % W == l`` of the rank stream and yields whole batches; the
    DataLoader takes them round robin, so the order is deterministic. Each batch carries a ``state`` dict
    (worker, epoch, next position, newly skipped images) from which ``resume_state`` rebuilds an exact
    restart: the consumed examples are skipped without decoding and the workers' turns are rotated so that
    the next batch comes from the worker whose turn it was.

    Args:
        examples: this rank's stream (``rank_stream``); ``set_epoch`` is called on it every pass.
        resolution: output side in pixels.
        batch_size: images per batch.
        mask_source: ``rng -> valid mask (H, W)``.
        seed, rank: mixed into every sample's random generator.
        min_side: images with a shorter side are skipped.
        transform: one of ``TRAIN_TRANSFORMS``.
        defect_source: paints a synthetic defect on a clean image. With ``defect_probability`` > 0, batches
            carry an ``input`` entry: each image, with probability ``defect_probability``, defected; ``image``
            stays clean (the target), so a model learns to remove such defects. The defect's randomness comes
            from ``np.random.default_rng([seed, epoch, rank, position, 1])``, apart from the crop and mask.
        defect_probability: share of images (on average) given a defect.
        native_probability: share of crops (on average) taken by ``native_crop`` (the photo's own pixels, decoded
            at full size) instead of ``transform``; which crops are native is drawn from
            ``np.random.default_rng([seed, epoch, rank, position, 3])``.
        grayscale_probability: share of crops (on average) turned grayscale (three equal channels), so the
            model also learns black-and-white photos, where a colour tint in the fill would be plain wrong.
            Drawn from ``np.random.default_rng([seed, epoch, rank, position, 2])``: crops and masks do not
            change with it.
    """

    def __init__(
        self,
        examples: datasets.IterableDataset,
        *,
        resolution: int,
        batch_size: int,
        mask_source: MaskSource,
        seed: int,
        rank: int = 0,
        min_side: int = DEFAULT_MIN_SIDE,
        transform: str = "random_resized_crop",
        defect_source: DefectSource | None = None,
        defect_probability: float = 0.0,
        grayscale_probability: float = 0.0,
        native_probability: float = 0.0,
    ) -> None:
        super().__init__()
        if transform not in TRAIN_TRANSFORMS:
            raise ValueError(f"transform must be one of {TRAIN_TRANSFORMS}, got {transform!r}")
        for name, value in (
            ("defect_probability", defect_probability),
            ("grayscale_probability", grayscale_probability),
            ("native_probability", native_probability),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if defect_probability > 0 and defect_source is None:
            raise ValueError("defect_probability > 0 needs a defect_source")
        self.transform = transform
        self.defect_source = defect_source
        self.defect_probability = defect_probability
        self.grayscale_probability = grayscale_probability
        self.native_probability = native_probability
        self.examples = examples
        self.resolution = resolution
        self.batch_size = batch_size
        self.mask_source = mask_source
        self.seed = seed
        self.rank = rank
        self.min_side = min_side
        self.worker_offset = 0
        self.start: dict[int, tuple[int, int]] = {}  # logical worker -> (epoch, first position to read)

    def load_resume_state(self, state: dict[str, Any], num_workers: int) -> bool:
        """Continue after the batches recorded in ``state`` (from ``DataPosition.state_dict``).

        Returns False (and starts from scratch) when the state was written with another worker count.
        """
        if state.get("num_workers") != max(num_workers, 1):
            return False
        self.worker_offset = state["batches"] % max(num_workers, 1)
        self.start = {int(k): (v["epoch"], v["next_position"]) for k, v in state["workers"].items()}
        return True

    def sample(self, example: dict[str, Any], epoch: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One (image (3,H,W), valid mask (1,H,W)) pair; raises ``BadImageError`` for unusable images."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, position])
        native = (
            self.native_probability > 0
            and np.random.default_rng([self.seed, epoch, self.rank, position, 3]).random() < self.native_probability
        )
        draft = _MULTISCALE_DRAFT_FACTOR if self.transform == "multiscale_crop" else 2
        draft_side = None if native else draft * self.resolution
        image = decode_image(example["image"], self.min_side, draft_side=draft_side)
        if native:
            crop = native_crop(image, self.resolution, rng)
        elif self.transform == "resize_flip":
            crop = resize_flip(image, self.resolution, rng)
        elif self.transform == "multiscale_crop":
            crop = multiscale_crop(image, self.resolution, rng)
        else:
            crop = random_resized_crop(image, self.resolution, rng)
        valid_mask = self.mask_source(rng)
        if (
            self.grayscale_probability > 0
            and np.random.default_rng([self.seed, epoch, self.rank, position, 2]).random() < self.grayscale_probability
        ):
            crop = crop.convert("L").convert("RGB")
        return to_tensor(crop), torch.from_numpy(np.ascontiguousarray(valid_mask, dtype=np.float32))[None]

    def defected(self, image: torch.Tensor, epoch: int, position: int) -> torch.Tensor:
        """The model input for a clean ``image``: with probability ``defect_probability`` a synthetic defect."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, position, 1])
        if self.defect_source is None or rng.random() >= self.defect_probability:
            return image
        return self.defect_source(image, rng)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        num_workers = info.num_workers if info else 1
        worker = ((info.id if info else 0) + self.worker_offset) % num_workers
        epoch, start_position = self.start.get(worker, (0, 0))
        images: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        ids: list[str] = []
        new_skips: list[tuple[str, str, str]] = []
        # A private copy: datasets shares the epoch counter between DataLoader workers through shared memory.
        examples = copy.deepcopy(self.examples)
        while True:
            examples.set_epoch(epoch)
            read = used = 0
            for position, example in enumerate(iter_examples(examples)):
                read += 1
                if position % num_workers != worker or position < start_position:
                    continue
                try:
                    image, valid_mask = self.sample(example, epoch, position)
                except BadImageError as error:
                    new_skips.append((error.reason, example_id(example), str(error)))
                    continue
                used += 1
                images.append(image)
                if self.defect_probability > 0:
                    inputs.append(self.defected(image, epoch, position))
                masks.append(valid_mask)
                ids.append(example_id(example))
                if len(images) == self.batch_size:
                    state = {"worker": worker, "epoch": epoch, "next_position": position + 1, "skips": new_skips}
                    batch = {"image": torch.stack(images), "valid_mask": torch.stack(masks), "ids": ids, "state": state}
                    if inputs:
                        batch["input"] = torch.stack(inputs)
                    yield batch
                    images, inputs, masks, ids, new_skips = [], [], [], [], []
            if used == 0 and start_position == 0:
                reasons = sorted({reason for reason, _, _ in new_skips}) or ["none"]
                raise ValueError(
                    f"rank {self.rank}, data worker {worker}: no usable image in a full pass over {read} examples "
                    f"(skip reasons: {', '.join(reasons)}). Check the data, or use fewer processes / "
                    f"--dataloader_num_workers than there are images."
                )
            epoch, start_position = epoch + 1, 0


class DataPosition:
    """The data position of one rank: which examples each worker's consumed batches reached, and the images
    skipped so far. Fed every batch's ``state``; saved per rank in each checkpoint."""

    def __init__(self, num_workers: int) -> None:
        self.num_workers = max(num_workers, 1)
        self.batches = 0
        self.workers: dict[int, dict[str, int]] = {}
        self.skipped: dict[str, dict[str, str]] = {reason: {} for reason in SKIP_REASONS}

    def update(self, state: dict[str, Any]) -> list[tuple[str, str, str]]:
        """Record a consumed batch; returns the skips reported for the first time."""
        self.batches += 1
        self.workers[state["worker"]] = {"epoch": state["epoch"], "next_position": state["next_position"]}
        fresh = []
        for reason, image_id, message in state["skips"]:
            if image_id not in self.skipped[reason]:
                self.skipped[reason][image_id] = message
                fresh.append((reason, image_id, message))
        return fresh

    @property
    def epoch(self) -> int:
        return max((w["epoch"] for w in self.workers.values()), default=0)

    def skip_counts(self) -> dict[str, int]:
        return {reason: len(ids) for reason, ids in self.skipped.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "batches": self.batches,
            "workers": {str(k): v for k, v in self.workers.items()},
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = state["batches"]
        self.workers = {int(k): v for k, v in state["workers"].items()}
        self.skipped = {reason: dict(state["skipped"].get(reason, {})) for reason in SKIP_REASONS}


# ---------------------------------------------------------------------------------------------------------
# Evaluation images


def load_eval_images(
    source: str | os.PathLike,
    num_images: int,
    resolution: int,
    *,
    split: str = "train",
    config: str | None = None,
    image_column: str | None = None,
    min_side: int = 1,
) -> tuple[list[torch.Tensor], list[str]]:
    """The first ``num_images`` usable images of ``source`` (sorted files, or stream order), center-cropped
    and resized to ``resolution``: a fixed set. Returns the (3, H, W) tensors and their identifiers."""
    images, ids = [], []
    for example in iter_examples(load_examples(source, split=split, config=config, image_column=image_column)):
        try:
            image = decode_image(example["image"], min_side)
        except BadImageError:
            continue
        images.append(to_tensor(center_crop_resize(image, resolution)))
        ids.append(example_id(example))
        if len(images) == num_images:
            break
    if not images:
        raise ValueError(f"no usable image in {str(source)!r}")
    return images, ids
