"""The training settings: one typed, validated :class:`TrainingConfig`, and the command line generated from it.

Each field is one ``train_accelerate.py`` flag of the same name; its metadata holds the flag's help text, group
and choices, so :func:`build_parser` writes the argument parser from the fields and the two cannot drift apart.
``TrainingConfig(...)`` checks every value and raises ``ValueError`` naming a bad one, whether the settings come
from the command line, from code, or from an ``argparse.Namespace`` (:meth:`TrainingConfig.from_namespace`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

from .data import TRAIN_TRANSFORMS
from .images import DEFAULT_MIN_SIDE
from .losses import LossWeights

PAPER_LEARNING_RATE = 2e-4
PAPER_FINETUNE_LEARNING_RATE = 5e-5
LR_SCHEDULES = ("constant", "cosine")

_PAPER = LossWeights()
_FLAG_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
# Settings that count something and must be at least 1.
_POSITIVE = (
    "train_batch_size", "gradient_accumulation_steps", "max_train_steps", "checkpointing_steps", "validation_steps",
    "num_validation_images", "max_skipped_steps", "resolution", "discriminator_channels", "discriminator_layers",
)  # fmt: skip
# Weights and rates that must not be negative.
_NON_NEGATIVE = (
    "lambda_adversarial", "lambda_feature_matching", "adversarial_start_step", "discriminator_learning_rate",
    "discriminator_r1_weight",
)  # fmt: skip
# Settings that are a share of the training crops or images.
_SHARES = ("synthetic_defects", "grayscale_augmentation", "native_crops")


def _setting(default: Any = dataclasses.MISSING, *, group: str, help: str, choices=None, metavar=None):  # noqa: A002
    """A config field and its flag: no ``default`` makes the flag required."""
    metadata = {"group": group, "help": help, "choices": choices, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(kw_only=True)
class TrainingConfig:
    """Every setting of a training run; the fields are ``train_accelerate.py``'s flags (same names, defaults).

    ``learning_rate=None`` becomes the paper's rate (``PAPER_FINETUNE_LEARNING_RATE`` with ``finetune``).

    Raises:
        ValueError: a value out of range or not among its choices, or two settings that do not go together.
    """

    # data
    train_data: str = _setting(
        group="data",
        help="Hub dataset id, a local folder of images (recursive), "
        "or a local datasets folder (save_to_disk / parquet).",
    )
    dataset_config: str | None = _setting(None, group="data", help="Dataset configuration name (Hub datasets).")
    train_split: str = _setting("train", group="data", help="Split of --train_data to train on.")
    image_column: str | None = _setting(
        None, group="data", help="Image column; default: the first column of Image type, else 'image', 'img' or 'jpg'."
    )
    validation_data: str | None = _setting(
        None,
        group="data",
        help="Hub id or folder for validation; default: the first images of --train_data (then validation is on "
        "training images; a warning says so).",
    )
    validation_split: str | None = _setting(
        None,
        group="data",
        help="Split of the validation data (default: 'validation' for --validation_data, --train_split otherwise).",
    )
    num_validation_images: int = _setting(
        16,
        group="data",
        help="Fixed validation images (each is evaluated with one fixed mask per hole-ratio bucket).",
    )
    shuffle_buffer_size: int = _setting(1000, group="data", help="Streaming shuffle buffer (examples).")
    min_image_side: int = _setting(
        DEFAULT_MIN_SIDE, group="data", help="Skip images whose shorter side is below this (counted as too_small)."
    )
    mask_source: str = _setting(
        "generated",
        group="data",
        help="'generated' (irregular masks, hole ratio uniform over the paper's buckets, 0.01-0.6), a folder of mask "
        "images (white = hole), 'none' (no holes: an autoencoder, with --conv_type plain) or 'grid:CELLS' (one "
        "random pass of the checkerboard grid that pconv_hf.anomaly inpaints at scoring time).",
    )
    train_transform: str = _setting(
        "random_resized_crop",
        group="data",
        choices=tuple(TRAIN_TRANSFORMS),
        help="random_resized_crop: a 25-100 %% area crop, horizontal flips; multiscale_crop: crops from the photo's "
        "own pixel scale up to its whole short side, resized to --resolution; resize_flip: the whole "
        "image resized, horizontal and vertical flips (anomaly detection).",
    )
    grayscale_augmentation: float = _setting(
        0.0,
        group="data",
        metavar="P",
        help="Share of training crops (on average) turned grayscale, so fills in black-and-white photos get no "
        "colour tint. 0 = off (the paper).",
    )
    native_crops: float = _setting(
        0.0,
        group="data",
        metavar="P",
        help="Share of training crops (on average) taken at the photo's own pixel scale (1:1, the image decoded at "
        "full size) instead of --train_transform: what inpaint() shows the network for thin holes in big photos. "
        "Give it the original photos (not downscaled copies) for this to mean anything.",
    )
    synthetic_defects: float = _setting(
        0.0,
        group="data",
        metavar="P",
        help="Share of training images (on average) given a synthetic defect in the model input while the target "
        "stays the clean image: the model learns to remove such defects (see docs/anomaly.md).",
    )
    synthetic_defect_kinds: str = _setting(
        "circle,scratch,stain",
        group="data",
        help="Comma-separated kinds for --synthetic_defects (pconv_hf.anomaly.DEFECT_KINDS).",
    )
    dataloader_num_workers: int = _setting(
        0, group="data", help="DataLoader worker processes per rank (0 = decode in the training process)."
    )

    # model
    resolution: int = _setting(256, group="model", help="Training crop size (multiple of 2**layer_size).")
    layer_size: int = _setting(7, group="model", help="U-Net depth: 7 for 256 px, 8 for 512 px.")
    base_channels: int | None = _setting(
        None,
        group="model",
        help="Width of the first layer (64 = paper, the default from scratch). With --init_from a narrower model, it "
        "is widened to this width computing the same function, so training goes on from it (pconv_hf.model.widen).",
    )
    upsampling_mode: str = _setting(
        "nearest",
        group="model",
        choices=("nearest", "bilinear", "bicubic"),
        help="Decoder upsampling (nearest = paper).",
    )
    conv_type: str = _setting(
        "partial",
        group="model",
        choices=("partial", "plain"),
        help="partial (the paper's model) or plain (its Conv baseline, same shapes; with --mask_source none an "
        "autoencoder). Ignored with --init_from, which brings its own architecture.",
    )
    init_from: str | None = _setting(
        None,
        group="model",
        help="Saved model folder or Hub id to start from (weights and architecture; optimizer state is not "
        "loaded). Use with --finetune for phase 2.",
    )
    finetune: bool = _setting(
        False,
        group="model",
        help="Paper's phase 2: freeze encoder BatchNorm; "
        f"learning rate {PAPER_FINETUNE_LEARNING_RATE} unless --learning_rate is given.",
    )
    freeze_bn: bool = _setting(
        False,
        group="model",
        help="Freeze every BatchNorm layer (running statistics and affine parameters, as at inference): what "
        "--train_batch_size 1 needs, since one image's statistics are not the data's. For a trained model "
        "(--init_from).",
    )
    channels_last: bool = _setting(
        False,
        group="model",
        help="Train in channels-last memory format: faster with bf16/fp16 (about 20 %% per step measured on an "
        "AVX-512 BF16 CPU; tensor cores on GPUs); the exported weights are the same either way.",
    )
    boundary_blend: bool = _setting(
        False,
        group="model",
        help="Last layer blends, at hole pixels touching a known pixel, the features' prediction with a renormalised "
        "one from the known pixels (not in the paper; removes the dotted line along slanted hole edges). With "
        "--init_from a model without it, its last layer is carried over (pconv_hf.model.add_boundary_blend).",
    )
    sync_batchnorm: bool = _setting(False, group="model", help="Use SyncBatchNorm across processes (DDP).")

    # optimization
    train_batch_size: int = _setting(4, group="optimization", help="Images per process per micro-step.")
    gradient_accumulation_steps: int = _setting(1, group="optimization", help="Micro-steps per update.")
    learning_rate: float | None = _setting(
        None,
        group="optimization",
        help=f"Adam learning rate (default {PAPER_LEARNING_RATE}, or {PAPER_FINETUNE_LEARNING_RATE} with --finetune).",
    )
    adam_beta1: float = _setting(0.9, group="optimization", help="Adam beta1.")
    adam_beta2: float = _setting(0.999, group="optimization", help="Adam beta2.")
    weight_decay: float = _setting(0.0, group="optimization", help="Decoupled weight decay (AdamW).")
    lr_warmup_steps: int = _setting(0, group="optimization", help="Linear learning-rate warm-up (updates).")
    lr_scheduler: str = _setting(
        "constant",
        group="optimization",
        choices=LR_SCHEDULES,
        help="After the warm-up: constant (the paper) or cosine (decays to 0 at --max_train_steps).",
    )
    max_train_steps: int = _setting(group="optimization", help="Total optimizer updates.")
    max_grad_norm: float = _setting(1.0, group="optimization", help="Gradient clipping (0 = off).")
    max_skipped_steps: int = _setting(
        10,
        group="optimization",
        help="Stop after this many consecutive updates skipped for a non-finite loss or gradient.",
    )
    mixed_precision: str | None = _setting(
        None,
        group="optimization",
        choices=("no", "fp16", "bf16"),
        help="Passed to Accelerator (default: the accelerate config / launch flag).",
    )
    seed: int = _setting(0, group="optimization", help="Seed of the model init, data order, crops and masks.")

    # loss
    perceptual_network: str = _setting(
        "vgg16",
        group="loss",
        choices=("vgg16", "alexnet", "none"),
        help="Feature network of the perceptual and style terms; none drops both terms.",
    )
    perceptual_weights: str = _setting(
        "imagenet",
        group="loss",
        choices=("imagenet", "random"),
        help="imagenet (torchvision's ImageNet weights as converted safetensors in ~/.cache/pconv_hf/features, or "
        "$PCONV_HF_HOME/features: made once by bash scripts/fetch_feature_weights.sh, never downloaded during "
        "training) or random (fixed-seed random init, NOT the paper's loss).",
    )
    lambda_ssim: float = _setting(
        _PAPER.ssim, group="loss", help="Weight of 1 - SSIM of the composite (not in the paper)."
    )
    perceptual_resolution: int | None = _setting(
        None,
        group="loss",
        help="Resize images to this square size before the feature network (default: the training resolution, as "
        "in the paper); 128 at 256 px costs about a quarter.",
    )
    lambda_valid: float = _setting(_PAPER.valid, group="loss", help="Weight of the valid-pixel L1.")
    lambda_hole: float = _setting(_PAPER.hole, group="loss", help="Weight of the hole-pixel L1.")
    lambda_perceptual: float = _setting(_PAPER.perceptual, group="loss", help="Perceptual weight.")
    lambda_style: float = _setting(_PAPER.style, group="loss", help="Style weight (after the warm-up).")
    lambda_tv: float = _setting(_PAPER.tv, group="loss", help="Total-variation weight.")
    lambda_boundary: float = _setting(
        _PAPER.boundary,
        group="loss",
        help="Extra L1 weight on the hole pixels that touch a known pixel (not in the paper; against seams along "
        "the hole edge).",
    )
    lambda_hole_mse: float = _setting(
        _PAPER.hole_mse,
        group="loss",
        help="Weight of the mean squared error of the hole pixels (not in the paper; leans the fill towards "
        "the mean, which PSNR scores, where L1 leans towards the median).",
    )
    lambda_style_initial: float | None = _setting(
        None,
        group="loss",
        help="Two-stage style schedule: this style weight for the first --style_warmup_steps updates, then "
        "--lambda_style.",
    )
    style_warmup_steps: int = _setting(0, group="loss", help="Updates using --lambda_style_initial.")

    # adversarial term (not in the paper; LaMa's recipe), off by default
    lambda_adversarial: float = _setting(
        _PAPER.adversarial,
        group="adversarial",
        help="Weight of the non-saturating adversarial loss of a PatchGAN discriminator judging the composite's hole "
        "patches (pconv_hf.discriminator; the gradient reaches the output only at hole pixels). 0 = off (the "
        "paper): no discriminator is built.",
    )
    lambda_feature_matching: float = _setting(
        _PAPER.feature_matching,
        group="adversarial",
        help="Weight of the L1 distance between the discriminator's features of the composite and of the real image "
        "(feature matching, as in LaMa); needs --lambda_adversarial > 0.",
    )
    adversarial_start_step: int = _setting(
        0,
        group="adversarial",
        help="The generator gets the adversarial and feature-matching terms from this update on; the discriminator "
        "trains from the first update, so it has caught up with a pretrained generator by then.",
    )
    discriminator_learning_rate: float = _setting(
        1e-4, group="adversarial", help="Adam learning rate of the discriminator (constant)."
    )
    discriminator_adam_beta1: float | None = _setting(
        None,
        group="adversarial",
        help="Adam beta1 of the discriminator (default: --adam_beta1); GANs often use 0.5, which let a discriminator "
        "alone learn a trivial fake (grey holes) about 3x faster on the CPU.",
    )
    discriminator_r1_weight: float = _setting(
        0.001,
        group="adversarial",
        help="Weight of the R1 penalty (squared gradient norm of the discriminator on real images, per image); 0 = "
        "off (then use --discriminator_spectral_norm).",
    )
    discriminator_spectral_norm: bool = _setting(
        False, group="adversarial", help="Spectral normalisation on every discriminator convolution."
    )
    discriminator_channels: int = _setting(64, group="adversarial", help="Width of the discriminator's first layer.")
    discriminator_layers: int = _setting(
        3, group="adversarial", help="Stride-2 discriminator layers (3: 70 px patches; 4: 142 px)."
    )

    # output
    output_dir: str = _setting(group="output", help="Export, checkpoints, samples and logs go here.")
    checkpointing_steps: int = _setting(500, group="output", help="Save state and export every N updates.")
    checkpoints_total_limit: int | None = _setting(None, group="output", help="Keep at most N checkpoints.")
    resume_from_checkpoint: str | None = _setting(
        None,
        group="output",
        help="A checkpoint folder, or 'latest' in --output_dir (starts fresh with a warning when there is none).",
    )
    validation_steps: int = _setting(
        500, group="output", help="Validate and save a sample grid every N updates (and at the end)."
    )
    report_to: str = _setting(
        "tensorboard",
        group="output",
        choices=("tensorboard", "wandb", "none"),
        help="Tracker (logs in OUT/logs for tensorboard).",
    )
    save_dtype: str = _setting("float32", group="output", choices=("float32", "float16"), help="Export weight dtype.")
    log_seen_images: str | None = _setting(
        None,
        group="output",
        metavar="FILE_PREFIX",
        help="Debugging aid: every rank writes the ids of the images it trained on to FILE_PREFIX.rank{R}.txt and a "
        "hash of its final weights to FILE_PREFIX.rank{R}.json.",
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            choices = field.metadata["choices"]
            value = getattr(self, field.name)
            if choices is not None and value not in choices and not (value is None and field.default is None):
                raise ValueError(f"--{field.name} must be one of {list(choices)}, got {value!r}")
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.resolution % 2**self.layer_size:
            raise ValueError(
                f"--resolution {self.resolution} must be a multiple of 2**layer_size = {2**self.layer_size}"
            )
        if (self.lambda_style_initial is None) != (self.style_warmup_steps == 0):
            raise ValueError(
                "--lambda_style_initial and --style_warmup_steps > 0 go together, got "
                f"{self.lambda_style_initial} and {self.style_warmup_steps}"
            )
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"--checkpoints_total_limit must be >= 1, got {self.checkpoints_total_limit}")
        for name in _SHARES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must be a share in [0, 1], got {getattr(self, name)}")
        for name in _NON_NEGATIVE:
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        beta1 = self.discriminator_adam_beta1
        if beta1 is not None and not 0.0 <= beta1 < 1.0:
            raise ValueError(f"--discriminator_adam_beta1 must be in [0, 1), got {beta1}")
        if self.lambda_feature_matching > 0 and self.lambda_adversarial == 0:
            raise ValueError(
                f"--lambda_feature_matching {self.lambda_feature_matching} needs --lambda_adversarial > 0 (the "
                "discriminator is trained only with the adversarial term)"
            )
        if self.learning_rate is None:
            self.learning_rate = PAPER_FINETUNE_LEARNING_RATE if self.finetune else PAPER_LEARNING_RATE

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace | Mapping[str, Any]) -> TrainingConfig:
        """The config of an ``argparse.Namespace`` (or a dict) holding these settings by name."""
        values = dict(vars(namespace) if isinstance(namespace, argparse.Namespace) else namespace)
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training settings: {unknown}")
        missing = sorted(
            f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in values
        )
        if missing:
            raise ValueError(f"missing training settings: {missing}")
        return cls(**values)

    @property
    def adversarial(self) -> bool:
        """Whether the run trains a discriminator (``--lambda_adversarial`` > 0)."""
        return self.lambda_adversarial > 0

    def to_dict(self) -> dict[str, Any]:
        """The settings by name, in flag order (what ``training_args.json`` holds)."""
        return dataclasses.asdict(self)


def build_parser(defaults: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """``train_accelerate.py``'s argument parser, one flag per :class:`TrainingConfig` field.

    ``defaults`` replaces flag defaults by name; a required flag given there is no longer required.
    """
    defaults = dict(defaults or {})
    fields = dataclasses.fields(TrainingConfig)
    unknown = set(defaults) - {field.name for field in fields}
    if unknown:
        raise ValueError(f"unknown training settings: {sorted(unknown)}")
    parser = argparse.ArgumentParser(
        prog="train_accelerate.py",
        description="Train a PConvUNet (Liu et al. 2018) with Hugging Face accelerate and datasets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in fields:
        meta = field.metadata
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flag_type = _FLAG_TYPES[field.type.split(" | ")[0]]
        kwargs: dict[str, Any] = {"help": meta["help"]}
        if flag_type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = flag_type
            if meta["choices"] is not None:
                kwargs["choices"] = list(meta["choices"])
            if meta["metavar"] is not None:
                kwargs["metavar"] = meta["metavar"]
        if field.name in defaults:
            kwargs["default"] = defaults[field.name]
        elif field.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = field.default
        group.add_argument(f"--{field.name}", **kwargs)
    return parser


def parse_args(argv: list[str] | None = None, defaults: Mapping[str, Any] | None = None) -> TrainingConfig:
    """The training settings from command-line arguments (``sys.argv[1:]`` when None).

    ``defaults`` replaces flag defaults by name (``{"train_data": ..., "max_train_steps": ...}``); flags given
    there are no longer required, so ``parse_args([], defaults={...})`` builds settings in code. A flag argparse
    cannot read ends the program with a usage message, as on any command line; a value it reads but
    :class:`TrainingConfig` rejects raises ``ValueError``.
    """
    return TrainingConfig(**vars(build_parser(defaults).parse_args(argv)))
