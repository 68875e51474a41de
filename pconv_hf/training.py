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
    OUT/checkpoint-{step}/                          accelerate state for --resume_from_checkpoint
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
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TextIO

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from .data import (
    DataPosition,
    TrainingStream,
    load_eval_images,
    load_examples,
    rank_stream,
)
from .defects import DefectPainter
from .images import SKIP_REASONS
from .losses import InpaintingLoss, LossWeights, make_feature_extractor, weighted_total
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


def _checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _resolve_resume(config: TrainingConfig) -> Path | None:
    if config.resume_from_checkpoint is None:
        return None
    if config.resume_from_checkpoint == "latest":
        found = _checkpoints(Path(config.output_dir))
        if not found:
            logger.warning(f"--resume_from_checkpoint latest: no checkpoint in {config.output_dir}; starting fresh")
            return None
        return found[-1]
    path = Path(config.resume_from_checkpoint)
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {str(path)!r} is not a checkpoint folder")
    return path


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
        "ssim": args.lambda_ssim, "hole_mse": args.lambda_hole_mse,
    }  # fmt: skip
    if args.perceptual_network == "none":
        weights.pop("perceptual"), weights.pop("style")
    terms = ", ".join(f"{name} {value:g}" for name, value in weights.items() if value)
    start = f", starting from `{args.init_from}`" if args.init_from else ""
    features = "" if args.perceptual_network == "none" else f" ({args.perceptual_network}, {args.perceptual_weights})"
    return (
        f"{step:,} steps of `train_accelerate.py` on `{args.train_data}`{start}, {args.resolution} px crops "
        f"({args.train_transform}), batch {args.train_batch_size}, learning rate {args.learning_rate:g} "
        f"({args.lr_scheduler}). Loss weights: {terms}{features}. All arguments: `training_args.json`."
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
    if config.sync_batchnorm and world_size > 1 and accelerator.device.type == "cpu":
        raise ValueError("--sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm has no CPU implementation)")
    if config.sync_batchnorm and world_size > 1:
        # A frozen encoder BN needs no synchronisation, and freeze_encoder_bn only knows nn.BatchNorm2d.
        if config.finetune:
            model.decoder = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.decoder)
        else:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


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
    accelerator = _make_accelerator(config)
    # 1. Loss first: a missing ImageNet checkpoint stops the run before any data or model work.
    loss_fn, weights = build_loss(config, accelerator.device)
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

    model, optimizer = accelerator.prepare(model, optimizer)
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
    )


def resume(run: TrainingRun) -> None:
    """Continue from ``--resume_from_checkpoint``: accelerate restores model, optimizer, scheduler and RNG; the step
    and the data position are ours."""
    resume_from = _resolve_resume(run.config)
    if resume_from is None:
        return
    run.accelerator.load_state(str(resume_from))
    run.global_step = json.loads((resume_from / "training_state.json").read_text())["global_step"]
    data_file = resume_from / f"data_state_rank{run.rank}.json"
    restored = False
    if data_file.is_file():
        data_state = json.loads(data_file.read_text())
        restored = data_state.get("world_size") == run.world_size and run.stream.load_resume_state(
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
    """One optimizer update of ``gradient_accumulation_steps`` micro-batches; skipped (``finite=False``) when the
    loss or gradient is not finite. Does not advance ``run.global_step``."""
    config, accelerator, model = run.config, run.accelerator, run.model
    step_weights = loss_weights_at(run.global_step, run.weights, config.lambda_style_initial, config.style_warmup_steps)
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
        with accelerator.accumulate(model):
            with accelerator.autocast():
                output = model(model_input * valid_mask, valid_mask)
                terms = run.loss_fn(image, valid_mask, output.float())
                loss = weighted_total(terms, step_weights)
            # Every rank must take the same branch, or DDP's gradient all-reduce would hang.
            finite = accelerator.gather(torch.isfinite(loss.detach()).float().reshape(1)).min() > 0
            if finite:
                accelerator.backward(loss)
            else:
                finite_update = False
            if accelerator.sync_gradients:
                if finite_update and config.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    # Under fp16 the gradient scaler must see the overflow to lower its scale; it skips the
                    # step itself (optimizer.step_was_skipped).
                    finite_update = accelerator.scaler is not None or bool(torch.isfinite(grad_norm))
                if finite_update:
                    run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)
    return StepResult(finite=finite_update and not run.optimizer.step_was_skipped, loss=loss, terms=terms)


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
    """accelerate state + this rank's data position in OUT/checkpoint-{step}, old ones pruned; the model exported."""
    config, accelerator, output_dir = run.config, run.accelerator, run.output_dir
    target = output_dir / f"checkpoint-{step}"
    run.last_checkpoint = step
    _sync_buffers(run)
    if accelerator.is_main_process and config.checkpoints_total_limit:
        existing = [p for p in _checkpoints(output_dir) if p != target]
        for old in existing[: max(len(existing) + 1 - config.checkpoints_total_limit, 0)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(target))
    (target / f"data_state_rank{run.rank}.json").write_text(
        json.dumps({"world_size": run.world_size, **run.position.state_dict()}) + "\n"
    )
    if accelerator.is_main_process:
        (target / "training_state.json").write_text(json.dumps({"global_step": step}) + "\n")
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
