"""``fit``: train an anomaly detector on a folder of clean images, the workflow behind ``pconv-anomaly fit``.

:class:`FitConfig` holds the settings (checked on construction: a bad one is a ``ValueError``); :func:`fit` reads in
order: check everything cheap (settings, feature network, training flags) -> split the images 90/10 and compute
their mean/std -> train with :func:`pconv_hf.training.train` -> calibrate on the validation part, score it with and
without synthetic defects, and write ``anomaly.json``. It needs the training extra (``accelerate``, ``datasets``);
scoring a fitted model does not.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import training
from ..defects import DEFECT_KINDS, DefectPainter
from ..images import BadImageError
from ..model import PConvUNet
from ..training_config import TrainingConfig, build_parser
from .config import FEATURE_NETWORKS, FEATURE_WEIGHTS, MODES, AnomalyConfig, resolve_features
from .detector import AnomalyDetector, calibrate, channel_statistics, find_images, load_image, split_files
from .tables import write_csv
from .thresholds import roc_auc


@dataclasses.dataclass(kw_only=True)
class FitConfig:
    """The settings of :func:`fit` (``pconv-anomaly fit``'s flags, same names and defaults).

    Args:
        train_dir: folder of clean images (searched recursively).
        output_dir: model, ``anomaly.json``, the split and logs go here; not inside ``train_dir``.
        mode: ``"autoencoder"`` or ``"inpainting"`` (see :mod:`pconv_hf.anomaly`).
        resolution: images are resized (whole) to this square size.
        layer_size: U-Net depth; None: ``log2(resolution) - 1``.
        base_channels: width of the first layer (64 = paper).
        max_train_steps, train_batch_size, learning_rate, mixed_precision: as in ``train_accelerate.py``.
        seed: seed of the split, the model init and the data order.
        validation_fraction: share of images held out for calibration.
        synthetic_defects: share of training inputs given a synthetic defect (the target stays clean).
        synthetic_defect_kinds: comma-separated kinds for ``synthetic_defects``.
        mse_weight, feature_network, feature_weights: the scoring terms; None: :func:`resolve_features` chooses.
        grid_cells, grid_period: inpainting mode's grid.
        training_args: further ``train_accelerate.py`` flags (``pconv-anomaly fit ... -- FLAGS``); those ``fit``
            derives itself (data, output, resolution, depth, convolution, masks, init) are refused.

    Raises:
        ValueError: a value out of range or not among its choices.
    """

    train_dir: Path
    output_dir: Path
    mode: str
    resolution: int = 256
    layer_size: int | None = None
    base_channels: int = 32
    max_train_steps: int = 5000
    train_batch_size: int = 8
    learning_rate: float = 1e-3
    mixed_precision: str | None = None
    seed: int = 0
    validation_fraction: float = 0.1
    synthetic_defects: float = 0.0
    synthetic_defect_kinds: str = "circle,scratch,stain"
    mse_weight: float | None = None
    feature_network: str | None = None
    feature_weights: str | None = None
    grid_cells: int = 8
    grid_period: int = 2
    training_args: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.train_dir, self.output_dir = Path(self.train_dir), Path(self.output_dir)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.feature_network not in (None, *FEATURE_NETWORKS):
            raise ValueError(f"feature_network must be one of {FEATURE_NETWORKS}, got {self.feature_network!r}")
        if self.feature_weights not in (None, *FEATURE_WEIGHTS):
            raise ValueError(f"feature_weights must be one of {FEATURE_WEIGHTS}, got {self.feature_weights!r}")
        if self.max_train_steps < 1 or self.train_batch_size < 1:
            raise ValueError("--max_train_steps and --train_batch_size must be >= 1")
        if self.layer_size is None:
            self.layer_size = max(1, int(math.log2(self.resolution)) - 1)
        if self.resolution % 2**self.layer_size:
            raise ValueError(
                f"--resolution {self.resolution} must be a multiple of 2**layer_size = {2**self.layer_size}"
            )
        train_dir, output_dir = self.train_dir.resolve(), self.output_dir.resolve()
        if output_dir == train_dir or train_dir in output_dir.parents:
            raise ValueError(
                "--output_dir must not be inside --train_dir (the split folders would become training data)"
            )
        self.training_args = list(self.training_args)

    @property
    def conv_type(self) -> str:
        return "plain" if self.mode == "autoencoder" else "partial"


# ---------------------------------------------------------------------------------------------------------
# The workflow


def fit(config: FitConfig) -> AnomalyConfig:
    """Train, calibrate and save an anomaly detector in ``config.output_dir``; returns what ``anomaly.json`` holds.

    Everything that can fail cheaply (settings, the feature network's weights, the training flags, no readable
    image) fails before anything is written.
    """
    anomaly_config = _scoring_config(config)
    settings = _training_settings(config)
    train_files, validation_files = _split(config, anomaly_config)
    settings.num_validation_images = min(settings.num_validation_images, len(validation_files))
    result = training.train(settings)
    clean_scores, synthetic_auc = _calibrate(config, anomaly_config, validation_files)
    anomaly_config.training = {
        "train_dir": str(config.train_dir), "num_train": len(train_files), "num_validation": len(validation_files),
        "seed": config.seed, "steps": result["global_step"], "layer_size": config.layer_size,
        "base_channels": config.base_channels, "synthetic_defects": config.synthetic_defects,
        "synthetic_defect_kinds": config.synthetic_defect_kinds, "train_transform": "resize_flip",
        "validation_clean_score_mean": float(np.mean(clean_scores)),
        "validation_synthetic_defect_roc_auc": synthetic_auc,
    }  # fmt: skip
    path = anomaly_config.save(config.output_dir)
    print(
        f"wrote {path}: clean validation score mean {np.mean(clean_scores):.3f} (1 = typical by construction), "
        f"ROC-AUC against synthetic defects {synthetic_auc:.3f}; labelled scores in "
        f"{config.output_dir / 'validation_scores.csv'}"
    )
    return anomaly_config


def _scoring_config(config: FitConfig) -> AnomalyConfig:
    """The scoring settings, with the feature network loaded once: a missing checkpoint stops ``fit`` here."""
    feature_network, feature_weights, mse_weight, note = resolve_features(
        config.feature_network, config.feature_weights, config.mse_weight
    )
    anomaly_config = AnomalyConfig(
        mode=config.mode,
        resolution=config.resolution,
        mse_weight=mse_weight,
        feature_network=feature_network,
        feature_weights=feature_weights,
        grid_cells=config.grid_cells,
        grid_period=config.grid_period,
    )
    probe = PConvUNet(
        layer_size=config.layer_size, base_channels=1, sample_size=config.resolution, conv_type=config.conv_type
    )
    AnomalyDetector(probe, anomaly_config)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return anomaly_config


def _training_settings(config: FitConfig) -> TrainingConfig:
    """The training run's settings: those ``fit`` owns (they must agree with ``anomaly.json`` and the split), then
    ``config.training_args``, then ``fit``'s defaults for the rest. Checked now, before any work."""
    output_dir = config.output_dir
    owned = {  # setting: (value, the fit flag it comes from)
        "train_data": (str(output_dir / "split" / "train"), "--train_dir"),
        "validation_data": (str(output_dir / "split" / "validation"), "--train_dir"),
        "output_dir": (str(output_dir), "--output_dir"),
        "resolution": (config.resolution, "--resolution"),
        "layer_size": (config.layer_size, "--layer_size"),
        "conv_type": (config.conv_type, "--mode"),
        "mask_source": (
            "none" if config.mode == "autoencoder" else f"grid:{config.grid_cells}:{config.grid_period}",
            "--mode and --grid_cells",
        ),
        "init_from": (None, "nothing: fit always trains from scratch"),
    }
    fit_defaults = {
        "base_channels": config.base_channels,
        "train_transform": "resize_flip",
        "synthetic_defects": config.synthetic_defects,
        "synthetic_defect_kinds": config.synthetic_defect_kinds,
        "perceptual_network": "none",
        "max_train_steps": config.max_train_steps,
        "train_batch_size": config.train_batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "num_validation_images": 8,
        "validation_steps": config.max_train_steps,
        "min_image_side": 1,
        "report_to": "none",
        "mixed_precision": config.mixed_precision,
    }
    defaults = {**{name: value for name, (value, _) in owned.items()}, **fit_defaults}
    parser = build_parser(defaults)

    def refuse(message: str) -> NoReturn:
        raise ValueError(f"training flags after '--': {message}")

    parser.error = refuse  # argparse would end the program; a bad flag is a ValueError here, as any bad setting
    settings = TrainingConfig(**vars(parser.parse_args(config.training_args)))
    for name, (value, source) in owned.items():
        if getattr(settings, name) != value:
            raise ValueError(f"--{name} after '--' is set by fit itself; use fit's {source}")
    return settings


def _split(config: FitConfig, anomaly_config: AnomalyConfig) -> tuple[list[Path], list[Path]]:
    """The deterministic split, linked into ``output_dir/split`` and recorded in ``split.json``; the training
    images' mean/std (at the training resolution) into ``anomaly_config``. Files that cannot be read are named
    and left out; with no readable image on either side, nothing is written."""
    files = find_images(config.train_dir)
    train_files, validation_files = split_files(files, config.validation_fraction, config.seed)
    readable: list[Path] = []
    try:
        anomaly_config.mean, anomaly_config.std = channel_statistics(
            _usable_images(tqdm(train_files, desc="mean/std", unit="img"), config.resolution, readable)
        )
    except ValueError:
        raise ValueError(
            f"none of the {len(train_files)} training images can be read (see the warnings above)"
        ) from None
    train_files = readable
    validation_files = [f for f in validation_files if next(_usable_images([f], config.resolution), None) is not None]
    if not validation_files:
        raise ValueError("none of the validation images can be read (see the warnings above)")
    output_dir = config.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    split = {
        "seed": config.seed, "validation_fraction": config.validation_fraction,
        "train": _link_split(train_files, config.train_dir, output_dir / "split" / "train"),
        "validation": _link_split(validation_files, config.train_dir, output_dir / "split" / "validation"),
    }  # fmt: skip
    (output_dir / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    print(f"{len(train_files)} training and {len(validation_files)} validation images (seed {config.seed})")
    return train_files, validation_files


def _calibrate(
    config: FitConfig, anomaly_config: AnomalyConfig, validation_files: list[Path]
) -> tuple[list[float], float]:
    """Calibrate the trained model on the clean validation images and score them with and without synthetic
    defects (``validation_scores.csv``); returns the clean scores and the ROC-AUC against the defects."""
    detector = AnomalyDetector(PConvUNet.from_pretrained(config.output_dir), anomaly_config)
    names, clean = [], []
    for file in validation_files:
        image = next(_usable_images([file], config.resolution), None)
        if image is not None:
            names.append(_split_name(file, config.train_dir))
            clean.append(image)
    if not clean:
        raise ValueError("no usable validation image to calibrate on")
    clean = torch.stack(clean)
    calibrate(detector, clean)
    painter = DefectPainter(DEFECT_KINDS)
    rng = np.random.default_rng([config.seed, 1])
    defected = torch.stack([painter(image, rng) for image in clean])
    clean_scores = detector(clean).score.tolist()
    defect_scores = detector(defected).score.tolist()
    rows = [{"image": f"split/validation/{n}", "score": s, "label": 0} for n, s in zip(names, clean_scores)]
    rows += [{"image": f"synthetic-defect/{n}", "score": s, "label": 1} for n, s in zip(names, defect_scores)]
    write_csv(config.output_dir / "validation_scores.csv", rows, ["image", "score", "label"])
    synthetic_auc = roc_auc(clean_scores + defect_scores, [0] * len(clean) + [1] * len(defected))
    return clean_scores, synthetic_auc


# ---------------------------------------------------------------------------------------------------------
# Files


def _split_name(file: Path, root: Path) -> str:
    """A file's name in the split folders: its path below ``root`` with "/" as "__"."""
    return file.relative_to(root).as_posix().replace("/", "__")


def _link_split(files: list[Path], root: Path, directory: Path) -> list[str]:
    """Symlink (or copy, where links are not allowed) ``files`` into ``directory``; returns their names there."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    names = []
    for file in files:
        name = _split_name(file, root)
        try:
            (directory / name).symlink_to(file.resolve())
        except OSError:
            shutil.copy2(file, directory / name)
        names.append(name)
    return names


def _usable_images(
    files: Iterable[Path], resolution: int, readable: list[Path] | None = None
) -> Iterator[torch.Tensor]:
    """Yield the images of ``files`` that decode, warning about (and skipping) the others; the files that decode
    are appended to ``readable`` when given."""
    for file in files:
        try:
            image = load_image(file, resolution)
        except BadImageError as error:
            print(f"warning: skipped {file} ({error.reason}): {error}", file=sys.stderr)
            continue
        if readable is not None:
            readable.append(file)
        yield image
