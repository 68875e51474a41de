"""Training a PConvUNet with Hugging Face accelerate and datasets: the loop, checkpoints, export.

    accelerate launch train_accelerate.py --train_data DIR_OR_HUB_ID --output_dir OUT [...]
    python train_accelerate.py ...                      # single process, same flags

In code: ``train(TrainingConfig(train_data=..., output_dir=..., max_train_steps=...))``, ``train(parse_args([...]))``
or ``train(parse_args(defaults={...}))`` (``pconv-anomaly fit`` does this); the settings and their flags are
``pconv_hf.training_config``. ``train`` reads in order: ``setup`` -> ``resume`` -> ``open_logs`` -> updates
(``train_step``, ``validate``, ``save_checkpoint``) -> ``finish``, all on one ``TrainingRun``. Bad settings raise
``ValueError``. Runs on one CPU, one or many GPUs, several machines, FSDP / DeepSpeed (see docs/training.md).
Output layout:

    OUT/config.json, model.safetensors, README.md   the exported model (PConvUNet.from_pretrained(OUT))
    OUT/checkpoint-{step}/                          accelerate state for --resume_from_checkpoint (written as
                                                    OUT/.checkpoint-{step}.tmp/, renamed when complete)
    OUT/samples/step-{step}.png                     masked input | mask | output | composite | ground truth
    OUT/validation.jsonl, training_args.json, logs/ validation metrics per step, the arguments, tracker logs
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TextIO

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from .data import (
    DataPosition,
    TrainingStream,
    load_eval_images,
    load_examples,
    rank_stream,
)
from .defects import DefectPainter
from .discriminator import PatchDiscriminator
from .images import SKIP_REASONS
from .losses import (
    InpaintingLoss,
    LossWeights,
    adversarial_loss,
    discriminator_loss,
    make_feature_extractor,
    weighted_total,
)
from .masks import fixed_masks, make_mask_source
from .metrics import eval_samples, evaluate
from .model import PConvUNet, add_boundary_blend, widen
from .training_config import (  # noqa: F401  (the settings' names, importable from here as before)
    LR_SCHEDULES,
    PAPER_FINETUNE_LEARNING_RATE,
    PAPER_LEARNING_RATE,
    TrainingConfig,
    build_parser,
    parse_args,
)
from .visualize import grid_samples, sample_grid

logger = get_logger("pconv_hf.train", log_level="INFO")

VALIDATION_MASK_SEED = 0  # the evaluate.py default, so validation numbers and evaluate.py tables agree


# ---------------------------------------------------------------------------------------------------------
# Checkpoints and export


def lr_factor(step: int, *, schedule: str, warmup: int, total: int) -> float:
    """Learning-rate multiplier for update ``step`` (0-based): linear warm-up over ``warmup`` updates, then
    ``constant`` 1, or ``cosine`` from 1 down to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


CHECKPOINT_MANIFEST = "checkpoint_manifest.json"  # written last: a checkpoint folder holding it is complete
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def _checkpoints(output_dir: Path) -> list[Path]:
    """The ``checkpoint-{step}`` folders of ``output_dir``, complete or not, by step."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and _CHECKPOINT_NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _is_complete(checkpoint: Path) -> bool:
    # Checkpoints are written into a staging folder and renamed when complete, manifest last; before that the
    # folder was written in place and training_state.json came last.
    return (checkpoint / CHECKPOINT_MANIFEST).is_file() or (checkpoint / "training_state.json").is_file()


def _resolve_resume(config: TrainingConfig) -> Path | None:
    if config.resume_from_checkpoint is None:
        return None
    if config.resume_from_checkpoint == "latest":
        found = _checkpoints(Path(config.output_dir))
        complete = [p for p in found if _is_complete(p)]
        for partial_folder in found[found.index(complete[-1]) + 1 if complete else 0 :]:
            logger.warning(f"{partial_folder} is incomplete (a run stopped while writing it): not resuming from it")
        if not complete:
            logger.warning(
                f"--resume_from_checkpoint latest: no complete checkpoint in {config.output_dir}; starting fresh"
            )
            return None
        return complete[-1]
    path = Path(config.resume_from_checkpoint)
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {str(path)!r} is not a checkpoint folder")
    if not _is_complete(path):
        raise ValueError(
            f"--resume_from_checkpoint {str(path)!r} is incomplete (no {CHECKPOINT_MANIFEST} or training_state.json: "
            "a run stopped while writing it); resume from an earlier checkpoint"
        )
    return path


def _file_digest(path: Path, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
        if sync:
            os.fsync(file.fileno())  # on disk before the folder is renamed into place
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    """Size and SHA-256 of every file of a finished checkpoint, so a damaged or truncated one is refused."""
    files = {
        file.name: {"bytes": file.stat().st_size, "sha256": _file_digest(file, sync=True)}
        for file in sorted(folder.iterdir())
        if file.is_file()
    }
    _write_json(folder / CHECKPOINT_MANIFEST, {"files": files})


def _write_json(path: Path, data: object) -> None:
    with open(path, "w") as file:
        file.write(json.dumps(data, indent=1) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _verify_checkpoint(checkpoint: Path) -> None:
    """Every file the manifest lists is there with its size and hash (no unpickling); a checkpoint from before the
    manifest gets a structural check of its safetensors and zip (torch.save) files instead.

    Raises:
        ValueError: naming the first missing, truncated or damaged file.
    """
    manifest_path = checkpoint / CHECKPOINT_MANIFEST
    if not manifest_path.is_file():
        for file in sorted(checkpoint.iterdir()):
            problem = _structure_problem(file)
            if problem:
                raise ValueError(f"{file} {problem}; resume from an earlier checkpoint")
        return
    manifest = _read_json_object(manifest_path)
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        Path(name).name == name
        and isinstance(entry, dict)
        and isinstance(entry.get("bytes"), int)
        and isinstance(entry.get("sha256"), str)
        for name, entry in files.items()
    ):
        raise ValueError(f"{manifest_path}: 'files' must map file names to {{'bytes': int, 'sha256': str}}")
    for name, entry in files.items():
        file = checkpoint / name
        if not file.is_file():
            raise ValueError(f"{file} is missing; resume from an earlier checkpoint")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise ValueError(
                f"{file} is truncated or damaged ({size} bytes, the checkpoint recorded {entry['bytes']}); "
                "resume from an earlier checkpoint"
            )
        if _file_digest(file) != entry["sha256"]:
            raise ValueError(
                f"{file} is damaged (its SHA-256 differs from the recorded one); use an earlier checkpoint"
            )


def _structure_problem(file: Path) -> str | None:
    """Why a checkpoint file written before manifests is unreadable (truncated, most often), or None."""
    size = file.stat().st_size
    if file.suffix == ".safetensors":
        with open(file, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little") if size >= 8 else -1
            header = handle.read(length) if 0 <= length <= size - 8 else b""
        try:
            entries = json.loads(header)
            end = max((v["data_offsets"][1] for k, v in entries.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError):
            return "is truncated or damaged (its safetensors header is unreadable)"
        expected = 8 + length + end
        return None if size == expected else f"is truncated or damaged ({size} bytes, its header says {expected})"
    if file.suffix in (".bin", ".pkl", ".pt"):
        # torch.save writes zip archives: a truncated one has no central directory, a damaged one fails its CRCs.
        try:
            with zipfile.ZipFile(file) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError):
            return "is truncated or damaged (not a complete torch.save archive)"
        return None if bad is None else f"is damaged ({bad} fails its checksum)"
    return None


def _replace_folder(staging: Path, target: Path) -> None:
    """Rename the finished ``staging`` folder to ``target``, moving an older ``target`` aside first."""
    aside = target.with_name(f".{target.name}.replaced")
    if aside.exists():
        shutil.rmtree(aside)
    if target.exists():
        os.rename(target, aside)
    os.rename(staging, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself on disk
    finally:
        os.close(directory)
    if aside.exists():
        shutil.rmtree(aside)


def _prune_checkpoints(output_dir: Path, keep: Path, limit: int | None) -> None:
    """With a limit, keep the newest ``limit`` complete checkpoints (``keep`` among them) and drop incomplete ones."""
    if not limit:
        return
    others = [p for p in _checkpoints(output_dir) if p != keep]
    incomplete = [p for p in others if not _is_complete(p)]
    complete = [p for p in others if _is_complete(p)]
    for old in incomplete + complete[: max(len(complete) + 1 - limit, 0)]:
        shutil.rmtree(old)


def _read_json_object(path: Path) -> dict:
    """A JSON object from a checkpoint file; ValueError naming the file when it is missing, broken or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; resume from an earlier checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); resume from an earlier checkpoint") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _json_int(path: Path, data: dict, key: str, minimum: int = 0, where: str = "") -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{path}: {where}{key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _read_data_state(path: Path) -> dict:
    """A rank's data position (``data_state_rank{R}.json``), every key checked (ValueError naming file and key)."""
    state = _read_json_object(path)
    for key, minimum in (("world_size", 1), ("num_workers", 1), ("batches", 0)):
        _json_int(path, state, key, minimum)
    workers = state.get("workers")
    if not isinstance(workers, dict):
        raise ValueError(f"{path}: 'workers' must be an object, got {workers!r}")
    for worker, position in workers.items():
        if not worker.isdigit() or not isinstance(position, dict):
            raise ValueError(f"{path}: 'workers' must map worker numbers to positions, got {worker!r}: {position!r}")
        for key in ("epoch", "next_position"):
            _json_int(path, position, key, 0, where=f"workers.{worker}.")
    skipped = state.get("skipped")
    if not isinstance(skipped, dict) or not all(
        isinstance(ids, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in ids.items())
        for ids in skipped.values()
    ):
        raise ValueError(f"{path}: 'skipped' must map skip reasons to {{image id: message}} objects")
    return state


def _state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_model(model: PConvUNet, output_dir: Path, args: TrainingConfig, step: int) -> None:
    """config.json + model.safetensors + README.md (the model card, with a training section) into ``output_dir``,
    swapped in file by file so that a reader never sees a half-written file."""
    dtype = torch.float16 if args.save_dtype == "float16" else None
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as tmp:
        model.save_pretrained(tmp, weights_dtype=dtype, model_card_kwargs={"training": training_summary(args, step)})
        for file in Path(tmp).iterdir():
            os.replace(file, output_dir / file.name)


def training_summary(args: TrainingConfig, step: int) -> str:
    """The model card's training section: data, steps, resolution and the loss terms used."""
    weights = {
        "valid": args.lambda_valid, "hole": args.lambda_hole, "boundary": args.lambda_boundary,
        "perceptual": args.lambda_perceptual, "style": args.lambda_style, "tv": args.lambda_tv,
        "ssim": args.lambda_ssim, "hole_mse": args.lambda_hole_mse, "adversarial": args.lambda_adversarial,
        "feature_matching": args.lambda_feature_matching,
    }  # fmt: skip
    if args.perceptual_network == "none":
        weights.pop("perceptual"), weights.pop("style")
    terms = ", ".join(f"{name} {value:g}" for name, value in weights.items() if value)
    start = f", starting from `{args.init_from}`" if args.init_from else ""
    features = "" if args.perceptual_network == "none" else f" ({args.perceptual_network}, {args.perceptual_weights})"
    adversarial = ""
    if args.adversarial:
        regularizer = "spectral norm" if args.discriminator_spectral_norm else ""
        if args.discriminator_r1_weight:
            regularizer += f"{', ' if regularizer else ''}R1 {args.discriminator_r1_weight:g}"
        adversarial = (
            f" Adversarial term from step {args.adversarial_start_step:,}: a PatchGAN discriminator "
            f"({args.discriminator_layers} stride-2 layers, base {args.discriminator_channels}, "
            f"{regularizer or 'unregularised'}, learning rate {args.discriminator_learning_rate:g}) judging the "
            "composite's hole patches."
        )
    return (
        f"{step:,} steps of `train_accelerate.py` on `{args.train_data}`{start}, {args.resolution} px crops "
        f"({args.train_transform}), batch {args.train_batch_size}, learning rate {args.learning_rate:g} "
        f"({args.lr_scheduler}). Loss weights: {terms}{features}.{adversarial} All arguments: `training_args.json`."
    )


# ---------------------------------------------------------------------------------------------------------
# Training: setup -> resume -> (step, validate, checkpoint)* -> finish, all on one TrainingRun


class NonFiniteLossError(ValueError):
    """Training stopped: ``max_skipped_steps`` updates in a row had a non-finite loss or gradient (the settings made
    it diverge: learning rate, mixed precision, a loss weight)."""


@dataclasses.dataclass
class TrainingRun:
    """What a run holds between its pieces: the settings, accelerate's objects, the model and its data."""

    config: TrainingConfig
    accelerator: Accelerator
    loss_fn: InpaintingLoss
    weights: LossWeights
    model: torch.nn.Module  # prepared by accelerate (DDP-wrapped on several processes)
    unwrapped: PConvUNet
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR
    stream: TrainingStream
    position: DataPosition
    validation: list  # fixed (image, valid mask) samples, on the main process only
    memory_format: torch.memory_format
    # With --lambda_adversarial: the discriminator (prepared by accelerate) and its optimizer.
    discriminator: torch.nn.Module | None = None
    discriminator_optimizer: torch.optim.Optimizer | None = None
    global_step: int = 0
    last_validation: int = -1  # the step last validated / checkpointed, so the end does not repeat it
    last_checkpoint: int = -1
    seen_file: TextIO | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes


@dataclasses.dataclass
class StepResult:
    """One optimizer update: ``finite`` is False when it was skipped (non-finite loss or gradient)."""

    finite: bool
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    discriminator_terms: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def build_loss(config: TrainingConfig, device: torch.device) -> tuple[InpaintingLoss, LossWeights]:
    """The loss module (with its feature network, if any) and the weights of its terms.

    Raises:
        FileNotFoundError: ImageNet features asked for and not converted yet (the message says how).
    """
    feature_extractor = make_feature_extractor(config.perceptual_network, config.perceptual_weights)
    if feature_extractor is None:
        logger.info("perceptual_network none: training with the valid, hole and tv terms only")
    elif config.perceptual_weights == "random":
        logger.warning(
            f"perceptual/style features from a RANDOMLY INITIALISED {config.perceptual_network} "
            "(--perceptual_weights random): not the paper's loss"
        )
    loss_fn = InpaintingLoss(feature_extractor, config.perceptual_resolution, ssim=config.lambda_ssim > 0).to(device)
    weights = LossWeights(
        valid=config.lambda_valid,
        hole=config.lambda_hole,
        perceptual=config.lambda_perceptual,
        style=config.lambda_style,
        tv=config.lambda_tv,
        boundary=config.lambda_boundary,
        ssim=config.lambda_ssim,
        hole_mse=config.lambda_hole_mse,
    )
    return loss_fn, weights


def build_model(config: TrainingConfig) -> PConvUNet:
    """A fresh PConvUNet, or the weights and architecture of ``--init_from`` (at ``--resolution``)."""
    if not config.init_from:
        return PConvUNet(
            layer_size=config.layer_size,
            base_channels=64 if config.base_channels is None else config.base_channels,
            upsampling_mode=config.upsampling_mode,
            conv_type=config.conv_type,
            sample_size=config.resolution,
            boundary_blend=config.boundary_blend,
        )
    model = PConvUNet.from_pretrained(config.init_from)
    if config.boundary_blend and not model.config.get("boundary_blend"):
        model = add_boundary_blend(model)
    if config.base_channels is not None and config.base_channels != model.config["base_channels"]:
        if config.base_channels < model.config["base_channels"]:
            raise ValueError(
                f"--base_channels {config.base_channels} is narrower than --init_from's "
                f"{model.config['base_channels']}: a model can be widened, not narrowed"
            )
        if model.conv_type == "partial" and not model.config.get("boundary_blend"):
            logger.warning("widening a model without --boundary_blend changes its last layer near hole edges")
        model = widen(model, config.base_channels, seed=config.seed)
    architecture = {**model.config, "sample_size": config.resolution}
    if architecture != model.config:
        state = model.state_dict()
        model = PConvUNet(**architecture)
        model.load_state_dict(state)
    logger.info(f"initialised from {config.init_from}: {architecture}")
    return model


def build_stream(config: TrainingConfig, rank: int, world_size: int) -> TrainingStream:
    """This rank's share of the shuffled training stream, as batches of (image, valid mask) with their masks."""
    examples = load_examples(
        config.train_data, split=config.train_split, config=config.dataset_config, image_column=config.image_column
    )
    defect_source = None
    if config.synthetic_defects > 0:
        try:
            defect_source = DefectPainter(config.synthetic_defect_kinds.split(","))
        except ValueError as error:
            raise ValueError(f"--synthetic_defect_kinds: {error}") from None
    mask_source = make_mask_source(config.mask_source, config.resolution)
    return TrainingStream(
        rank_stream(
            examples, seed=config.seed, shuffle_buffer_size=config.shuffle_buffer_size, rank=rank, world_size=world_size
        ),
        resolution=config.resolution,
        batch_size=config.train_batch_size,
        mask_source=mask_source,
        seed=config.seed,
        rank=rank,
        min_side=config.min_image_side,
        transform=config.train_transform,
        defect_source=defect_source,
        defect_probability=config.synthetic_defects,
        grayscale_probability=config.grayscale_augmentation,
        native_probability=config.native_crops,
    )


def _make_accelerator(config: TrainingConfig) -> Accelerator:
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir),
            logging_dir=str(output_dir / "logs"),
            total_limit=config.checkpoints_total_limit,
        ),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        datasets.utils.logging.set_verbosity_error()
    return accelerator


def _memory_format(config: TrainingConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def _place_model(config: TrainingConfig, model: PConvUNet, accelerator: Accelerator) -> torch.nn.Module:
    """Memory format, train mode, the frozen encoder BatchNorm of --finetune and --sync_batchnorm."""
    world_size = accelerator.num_processes
    model = model.to(memory_format=_memory_format(config)).train()
    if config.finetune:
        model.freeze_encoder_bn()
    if config.freeze_bn:
        if not config.init_from:
            logger.warning("--freeze_bn on a fresh model: its BatchNorm layers stay the identity")
        _freeze_batchnorm(model)
    if config.sync_batchnorm and world_size > 1 and accelerator.device.type == "cpu":
        raise ValueError("--sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm has no CPU implementation)")
    if config.sync_batchnorm and world_size > 1 and not config.freeze_bn:
        # A frozen encoder BN needs no synchronisation, and freeze_encoder_bn only knows nn.BatchNorm2d.
        if config.finetune:
            model.decoder = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.decoder)
        else:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _use_running_statistics(module: torch.nn.Module, _inputs: tuple) -> None:
    module.train(False)


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    """--freeze_bn: every BatchNorm layer normalises with its running statistics and keeps its affine parameters.
    A forward pre-hook, because ``model.train()`` (after every validation) would switch the layers back."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.requires_grad_(False)
            module.register_forward_pre_hook(_use_running_statistics)


def _check_output_dir(config: TrainingConfig) -> None:
    """--output_dir must be a folder or not exist yet (nor any file stand where one of its parents should be)."""
    output_dir = Path(config.output_dir)
    for folder in (output_dir, *output_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == output_dir else f"cannot be made: {folder} is a file"
                raise ValueError(f"--output_dir {str(output_dir)!r} {what}, not a folder")
            return


def _check_batch_norm_batch(config: TrainingConfig, world_size: int) -> None:
    # BatchNorm over one image normalises with that image's own statistics (at a 1x1 level it cannot at all), and
    # its running statistics, used at inference, become an average of single-image ones.
    if config.train_batch_size == 1 and not config.freeze_bn and not (config.sync_batchnorm and world_size > 1):
        raise ValueError(
            "--train_batch_size 1 trains BatchNorm on one image's statistics: give --freeze_bn (every BatchNorm "
            "frozen; for a trained --init_from model) or --train_batch_size 2 or more"
        )


def _build_discriminator(
    config: TrainingConfig, accelerator: Accelerator
) -> tuple[PatchDiscriminator | None, torch.optim.Optimizer | None]:
    """The discriminator and its optimizer for --lambda_adversarial, or (None, None)."""
    if not config.adversarial:
        return None, None
    if accelerator.mixed_precision == "fp16":
        raise ValueError(
            "--lambda_adversarial with --mixed_precision fp16 is not supported (two optimizers under one gradient "
            "scaler): use bf16 or no"
        )
    # Its own seeded generator: the generator's initialisation and every later draw stay those of a run without it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        discriminator = PatchDiscriminator(
            base_channels=config.discriminator_channels,
            num_layers=config.discriminator_layers,
            spectral_normalization=config.discriminator_spectral_norm,
        )
    discriminator = discriminator.to(memory_format=_memory_format(config)).train()
    optimizer = torch.optim.AdamW(
        discriminator.parameters(),
        lr=config.discriminator_learning_rate,
        betas=(
            config.adam_beta1 if config.discriminator_adam_beta1 is None else config.discriminator_adam_beta1,
            config.adam_beta2,
        ),
        weight_decay=0.0,
    )
    return discriminator, optimizer


def _load_validation(config: TrainingConfig, accelerator: Accelerator) -> list:
    """The fixed validation set (main process only): first N images, one fixed mask per bucket each."""
    if not accelerator.is_main_process:
        return []
    if config.validation_data is None:
        logger.warning("no --validation_data: validating on the first training images")
    images, _ = load_eval_images(
        config.validation_data or config.train_data,
        config.num_validation_images,
        config.resolution,
        split=config.validation_split or (config.train_split if config.validation_data is None else "validation"),
        config=config.dataset_config if config.validation_data is None else None,
        image_column=config.image_column,
    )
    masks = fixed_masks(len(images), config.resolution, config.resolution, VALIDATION_MASK_SEED)
    return eval_samples(images, masks)


def setup(config: TrainingConfig) -> TrainingRun:
    """Accelerator, loss, model, optimizer, data and validation set, in the order that keeps runs reproducible."""
    _check_output_dir(config)
    accelerator = _make_accelerator(config)
    _check_batch_norm_batch(config, accelerator.num_processes)
    # 1. Loss first: a missing ImageNet checkpoint stops the run before any data or model work.
    loss_fn, weights = build_loss(config, accelerator.device)
    discriminator, discriminator_optimizer = _build_discriminator(config, accelerator)
    # 2. Model: fresh, or weights (and architecture) from --init_from.
    set_seed(config.seed)
    model = _place_model(config, build_model(config), accelerator)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
    # Stepped once per update on every rank (not prepared: accelerate would step it num_processes times).
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(lr_factor, schedule=config.lr_scheduler, warmup=config.lr_warmup_steps, total=config.max_train_steps),
    )
    # 3. Data: this rank's part of the shuffled stream (batches are built in TrainingStream); the fixed validation set.
    stream = build_stream(config, accelerator.process_index, accelerator.num_processes)
    position = DataPosition(config.dataloader_num_workers)
    validation = _load_validation(config, accelerator)

    if discriminator is None:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:  # saved as model_1.safetensors and optimizer_1.bin beside the generator's
        model, optimizer, discriminator, discriminator_optimizer = accelerator.prepare(
            model, optimizer, discriminator, discriminator_optimizer
        )
    accelerator.register_for_checkpointing(lr_scheduler)
    return TrainingRun(
        config=config,
        accelerator=accelerator,
        loss_fn=loss_fn,
        weights=weights,
        model=model,
        unwrapped=accelerator.unwrap_model(model),
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        stream=stream,
        position=position,
        validation=validation,
        memory_format=_memory_format(config),
        discriminator=discriminator,
        discriminator_optimizer=discriminator_optimizer,
    )


def resume(run: TrainingRun) -> None:
    """Continue from ``--resume_from_checkpoint``: accelerate restores model, optimizer, scheduler, RNG (and the
    discriminator); the step and the data position are ours. Every file is checked before anything is loaded."""
    resume_from = _resolve_resume(run.config)
    if resume_from is None:
        return
    _verify_checkpoint(resume_from)
    global_step = _json_int(
        resume_from / "training_state.json", _read_json_object(resume_from / "training_state.json"), "global_step"
    )
    data_file = resume_from / f"data_state_rank{run.rank}.json"
    data_state = _read_data_state(data_file) if data_file.is_file() else None
    _check_discriminator_state(run, resume_from)
    if not (resume_from / f"random_states_{run.rank}.pkl").is_file():
        logger.warning(
            f"{resume_from} has no random state for process {run.rank} (saved with another number of processes): "
            "this run will not match an uninterrupted one",
            main_process_only=False,
        )
    try:
        run.accelerator.load_state(str(resume_from))
    except (RuntimeError, ValueError, KeyError, OSError, EOFError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{resume_from} does not fit this run: {first_line}") from None
    run.global_step = global_step
    restored = False
    if data_state is not None:
        restored = data_state["world_size"] == run.world_size and run.stream.load_resume_state(
            data_state, run.config.dataloader_num_workers
        )
        if restored:
            run.position.load_state_dict(data_state)
    if not restored:
        logger.warning(
            "data position not restored (other world size or worker count): the data order "
            "restarts, so this run will not match an uninterrupted one",
            main_process_only=False,
        )
    logger.info(f"resumed from {resume_from} at step {run.global_step}")


def _check_discriminator_state(run: TrainingRun, checkpoint: Path) -> None:
    saved = (checkpoint / "model_1.safetensors").is_file() or (checkpoint / "pytorch_model_1.bin").is_file()
    if run.discriminator is not None and not saved:
        raise ValueError(
            f"{checkpoint} holds no discriminator (saved without --lambda_adversarial): to add the adversarial term, "
            f"start from its model with --init_from {checkpoint.parent} instead of resuming"
        )
    if run.discriminator is None and saved:
        logger.warning(f"{checkpoint} holds a discriminator; this run has no --lambda_adversarial, so it is left out")


def open_logs(run: TrainingRun) -> None:
    """training_args.json, the validation log cut back to the current step, trackers, the seen-images file."""
    config, accelerator = run.config, run.accelerator
    if accelerator.is_main_process:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        settings = config.to_dict()
        (run.output_dir / "training_args.json").write_text(json.dumps(settings, indent=2) + "\n")
        _truncate_validation_log(run.output_dir / "validation.jsonl", run.global_step)
        tracker_config = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in settings.items()}
        accelerator.init_trackers("pconv_hf", config=tracker_config)
    if config.log_seen_images:
        run.seen_file = open(f"{config.log_seen_images}.rank{run.rank}.txt", "a")  # noqa: SIM115


def _to_device(run: TrainingRun, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(run.accelerator.device, memory_format=run.memory_format, non_blocking=True)


def train_step(run: TrainingRun, batches: Iterator[dict]) -> StepResult:
    """One optimizer update of ``gradient_accumulation_steps`` micro-batches (of the discriminator too, with
    --lambda_adversarial); skipped (``finite=False``) when a loss or gradient is not finite. Does not advance
    ``run.global_step``."""
    config, accelerator, model = run.config, run.accelerator, run.model
    step_weights = loss_weights_at(run.global_step, run.weights, config.lambda_style_initial, config.style_warmup_steps)
    trained = [model] if run.discriminator is None else [model, run.discriminator]
    finite_update = True
    for _ in range(config.gradient_accumulation_steps):
        batch = next(batches)
        for reason, image_id, message in run.position.update(batch["state"]):
            logger.warning(f"skipped {image_id} ({reason}): {message}", main_process_only=False)
        if run.seen_file:
            run.seen_file.writelines(f"{run.global_step}\t{image_id}\n" for image_id in batch["ids"])
            run.seen_file.flush()
        image = _to_device(run, batch["image"])
        valid_mask = _to_device(run, batch["valid_mask"])
        # With --synthetic_defects the model sees defected inputs; the loss still compares with the clean image.
        model_input = _to_device(run, batch["input"]) if "input" in batch else image
        with accelerator.accumulate(*trained):
            with accelerator.autocast():
                output = model(model_input * valid_mask, valid_mask)
                terms = run.loss_fn(image, valid_mask, output.float())
                discriminator_terms = _adversarial_terms(run, image, valid_mask, output.float(), terms)
                loss = weighted_total(terms, step_weights)
                # The two losses share no parameters (the generator's sees the discriminator frozen, the
                # discriminator's a detached composite), so one backward pass serves both.
                total = loss + _discriminator_total(run, discriminator_terms)
            # Every rank must take the same branch, or DDP's gradient all-reduce would hang.
            finite = accelerator.gather(torch.isfinite(total.detach()).float().reshape(1)).min() > 0
            if finite:
                accelerator.backward(total)
            else:
                finite_update = False
            if accelerator.sync_gradients:
                if finite_update and config.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    # Under fp16 the gradient scaler must see the overflow to lower its scale; it skips the
                    # step itself (optimizer.step_was_skipped).
                    finite_update = accelerator.scaler is not None or bool(torch.isfinite(grad_norm))
                    if finite_update and run.discriminator is not None:
                        grad_norm = accelerator.clip_grad_norm_(run.discriminator.parameters(), config.max_grad_norm)
                        finite_update = bool(torch.isfinite(grad_norm))
                optimizers = [run.optimizer] + [o for o in (run.discriminator_optimizer,) if o is not None]
                for optimizer in optimizers:
                    if finite_update:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
    return StepResult(
        finite=finite_update and not run.optimizer.step_was_skipped,
        loss=loss,
        terms=terms,
        discriminator_terms=discriminator_terms,
    )


@contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """No parameter gradients for ``module`` in the graph built inside (the input still gets its gradient)."""
    was = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, requires_grad in zip(module.parameters(), was, strict=True):
            parameter.requires_grad_(requires_grad)


def _adversarial_terms(
    run: TrainingRun, image: torch.Tensor, valid_mask: torch.Tensor, output: torch.Tensor, terms: dict
) -> dict[str, torch.Tensor]:
    """With --lambda_adversarial: the discriminator's terms (returned), and from --adversarial_start_step the
    generator's adversarial and feature-matching terms (added to ``terms``)."""
    if run.discriminator is None:
        return {}
    config = run.config
    discriminator_terms, real_features = discriminator_loss(
        run.discriminator, image, valid_mask, output, r1=config.discriminator_r1_weight > 0
    )
    if run.global_step >= config.adversarial_start_step:
        # The unwrapped module: under DDP this forward must not join the discriminator's gradient reduction.
        discriminator = run.accelerator.unwrap_model(run.discriminator)
        with _frozen(discriminator):
            terms.update(adversarial_loss(discriminator, image, valid_mask, output, real_features))
    return discriminator_terms


def _discriminator_total(run: TrainingRun, terms: dict[str, torch.Tensor]) -> torch.Tensor | float:
    if not terms:
        return 0.0
    return terms["real"] + terms["fake"] + run.config.discriminator_r1_weight * terms.get("r1", 0.0)


def _sync_buffers(run: TrainingRun) -> None:
    # DDP copies rank 0's BatchNorm statistics to the others before each forward, so after the last forward they
    # differ by one update. Copying them now changes nothing in training and makes every rank's state (and the
    # export) the same.
    if run.world_size > 1:
        for buffer in run.unwrapped.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


def validate(run: TrainingRun, step: int) -> None:
    """Validation metrics (OUT/validation.jsonl, trackers, the log) and a sample grid (OUT/samples/step-N.png)."""
    _sync_buffers(run)
    accelerator, output_dir = run.accelerator, run.output_dir
    run.last_validation = step
    if accelerator.is_main_process:
        results = evaluate(run.unwrapped, run.validation, device=accelerator.device)
        with open(output_dir / "validation.jsonl", "a") as log:
            log.write(json.dumps({"step": step, "results": results}) + "\n")
        samples = grid_samples(run.validation, run.config.num_validation_images)
        grid = sample_grid(run.unwrapped, samples, accelerator.device)
        (output_dir / "samples").mkdir(exist_ok=True)
        grid.save(output_dir / "samples" / f"step-{step}.png")
        accelerator.log(flatten_metrics(results), step=step)
        _log_image(accelerator, grid, step)
        overall = results["all"]
        lpips_text = f" LPIPS {overall['lpips']:.4f}" if "lpips" in overall else ""
        logger.info(
            f"step {step}: validation L1 {overall['l1']:.4f} PSNR {overall['psnr']:.2f} "
            f"SSIM {overall['ssim']:.4f}{lpips_text} ({overall['count']} samples)"
        )
    accelerator.wait_for_everyone()


def save_checkpoint(run: TrainingRun, step: int) -> None:
    """accelerate state + this rank's data position in OUT/checkpoint-{step}; the model exported; old checkpoints
    pruned. Written into the staging folder OUT/.checkpoint-{step}.tmp and renamed when complete (manifest last),
    so a run killed at any moment leaves its previous checkpoints whole and ``latest`` finds the newest complete one.
    """
    config, accelerator, output_dir = run.config, run.accelerator, run.output_dir
    target = output_dir / f"checkpoint-{step}"
    staging = output_dir / f".checkpoint-{step}.tmp"
    run.last_checkpoint = step
    _sync_buffers(run)
    if accelerator.is_main_process:
        # What a killed run left behind: staging folders and export folders.
        for stale in [*output_dir.glob(".checkpoint-*.tmp"), *output_dir.glob(".export-*")]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    (staging / f"data_state_rank{run.rank}.json").write_text(
        json.dumps({"world_size": run.world_size, **run.position.state_dict()}) + "\n"
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(staging / "training_state.json", {"global_step": step})
        _write_manifest(staging)
        _replace_folder(staging, target)
        _prune_checkpoints(output_dir, target, config.checkpoints_total_limit)
        export_model(run.unwrapped, output_dir, config, step)
        logger.info(f"step {step}: saved {target} and exported the model to {output_dir}")
    accelerator.wait_for_everyone()


def _loop(run: TrainingRun) -> dict[str, float]:
    """Updates until ``max_train_steps``, validating and checkpointing on schedule; the last update's logs."""
    config, accelerator = run.config, run.accelerator
    dataloader = torch.utils.data.DataLoader(
        run.stream,
        batch_size=None,
        num_workers=config.dataloader_num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    images_per_update = config.train_batch_size * config.gradient_accumulation_steps * run.world_size
    logger.info(
        f"training {sum(p.numel() for p in run.unwrapped.parameters()):,} parameters on {run.world_size} "
        f"process(es), {images_per_update} images per update, lr {config.learning_rate}, "
        f"from step {run.global_step} to {config.max_train_steps}"
    )
    progress = tqdm(
        total=config.max_train_steps,
        initial=run.global_step,
        desc="train",
        disable=not accelerator.is_local_main_process,
    )
    batches = iter(dataloader)
    consecutive_skips = 0
    images_per_second = None
    logs: dict[str, float] = {}
    while run.global_step < config.max_train_steps:
        started = time.perf_counter()
        result = train_step(run, batches)
        if not result.finite:
            consecutive_skips += 1
            logger.warning(
                f"step {run.global_step + 1}: non-finite loss or gradient, update skipped "
                f"({consecutive_skips} in a row)"
            )
            if consecutive_skips >= config.max_skipped_steps:
                progress.close()
                raise NonFiniteLossError(
                    f"{consecutive_skips} consecutive updates had a non-finite loss or gradient "
                    f"(--max_skipped_steps {config.max_skipped_steps}); try a lower --learning_rate, "
                    "--mixed_precision no, or resume from an earlier checkpoint"
                )
            continue
        consecutive_skips = 0
        run.lr_scheduler.step()
        run.global_step += 1

        rate = images_per_update / max(time.perf_counter() - started, 1e-9)
        images_per_second = rate if images_per_second is None else 0.9 * images_per_second + 0.1 * rate
        logs = {f"loss/{name}": value.item() for name, value in result.terms.items()}
        logs.update({f"discriminator/{name}": value.item() for name, value in result.discriminator_terms.items()})
        logs.update(
            {"loss/total": result.loss.item(), "lr": run.lr_scheduler.get_last_lr()[0], "images_per_second": rate}
        )
        progress.update(1)
        progress.set_postfix(
            loss=f"{logs['loss/total']:.4f}",
            img_s=f"{images_per_second:.1f}",
            skipped=sum(run.position.skip_counts().values()),
        )
        accelerator.log(logs, step=run.global_step)
        if run.global_step % config.validation_steps == 0:
            validate(run, run.global_step)
        if run.global_step % config.checkpointing_steps == 0:
            save_checkpoint(run, run.global_step)
    progress.close()
    return logs


def finish(run: TrainingRun, logs: dict[str, float]) -> dict:
    """Validate, checkpoint and export the final weights unless the last step did; the skip counts; the result."""
    config, accelerator, step = run.config, run.accelerator, run.global_step
    if run.last_validation != step:
        validate(run, step)
    if run.last_checkpoint != step:
        save_checkpoint(run, step)
    skipped = _merge_skips(gather_object([run.position.skipped]))
    counts = {reason: len(skipped[reason]) for reason in SKIP_REASONS}
    logger.info(
        "skipped images (distinct files, all ranks): "
        + ", ".join(f"{reason}={count}" for reason, count in counts.items())
    )
    if run.seen_file:
        run.seen_file.close()
        Path(f"{config.log_seen_images}.rank{run.rank}.json").write_text(
            json.dumps({"rank": run.rank, "global_step": step, "state_hash": _state_hash(run.unwrapped)}) + "\n"
        )
    if accelerator.is_main_process:
        logger.info(f"done: {step} steps; PConvUNet.from_pretrained({str(run.output_dir)!r}) loads the model")
    accelerator.end_training()
    return {"global_step": step, "skipped": counts, "output_dir": str(run.output_dir), "last_logs": logs}


def train(config: TrainingConfig | argparse.Namespace) -> dict:
    """Train with ``config`` (a :class:`TrainingConfig`, or a namespace of the same settings); returns
    ``{"global_step", "skipped", "output_dir", "last_logs"}``. The model is exported to ``config.output_dir`` at
    every checkpoint and at the end.

    Raises:
        ValueError: a bad setting (:class:`NonFiniteLossError` when training diverges).
        FileNotFoundError: the ImageNet feature weights asked for are not converted yet.
    """
    if not isinstance(config, TrainingConfig):
        config = TrainingConfig.from_namespace(config)
    run = setup(config)
    resume(run)
    open_logs(run)
    logs = _loop(run)
    return finish(run, logs)


def _merge_skips(per_rank: list[dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {reason: {} for reason in SKIP_REASONS}
    for skipped in per_rank:
        for reason, ids in skipped.items():
            merged[reason].update(ids)
    return merged


def _truncate_validation_log(path: Path, step: int) -> None:
    """Drop entries past ``step`` (left by a run that went further than the checkpoint it is resumed from)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def _log_image(accelerator: Accelerator, grid, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({"samples": np.asarray(grid)[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({"samples": [grid]}, step=step)


# ---------------------------------------------------------------------------------------------------------
# Loss-weight schedule and metric logging


def loss_weights_at(
    step: int, weights: LossWeights, style_initial: float | None = None, style_warmup_steps: int = 0
) -> LossWeights:
    """The loss weights for optimizer step ``step`` (0-based): ``style_initial`` replaces the style weight for
    the first ``style_warmup_steps`` steps (two-stage style schedule), ``weights`` apply afterwards."""
    if style_initial is not None and step < style_warmup_steps:
        return dataclasses.replace(weights, style=style_initial)
    return weights


def flatten_metrics(results: dict[str, dict[str, float]], prefix: str = "val") -> dict[str, float]:
    """``evaluate`` output -> ``{"val/psnr/0.01-0.1": ..., "val/psnr/all": ...}`` for trackers.

    Counts are left out; LPIPS is included when ``results`` has it.
    """
    return {
        f"{prefix}/{metric}/{bucket}": float(row[metric])
        for bucket, row in results.items()
        for metric in ("l1", "psnr", "ssim", "lpips")
        if metric in row
    }
