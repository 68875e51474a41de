"""Training a PConvUNet with Hugging Face accelerate and datasets: the arguments, the loop, checkpoints, export.

    accelerate launch train_accelerate.py --train_data DIR_OR_HUB_ID --output_dir OUT [...]
    python train_accelerate.py ...                      # single process, same flags

In code: ``train(parse_args([...]))``, or ``train(args)`` with ``args = parse_args(defaults={...})`` set
attribute by attribute (``pconv-anomaly fit`` does this). Runs on one CPU, one or many GPUs, several machines,
FSDP / DeepSpeed (see docs/training.md). Output layout:

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
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from .anomaly.defects import DefectPainter
from .data import (
    TRAIN_TRANSFORMS,
    DataPosition,
    TrainingStream,
    eval_samples,
    load_eval_images,
    load_examples,
    rank_stream,
)
from .images import DEFAULT_MIN_SIDE, SKIP_REASONS
from .losses import InpaintingLoss, LossWeights, make_feature_extractor, weighted_total
from .masks import fixed_masks, make_mask_source
from .metrics import evaluate
from .model import PConvUNet, add_boundary_blend, widen
from .visualize import grid_samples, sample_grid

logger = get_logger("pconv_hf.train", log_level="INFO")

PAPER_LEARNING_RATE = 2e-4
PAPER_FINETUNE_LEARNING_RATE = 5e-5
LR_SCHEDULES = ("constant", "cosine")
VALIDATION_MASK_SEED = 0  # the evaluate.py default, so validation numbers and evaluate.py tables agree


def parse_args(argv: list[str] | None = None, defaults: dict | None = None) -> argparse.Namespace:
    """The training settings from command-line arguments (``sys.argv[1:]`` when None).

    ``defaults`` replaces flag defaults by name (``{"train_data": ..., "max_train_steps": ...}``); flags given
    there are no longer required, so ``parse_args([], defaults={...})`` builds settings in code. Every value is
    checked as on the command line (``SystemExit`` with a usage message when one is invalid).
    """
    paper = LossWeights()
    parser = argparse.ArgumentParser(
        prog="train_accelerate.py",
        description="Train a PConvUNet (Liu et al. 2018) with Hugging Face accelerate and datasets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train_data",
        required=True,
        help="Hub dataset id, a local folder of images (recursive), "
        "or a local datasets folder (save_to_disk / parquet).",
    )
    data.add_argument("--dataset_config", default=None, help="Dataset configuration name (Hub datasets).")
    data.add_argument("--train_split", default="train", help="Split of --train_data to train on.")
    data.add_argument(
        "--image_column",
        default=None,
        help="Image column; default: the first column of Image type, else 'image', 'img' or 'jpg'.",
    )
    data.add_argument(
        "--validation_data",
        default=None,
        help="Hub id or folder for validation; default: the "
        "first images of --train_data (then validation is on training images; a warning says so).",
    )
    data.add_argument(
        "--validation_split",
        default=None,
        help="Split of the validation data (default: 'validation' for --validation_data, --train_split otherwise).",
    )
    data.add_argument(
        "--num_validation_images",
        type=int,
        default=16,
        help="Fixed validation images (each is evaluated with one fixed mask per hole-ratio bucket).",
    )
    data.add_argument("--shuffle_buffer_size", type=int, default=1000, help="Streaming shuffle buffer (examples).")
    data.add_argument(
        "--min_image_side",
        type=int,
        default=DEFAULT_MIN_SIDE,
        help="Skip images whose shorter side is below this (counted as too_small).",
    )
    data.add_argument(
        "--mask_source",
        default="generated",
        help="'generated' (irregular masks, hole ratio "
        "uniform over the paper's buckets, 0.01-0.6), a folder of mask images (white = hole), 'none' "
        "(no holes: an autoencoder, with --conv_type plain) or 'grid:CELLS' (one random pass of the "
        "checkerboard grid that pconv_hf.anomaly inpaints at scoring time).",
    )
    data.add_argument(
        "--train_transform",
        default="random_resized_crop",
        choices=list(TRAIN_TRANSFORMS),
        help="random_resized_crop: a 25-100 %% area crop, horizontal flips; multiscale_crop: crops from the photo's "
        "own pixel scale up to its whole short side, resized to --resolution; resize_flip: the whole "
        "image resized, horizontal and vertical flips (anomaly detection).",
    )
    data.add_argument(
        "--grayscale_augmentation",
        type=float,
        default=0.0,
        metavar="P",
        help="Share of training "
        "crops (on average) turned grayscale, so fills in black-and-white photos get no colour tint. "
        "0 = off (the paper).",
    )
    data.add_argument(
        "--native_crops",
        type=float,
        default=0.0,
        metavar="P",
        help="Share of training crops (on average) taken at the photo's own pixel scale (1:1, the image decoded at "
        "full size) instead of --train_transform: what inpaint() shows the network for thin holes in big photos. "
        "Give it the original photos (not downscaled copies) for this to mean anything.",
    )
    data.add_argument(
        "--synthetic_defects",
        type=float,
        default=0.0,
        metavar="P",
        help="Share of training images "
        "(on average) given a synthetic defect in the model input while the target stays the clean "
        "image: the model learns to remove such defects (see docs/anomaly.md).",
    )
    data.add_argument(
        "--synthetic_defect_kinds",
        default="circle,scratch,stain",
        help="Comma-separated kinds for --synthetic_defects (pconv_hf.anomaly.DEFECT_KINDS).",
    )
    data.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=0,
        help="DataLoader worker processes per rank (0 = decode in the training process).",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--resolution", type=int, default=256, help="Training crop size (multiple of 2**layer_size).")
    model.add_argument("--layer_size", type=int, default=7, help="U-Net depth: 7 for 256 px, 8 for 512 px.")
    model.add_argument(
        "--base_channels",
        type=int,
        default=None,
        help="Width of the first layer (64 = paper, the default from scratch). With --init_from a narrower model, it "
        "is widened to this width computing the same function, so training goes on from it (pconv_hf.model.widen).",
    )
    model.add_argument(
        "--upsampling_mode",
        default="nearest",
        choices=["nearest", "bilinear", "bicubic"],
        help="Decoder upsampling (nearest = paper).",
    )
    model.add_argument(
        "--conv_type",
        default="partial",
        choices=["partial", "plain"],
        help="partial (the paper's "
        "model) or plain (its Conv baseline, same shapes; with --mask_source none an autoencoder). "
        "Ignored with --init_from, which brings its own architecture.",
    )
    model.add_argument(
        "--init_from",
        default=None,
        help="Saved model folder or Hub id to start from (weights and "
        "architecture; optimizer state is not loaded). Use with --finetune for phase 2.",
    )
    model.add_argument(
        "--finetune",
        action="store_true",
        help="Paper's phase 2: freeze encoder BatchNorm; "
        f"learning rate {PAPER_FINETUNE_LEARNING_RATE} unless --learning_rate is given.",
    )
    model.add_argument(
        "--channels_last",
        action="store_true",
        help="Train in channels-last memory format: "
        "faster with bf16/fp16 (about 20 %% per step measured on an AVX-512 BF16 CPU; tensor cores on "
        "GPUs); the exported weights are the same either way.",
    )
    model.add_argument(
        "--boundary_blend",
        action="store_true",
        help="Last layer blends, at hole pixels touching "
        "a known pixel, the features' prediction with a renormalised one from the known pixels (not "
        "in the paper; removes the dotted line along slanted hole edges). With --init_from a model "
        "without it, its last layer is carried over (pconv_hf.model.add_boundary_blend).",
    )
    model.add_argument("--sync_batchnorm", action="store_true", help="Use SyncBatchNorm across processes (DDP).")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--train_batch_size", type=int, default=4, help="Images per process per micro-step.")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-steps per update.")
    optim.add_argument(
        "--learning_rate",
        type=float,
        default=None,
        help=f"Adam learning rate (default {PAPER_LEARNING_RATE}, or {PAPER_FINETUNE_LEARNING_RATE} with --finetune).",
    )
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="Adam beta1.")
    optim.add_argument("--adam_beta2", type=float, default=0.999, help="Adam beta2.")
    optim.add_argument("--weight_decay", type=float, default=0.0, help="Decoupled weight decay (AdamW).")
    optim.add_argument("--lr_warmup_steps", type=int, default=0, help="Linear learning-rate warm-up (updates).")
    optim.add_argument(
        "--lr_scheduler",
        default="constant",
        choices=list(LR_SCHEDULES),
        help="After the warm-up: constant (the paper) or cosine (decays to 0 at --max_train_steps).",
    )
    optim.add_argument("--max_train_steps", type=int, required=True, help="Total optimizer updates.")
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 = off).")
    optim.add_argument(
        "--max_skipped_steps",
        type=int,
        default=10,
        help="Stop after this many consecutive updates skipped for a non-finite loss or gradient.",
    )
    optim.add_argument(
        "--mixed_precision",
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Passed to Accelerator (default: the accelerate config / launch flag).",
    )
    optim.add_argument("--seed", type=int, default=0, help="Seed of the model init, data order, crops and masks.")

    loss = parser.add_argument_group("loss")
    loss.add_argument(
        "--perceptual_network",
        default="vgg16",
        choices=["vgg16", "alexnet", "none"],
        help="Feature network of the perceptual and style terms; none drops both terms.",
    )
    loss.add_argument(
        "--perceptual_weights",
        default="imagenet",
        choices=["imagenet", "random"],
        help="imagenet (from the local torch hub cache; never downloaded) or random (fixed-seed "
        "random init, NOT the paper's loss).",
    )
    loss.add_argument(
        "--lambda_ssim", type=float, default=paper.ssim, help="Weight of 1 - SSIM of the composite (not in the paper)."
    )
    loss.add_argument(
        "--perceptual_resolution",
        type=int,
        default=None,
        help="Resize images to this square size "
        "before the feature network (default: the training resolution, as in the paper); 128 at "
        "256 px costs about a quarter.",
    )
    loss.add_argument("--lambda_valid", type=float, default=paper.valid, help="Weight of the valid-pixel L1.")
    loss.add_argument("--lambda_hole", type=float, default=paper.hole, help="Weight of the hole-pixel L1.")
    loss.add_argument("--lambda_perceptual", type=float, default=paper.perceptual, help="Perceptual weight.")
    loss.add_argument("--lambda_style", type=float, default=paper.style, help="Style weight (after the warm-up).")
    loss.add_argument("--lambda_tv", type=float, default=paper.tv, help="Total-variation weight.")
    loss.add_argument(
        "--lambda_boundary",
        type=float,
        default=paper.boundary,
        help="Extra L1 weight on the hole "
        "pixels that touch a known pixel (not in the paper; against seams along the hole edge).",
    )
    loss.add_argument(
        "--lambda_hole_mse",
        type=float,
        default=paper.hole_mse,
        help="Weight of the mean squared error of the hole pixels (not in the paper; leans the fill towards "
        "the mean, which PSNR scores, where L1 leans towards the median).",
    )
    loss.add_argument(
        "--lambda_style_initial",
        type=float,
        default=None,
        help="Two-stage style schedule: this "
        "style weight for the first --style_warmup_steps updates, then --lambda_style.",
    )
    loss.add_argument("--style_warmup_steps", type=int, default=0, help="Updates using --lambda_style_initial.")

    out = parser.add_argument_group("output")
    out.add_argument("--output_dir", required=True, help="Export, checkpoints, samples and logs go here.")
    out.add_argument("--checkpointing_steps", type=int, default=500, help="Save state and export every N updates.")
    out.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints.")
    out.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="A checkpoint folder, or 'latest' in --output_dir (starts fresh with a warning when there is none).",
    )
    out.add_argument(
        "--validation_steps",
        type=int,
        default=500,
        help="Validate and save a sample grid every N updates (and at the end).",
    )
    out.add_argument(
        "--report_to",
        default="tensorboard",
        choices=["tensorboard", "wandb", "none"],
        help="Tracker (logs in OUT/logs for tensorboard).",
    )
    out.add_argument("--save_dtype", default="float32", choices=["float32", "float16"], help="Export weight dtype.")
    out.add_argument(
        "--log_seen_images",
        default=None,
        metavar="FILE_PREFIX",
        help="Debugging aid: every rank "
        "writes the ids of the images it trained on to FILE_PREFIX.rank{R}.txt and a hash of its "
        "final weights to FILE_PREFIX.rank{R}.json.",
    )
    if defaults:
        unknown = set(defaults) - {action.dest for action in parser._actions}
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        parser.set_defaults(**defaults)
        for action in parser._actions:
            if action.dest in defaults:
                action.required = False
    args = parser.parse_args(argv)

    if args.learning_rate is None:
        args.learning_rate = PAPER_FINETUNE_LEARNING_RATE if args.finetune else PAPER_LEARNING_RATE
    positive = [
        "train_batch_size",
        "gradient_accumulation_steps",
        "max_train_steps",
        "checkpointing_steps",
        "validation_steps",
        "num_validation_images",
        "max_skipped_steps",
        "resolution",
    ]
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.resolution % 2**args.layer_size:
        parser.error(f"--resolution {args.resolution} must be a multiple of 2**layer_size = {2**args.layer_size}")
    if (args.lambda_style_initial is None) != (args.style_warmup_steps == 0):
        parser.error("--lambda_style_initial and --style_warmup_steps > 0 go together")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        parser.error("--checkpoints_total_limit must be >= 1")
    for name in ("synthetic_defects", "grayscale_augmentation"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name} must be a share in [0, 1], got {getattr(args, name)}")
    return args


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


def _resolve_resume(args: argparse.Namespace) -> Path | None:
    if args.resume_from_checkpoint is None:
        return None
    if args.resume_from_checkpoint == "latest":
        found = _checkpoints(Path(args.output_dir))
        if not found:
            logger.warning(f"--resume_from_checkpoint latest: no checkpoint in {args.output_dir}; starting fresh")
            return None
        return found[-1]
    path = Path(args.resume_from_checkpoint)
    if not path.is_dir():
        raise SystemExit(f"error: --resume_from_checkpoint {str(path)!r} is not a checkpoint folder")
    return path


def _state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_model(model: PConvUNet, output_dir: Path, args: argparse.Namespace, step: int) -> None:
    """config.json + model.safetensors + README.md (the model card, with a training section) into ``output_dir``,
    swapped in file by file so that a reader never sees a half-written file."""
    dtype = torch.float16 if args.save_dtype == "float16" else None
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as tmp:
        model.save_pretrained(tmp, weights_dtype=dtype, model_card_kwargs={"training": training_summary(args, step)})
        for file in Path(tmp).iterdir():
            os.replace(file, output_dir / file.name)


def training_summary(args: argparse.Namespace, step: int) -> str:
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
# Training


def build_loss(args: argparse.Namespace, device: torch.device) -> tuple[InpaintingLoss, LossWeights]:
    """The loss module (with its feature network, if any) and the weights of its terms."""
    try:
        feature_extractor = make_feature_extractor(args.perceptual_network, args.perceptual_weights)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    if feature_extractor is None:
        logger.info("perceptual_network none: training with the valid, hole and tv terms only")
    elif args.perceptual_weights == "random":
        logger.warning(
            f"perceptual/style features from a RANDOMLY INITIALISED {args.perceptual_network} "
            "(--perceptual_weights random): not the paper's loss"
        )
    loss_fn = InpaintingLoss(feature_extractor, args.perceptual_resolution, ssim=args.lambda_ssim > 0).to(device)
    weights = LossWeights(
        valid=args.lambda_valid,
        hole=args.lambda_hole,
        perceptual=args.lambda_perceptual,
        style=args.lambda_style,
        tv=args.lambda_tv,
        boundary=args.lambda_boundary,
        ssim=args.lambda_ssim,
        hole_mse=args.lambda_hole_mse,
    )
    return loss_fn, weights


def build_model(args: argparse.Namespace) -> PConvUNet:
    """A fresh PConvUNet, or the weights and architecture of ``--init_from`` (at ``--resolution``)."""
    if args.init_from:
        model = PConvUNet.from_pretrained(args.init_from)
        if args.boundary_blend and not model.config.get("boundary_blend"):
            model = add_boundary_blend(model)
        if args.base_channels is not None and args.base_channels != model.config["base_channels"]:
            if args.base_channels < model.config["base_channels"]:
                raise SystemExit(
                    f"error: --base_channels {args.base_channels} is narrower than --init_from's "
                    f"{model.config['base_channels']}: a model can be widened, not narrowed"
                )
            if model.conv_type == "partial" and not model.config.get("boundary_blend"):
                logger.warning("widening a model without --boundary_blend changes its last layer near hole edges")
            model = widen(model, args.base_channels, seed=args.seed)
        config = {**model.config, "sample_size": args.resolution}
        if config != model.config:
            state = model.state_dict()
            model = PConvUNet(**config)
            model.load_state_dict(state)
        logger.info(f"initialised from {args.init_from}: {config}")
    else:
        model = PConvUNet(
            layer_size=args.layer_size,
            base_channels=64 if args.base_channels is None else args.base_channels,
            upsampling_mode=args.upsampling_mode,
            conv_type=args.conv_type,
            sample_size=args.resolution,
            boundary_blend=args.boundary_blend,
        )
    return model


def build_stream(args: argparse.Namespace, rank: int, world_size: int) -> TrainingStream:
    """This rank's share of the shuffled training stream, as batches of (image, valid mask) with their masks."""
    examples = load_examples(
        args.train_data, split=args.train_split, config=args.dataset_config, image_column=args.image_column
    )
    defect_source = None
    if args.synthetic_defects > 0:
        try:
            defect_source = DefectPainter(args.synthetic_defect_kinds.split(","))
        except ValueError as error:
            raise SystemExit(f"error: --synthetic_defect_kinds: {error}") from None
    mask_source = make_mask_source(args.mask_source, args.resolution)
    stream = TrainingStream(
        rank_stream(
            examples, seed=args.seed, shuffle_buffer_size=args.shuffle_buffer_size, rank=rank, world_size=world_size
        ),
        resolution=args.resolution,
        batch_size=args.train_batch_size,
        mask_source=mask_source,
        seed=args.seed,
        rank=rank,
        min_side=args.min_image_side,
        transform=args.train_transform,
        defect_source=defect_source,
        defect_probability=args.synthetic_defects,
        grayscale_probability=args.grayscale_augmentation,
        native_probability=args.native_crops,
    )
    return stream


def main(argv: list[str] | None = None) -> dict:
    """``train_accelerate.py``'s command line: ``train(parse_args(argv))``."""
    return train(parse_args(argv))


def train(args: argparse.Namespace) -> dict:
    """Train with the settings of :func:`parse_args`; returns ``{"global_step", "skipped", "output_dir",
    "last_logs"}``. The model is exported to ``args.output_dir`` at every checkpoint and at the end."""
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs"), total_limit=args.checkpoints_total_limit
        ),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        import datasets

        datasets.utils.logging.set_verbosity_error()
    rank, world_size = accelerator.process_index, accelerator.num_processes

    # 1. Loss first: a missing ImageNet checkpoint stops the run before any data or model work.
    loss_fn, weights = build_loss(args, accelerator.device)

    # 2. Model: fresh, or weights (and architecture) from --init_from.
    set_seed(args.seed)
    model = build_model(args)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    if args.finetune:
        model.freeze_encoder_bn()
    if args.sync_batchnorm and world_size > 1 and accelerator.device.type == "cpu":
        raise SystemExit("error: --sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm has no CPU implementation)")
    if args.sync_batchnorm and world_size > 1:
        # A frozen encoder BN needs no synchronisation, and freeze_encoder_bn only knows nn.BatchNorm2d.
        if args.finetune:
            model.decoder = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.decoder)
        else:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.weight_decay,
    )
    # Stepped once per update on every rank (not prepared: accelerate would step it num_processes times).
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(lr_factor, schedule=args.lr_scheduler, warmup=args.lr_warmup_steps, total=args.max_train_steps),
    )

    # 3. Data: this rank's part of the shuffled stream; batches are built in TrainingStream.
    stream = build_stream(args, rank, world_size)
    position = DataPosition(args.dataloader_num_workers)

    # 4. Fixed validation set (main process only): first N images, one fixed mask per bucket each.
    validation = []
    if accelerator.is_main_process:
        if args.validation_data is None:
            logger.warning("no --validation_data: validating on the first training images")
        images, _ = load_eval_images(
            args.validation_data or args.train_data,
            args.num_validation_images,
            args.resolution,
            split=args.validation_split or (args.train_split if args.validation_data is None else "validation"),
            config=args.dataset_config if args.validation_data is None else None,
            image_column=args.image_column,
        )
        masks = fixed_masks(len(images), args.resolution, args.resolution, VALIDATION_MASK_SEED)
        validation = eval_samples(images, masks)

    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)

    # 5. Resume: accelerate restores model, optimizer, scheduler and RNG; the data position is ours.
    global_step = 0
    resume_from = _resolve_resume(args)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        global_step = json.loads((resume_from / "training_state.json").read_text())["global_step"]
        data_file = resume_from / f"data_state_rank{rank}.json"
        restored = False
        if data_file.is_file():
            data_state = json.loads(data_file.read_text())
            restored = data_state.get("world_size") == world_size and stream.load_resume_state(
                data_state, args.dataloader_num_workers
            )
            if restored:
                position.load_state_dict(data_state)
        if not restored:
            logger.warning(
                "data position not restored (other world size or worker count): the data order "
                "restarts, so this run will not match an uninterrupted one",
                main_process_only=False,
            )
        logger.info(f"resumed from {resume_from} at step {global_step}")

    dataloader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=args.dataloader_num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
        _truncate_validation_log(output_dir / "validation.jsonl", global_step)
        tracker_config = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers("pconv_hf", config=tracker_config)
    seen_file = open(f"{args.log_seen_images}.rank{rank}.txt", "a") if args.log_seen_images else None  # noqa: SIM115

    def sync_buffers() -> None:
        # DDP copies rank 0's BatchNorm statistics to the others before each forward, so after the last forward
        # they differ by one update. Copying them now changes nothing in training and makes every rank's state
        # (and the export) the same.
        if world_size > 1:
            for buffer in unwrapped.buffers():
                torch.distributed.broadcast(buffer.data, src=0)

    def checkpoint(step: int) -> None:
        target = output_dir / f"checkpoint-{step}"
        sync_buffers()
        if accelerator.is_main_process and args.checkpoints_total_limit:
            existing = [p for p in _checkpoints(output_dir) if p != target]
            for old in existing[: max(len(existing) + 1 - args.checkpoints_total_limit, 0)]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(target))
        (target / f"data_state_rank{rank}.json").write_text(
            json.dumps({"world_size": world_size, **position.state_dict()}) + "\n"
        )
        if accelerator.is_main_process:
            (target / "training_state.json").write_text(json.dumps({"global_step": step}) + "\n")
            export_model(unwrapped, output_dir, args, step)
            logger.info(f"step {step}: saved {target} and exported the model to {output_dir}")
        accelerator.wait_for_everyone()

    def run_validation(step: int) -> None:
        sync_buffers()
        if accelerator.is_main_process:
            results = evaluate(unwrapped, validation, device=accelerator.device)
            with open(output_dir / "validation.jsonl", "a") as log:
                log.write(json.dumps({"step": step, "results": results}) + "\n")
            grid = sample_grid(unwrapped, grid_samples(validation, args.num_validation_images), accelerator.device)
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

    # 6. The loop: one iteration = one optimizer update of gradient_accumulation_steps micro-batches.
    images_per_update = args.train_batch_size * args.gradient_accumulation_steps * world_size
    logger.info(
        f"training {sum(p.numel() for p in unwrapped.parameters()):,} parameters on {world_size} "
        f"process(es), {images_per_update} images per update, lr {args.learning_rate}, "
        f"from step {global_step} to {args.max_train_steps}"
    )
    progress = tqdm(
        total=args.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process
    )
    batches = iter(dataloader)
    consecutive_skips = 0
    last_checkpoint = last_validation = -1
    images_per_second = None
    logs: dict[str, float] = {}
    while global_step < args.max_train_steps:
        started = time.perf_counter()
        step_weights = loss_weights_at(global_step, weights, args.lambda_style_initial, args.style_warmup_steps)
        finite_update = True
        for _ in range(args.gradient_accumulation_steps):
            batch = next(batches)
            for reason, image_id, message in position.update(batch["state"]):
                logger.warning(f"skipped {image_id} ({reason}): {message}", main_process_only=False)
            if seen_file:
                seen_file.writelines(f"{global_step}\t{image_id}\n" for image_id in batch["ids"])
                seen_file.flush()
            image = batch["image"].to(accelerator.device, memory_format=memory_format, non_blocking=True)
            valid_mask = batch["valid_mask"].to(accelerator.device, memory_format=memory_format, non_blocking=True)
            # With --synthetic_defects the model sees defected inputs; the loss still compares with the clean image.
            model_input = (
                batch["input"].to(accelerator.device, memory_format=memory_format, non_blocking=True)
                if "input" in batch
                else image
            )
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    output = model(model_input * valid_mask, valid_mask)
                    terms = loss_fn(image, valid_mask, output.float())
                    loss = weighted_total(terms, step_weights)
                # Every rank must take the same branch, or DDP's gradient all-reduce would hang.
                finite = accelerator.gather(torch.isfinite(loss.detach()).float().reshape(1)).min() > 0
                if finite:
                    accelerator.backward(loss)
                else:
                    finite_update = False
                if accelerator.sync_gradients:
                    if finite_update and args.max_grad_norm > 0:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                        # Under fp16 the gradient scaler must see the overflow to lower its scale; it skips the
                        # step itself (optimizer.step_was_skipped).
                        finite_update = accelerator.scaler is not None or bool(torch.isfinite(grad_norm))
                    if finite_update:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)

        if not finite_update or optimizer.step_was_skipped:
            consecutive_skips += 1
            logger.warning(
                f"step {global_step + 1}: non-finite loss or gradient, update skipped ({consecutive_skips} in a row)"
            )
            if consecutive_skips >= args.max_skipped_steps:
                progress.close()
                raise SystemExit(
                    f"error: {consecutive_skips} consecutive updates had a non-finite loss or gradient "
                    f"(--max_skipped_steps {args.max_skipped_steps}); try a lower --learning_rate, "
                    "--mixed_precision no, or resume from an earlier checkpoint"
                )
            continue
        consecutive_skips = 0
        lr_scheduler.step()
        global_step += 1

        elapsed = time.perf_counter() - started
        rate = images_per_update / max(elapsed, 1e-9)
        images_per_second = rate if images_per_second is None else 0.9 * images_per_second + 0.1 * rate
        logs = {f"loss/{name}": value.item() for name, value in terms.items()}
        logs.update({"loss/total": loss.item(), "lr": lr_scheduler.get_last_lr()[0], "images_per_second": rate})
        progress.update(1)
        progress.set_postfix(
            loss=f"{logs['loss/total']:.4f}",
            img_s=f"{images_per_second:.1f}",
            skipped=sum(position.skip_counts().values()),
        )
        accelerator.log(logs, step=global_step)

        if global_step % args.validation_steps == 0:
            run_validation(global_step)
            last_validation = global_step
        if global_step % args.checkpointing_steps == 0:
            checkpoint(global_step)
            last_checkpoint = global_step
    progress.close()

    # 7. End: validate, checkpoint and export the final weights unless this step already did.
    if last_validation != global_step:
        run_validation(global_step)
    if last_checkpoint != global_step:
        checkpoint(global_step)
    skipped = _merge_skips(gather_object([position.skipped]))
    counts = {reason: len(skipped[reason]) for reason in SKIP_REASONS}
    logger.info(
        "skipped images (distinct files, all ranks): "
        + ", ".join(f"{reason}={count}" for reason, count in counts.items())
    )
    if seen_file:
        seen_file.close()
        Path(f"{args.log_seen_images}.rank{rank}.json").write_text(
            json.dumps({"rank": rank, "global_step": global_step, "state_hash": _state_hash(unwrapped)}) + "\n"
        )
    if accelerator.is_main_process:
        logger.info(f"done: {global_step} steps; PConvUNet.from_pretrained({str(output_dir)!r}) loads the model")
    accelerator.end_training()
    return {"global_step": global_step, "skipped": counts, "output_dir": str(output_dir), "last_logs": logs}


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
