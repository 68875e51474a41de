"""``pconv-anomaly``: reconstruction-based anomaly detection with a PConvUNet (see docs/anomaly.md).

    pconv-anomaly fit --train_dir clean/ --output_dir OUT --mode inpainting --max_train_steps 5000
    pconv-anomaly score --model OUT --good_dir val/good --defect_dir val/defect --output val.csv
    pconv-anomaly score --model OUT --images new/ --output scores.csv --heatmaps heatmaps/
    pconv-anomaly threshold --scores val.csv --test_scores test.csv --output thresholds.csv --model OUT

Higher score = more anomalous; an image is predicted defective iff score >= threshold; label 1 = defective.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _cli
from .._cli import CliError, HelpFormatter, fail, int_range, parse_device
from ..visualize import heatmap_panel

PROG = "pconv-anomaly"
SCORE_COLUMNS = ("image", "score", "mse", "perceptual")
_POSITIVE_LABELS = {"1", "defective", "defect", "bad", "anomalous", "true"}
_NEGATIVE_LABELS = {"0", "good", "ok", "clean", "normal", "false"}


# ---------------------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find defects in images of uniform objects by how badly a model trained on clean images "
        "reconstructs them. Higher score = more anomalous; defective iff score >= threshold.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fit,score,threshold}")
    defaults = HelpFormatter

    fit = commands.add_parser(
        "fit",
        formatter_class=defaults,
        help="train on clean images (through pconv_hf.training)",
        description="Split the clean images 90/10 (by --seed), compute their mean/std, train a PConvUNet with "
        "pconv_hf.training (train_accelerate.py's flags), calibrate on the validation part and write "
        "OUT/anomaly.json. Extra arguments after '--' are train_accelerate.py flags (e.g. -- --learning_rate 1e-3 "
        "--report_to tensorboard).",
    )
    fit.add_argument("--train_dir", required=True, type=Path, help="folder of clean images (searched recursively)")
    fit.add_argument("--output_dir", required=True, type=Path, help="model, anomaly.json, split and logs go here")
    fit.add_argument(
        "--mode",
        required=True,
        choices=["autoencoder", "inpainting"],
        help="autoencoder: plain-conv U-Net reconstructs the whole image; inpainting: partial-conv "
        "U-Net fills grid cells from their surroundings",
    )
    fit.add_argument(
        "--resolution",
        type=int_range(8, 2048, "pixels; training holds batches of this size in memory"),
        default=256,
        help="images are resized (whole) to this square size",
    )
    fit.add_argument(
        "--layer_size", type=int_range(1, 11), default=None, help="U-Net depth (default: log2(resolution) - 1)"
    )
    fit.add_argument(
        "--base_channels", type=int_range(1, 512), default=32, help="width of the first layer (64 = paper)"
    )
    fit.add_argument("--max_train_steps", type=int_range(1, 10_000_000), default=5000, help="optimizer updates")
    fit.add_argument("--train_batch_size", type=int_range(1, 4096), default=8, help="images per update")
    fit.add_argument("--learning_rate", type=float, default=1e-3, help="Adam learning rate")
    fit.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default=None,
        help="bf16 is several times faster on recent CPUs (default: the accelerate config)",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the split, the model init and the data order")
    fit.add_argument("--validation_fraction", type=float, default=0.1, help="share of images held out")
    fit.add_argument(
        "--synthetic_defects",
        type=float,
        default=0.0,
        metavar="P",
        help="share of training inputs given a synthetic defect while the target stays clean: the "
        "model learns to remove such defects (see docs/anomaly.md)",
    )
    fit.add_argument("--synthetic_defect_kinds", default="circle,scratch,stain", help="kinds for --synthetic_defects")
    scoring = fit.add_argument_group("scoring (stored in anomaly.json)")
    scoring.add_argument(
        "--mse_weight",
        type=float,
        default=None,
        help="lambda: score = lambda*MSE + (1-lambda)*perceptual (default 0.5; 1 without a "
        "feature term, --feature_network none)",
    )
    scoring.add_argument(
        "--feature_network",
        choices=["vgg16", "alexnet", "none"],
        default=None,
        help="network of the perceptual term (default: vgg16 with ImageNet weights when they are "
        "converted, else none, with a note; see --feature_weights)",
    )
    scoring.add_argument(
        "--feature_weights",
        choices=["imagenet", "random"],
        default=None,
        help="imagenet (default): converted once by `bash scripts/fetch_feature_weights.sh`, never "
        "downloaded; asked for and missing, fit stops before training. random: fixed-seed random "
        "init",
    )
    scoring.add_argument(
        "--grid_cells", type=int_range(1, 256), default=8, help="inpainting mode: grid cells per image side"
    )
    scoring.add_argument(
        "--grid_period",
        type=int_range(1, 16),
        default=2,
        help="inpainting mode: period**2 passes (2 = checkerboard in both directions, 4 passes)",
    )

    score = commands.add_parser(
        "score",
        formatter_class=defaults,
        help="score images; heat maps",
        description="Write one CSV row per image: image, score, mse, perceptual (and label with --good_dir / "
        "--defect_dir, defective with --threshold). With --heatmaps, one PNG per image: input | reconstruction "
        "| heat-map overlay.",
    )
    score.add_argument("--model", required=True, type=Path, help="a `fit` output folder")
    score.add_argument("--images", type=Path, help="folder of images to score (unlabelled)")
    score.add_argument("--good_dir", type=Path, help="folder of good images (label 0)")
    score.add_argument("--defect_dir", type=Path, help="folder of defective images (label 1)")
    score.add_argument("--output", required=True, type=Path, help="CSV file to write")
    score.add_argument("--heatmaps", type=Path, default=None, help="folder for the heat-map PNGs")
    score.add_argument(
        "--threshold",
        default=None,
        help="a threshold name stored in anomaly.json (e.g. best_f1) or a number: adds a 0/1 'defective' column",
    )
    score.add_argument("--batch_size", type=int_range(1, 4096), default=16, help="images per forward pass")
    score.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:1', ...")

    threshold = commands.add_parser(
        "threshold",
        formatter_class=defaults,
        help="choose thresholds on labelled scores; TP/FP/TN/FN, ROC-AUC",
        description="Choose the best-F1, TPR>=R, TNR>=R and midpoint thresholds on --scores (labelled) and report "
        "TP/FP/TN/FN/TPR/TNR and ROC-AUC on --scores and, if given, --test_scores, as a markdown table and a CSV.",
    )
    threshold.add_argument("--scores", required=True, type=Path, help="labelled validation scores (CSV from `score`)")
    threshold.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="CSV with columns image,label (1/defective, 0/good) when --scores has no label column",
    )
    threshold.add_argument("--test_scores", type=Path, default=None, help="labelled test scores to evaluate on")
    threshold.add_argument("--test_labels", type=Path, default=None, help="labels CSV for --test_scores")
    threshold.add_argument("--target_rate", type=float, default=0.95, help="R of the TPR>=R and TNR>=R thresholds")
    threshold.add_argument("--output", required=True, type=Path, help="CSV file to write")
    threshold.add_argument("--model", type=Path, default=None, help="also store the thresholds in MODEL/anomaly.json")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after "--" is a training flag (train_accelerate.py's).
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if extra and args.command != "fit":
        fail(f"{PROG} {args.command}", "arguments after '--' are only for `fit`")
    commands = {"fit": lambda: fit(args, extra), "score": lambda: score(args), "threshold": lambda: threshold(args)}
    _cli.run(f"{PROG} {args.command}", commands[args.command])


# ---------------------------------------------------------------------------------------------------------
# fit


def _link_split(files: list[Path], root: Path, directory: Path) -> list[str]:
    """Symlink (or copy, where links are not allowed) ``files`` into ``directory``; returns their names there."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    names = []
    for file in files:
        name = file.relative_to(root).as_posix().replace("/", "__")
        try:
            (directory / name).symlink_to(file.resolve())
        except OSError:
            shutil.copy2(file, directory / name)
        names.append(name)
    return names


def _usable_images(files, resolution: int, readable: list[Path] | None = None):
    """Yield the images of ``files`` that decode, warning about (and skipping) the others; the files that decode
    are appended to ``readable`` when given."""
    from .. import anomaly
    from ..images import BadImageError

    for file in files:
        try:
            image = anomaly.load_image(file, resolution)
        except BadImageError as error:
            print(f"warning: skipped {file} ({error.reason}): {error}", file=sys.stderr)
            continue
        if readable is not None:
            readable.append(file)
        yield image


def fit(args: argparse.Namespace, extra: list[str]) -> None:
    from .. import anomaly, training
    from ..model import PConvUNet

    layer_size = args.layer_size if args.layer_size is not None else max(1, int(math.log2(args.resolution)) - 1)
    feature_network, feature_weights, mse_weight, note = anomaly.resolve_features(
        args.feature_network, args.feature_weights, args.mse_weight
    )
    if args.max_train_steps < 1 or args.train_batch_size < 1:
        raise CliError("--max_train_steps and --train_batch_size must be >= 1")
    if args.resolution % 2**layer_size:
        raise CliError(f"--resolution {args.resolution} must be a multiple of 2**layer_size = {2**layer_size}")
    output_dir: Path = args.output_dir
    if output_dir.resolve() == args.train_dir.resolve() or args.train_dir.resolve() in output_dir.resolve().parents:
        raise CliError("--output_dir must not be inside --train_dir (the split folders would become training data)")

    # 1. Everything that can fail cheaply fails before training: config values and the feature network.
    config = anomaly.AnomalyConfig(
        mode=args.mode,
        resolution=args.resolution,
        mse_weight=mse_weight,
        feature_network=feature_network,
        feature_weights=feature_weights,
        grid_cells=args.grid_cells,
        grid_period=args.grid_period,
    )
    probe = PConvUNet(
        layer_size=layer_size,
        base_channels=1,
        sample_size=args.resolution,
        conv_type="plain" if args.mode == "autoencoder" else "partial",
    )
    anomaly.AnomalyDetector(probe, config)  # loads the feature network: a missing checkpoint stops here
    if note:
        print(f"note: {note}", file=sys.stderr)

    # The training settings: those fit owns (they must agree with anomaly.json and the split), the rest from
    # the flags after "--", then training's own defaults. Checked now, before any work.
    owned = {  # setting: (value, the fit flag it comes from)
        "train_data": (str(output_dir / "split" / "train"), "--train_dir"),
        "validation_data": (str(output_dir / "split" / "validation"), "--train_dir"),
        "output_dir": (str(output_dir), "--output_dir"),
        "resolution": (args.resolution, "--resolution"),
        "layer_size": (layer_size, "--layer_size"),
        "conv_type": ("plain" if args.mode == "autoencoder" else "partial", "--mode"),
        "mask_source": (
            "none" if args.mode == "autoencoder" else f"grid:{args.grid_cells}:{args.grid_period}",
            "--mode and --grid_cells",
        ),
        "init_from": (None, "nothing: fit always trains from scratch"),
    }
    fit_defaults = {
        "base_channels": args.base_channels,
        "train_transform": "resize_flip",
        "synthetic_defects": args.synthetic_defects,
        "synthetic_defect_kinds": args.synthetic_defect_kinds,
        "perceptual_network": "none",
        "max_train_steps": args.max_train_steps,
        "train_batch_size": args.train_batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "num_validation_images": 8,
        "validation_steps": args.max_train_steps,
        "min_image_side": 1,
        "report_to": "none",
        "mixed_precision": args.mixed_precision,
    }
    settings = training.parse_args(extra, defaults={**{k: v for k, (v, _) in owned.items()}, **fit_defaults})
    for name, (value, source) in owned.items():
        if getattr(settings, name) != value:
            raise CliError(f"--{name} after '--' is set by fit itself; use fit's {source}")

    # 2. Deterministic split; dataset statistics, once, at the training resolution. Files that cannot be read
    # are named and left out of the split; with no readable image on either side, fit stops before writing.
    files = anomaly.list_images(args.train_dir)
    train_files, validation_files = anomaly.split_files(files, args.validation_fraction, args.seed)
    readable: list[Path] = []
    try:
        config.mean, config.std = anomaly.channel_statistics(
            _usable_images(tqdm(train_files, desc="mean/std", unit="img"), args.resolution, readable)
        )
    except ValueError:
        raise CliError(f"none of the {len(train_files)} training images can be read (see the warnings above)") from None
    train_files = readable
    validation_files = [f for f in validation_files if next(_usable_images([f], args.resolution), None) is not None]
    if not validation_files:
        raise CliError("none of the validation images can be read (see the warnings above)")
    output_dir.mkdir(parents=True, exist_ok=True)
    split = {
        "seed": args.seed, "validation_fraction": args.validation_fraction,
        "train": _link_split(train_files, args.train_dir, output_dir / "split" / "train"),
        "validation": _link_split(validation_files, args.train_dir, output_dir / "split" / "validation"),
    }  # fmt: skip
    (output_dir / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    print(f"{len(train_files)} training and {len(validation_files)} validation images (seed {args.seed})")

    # 3. Train.
    settings.num_validation_images = min(settings.num_validation_images, len(validation_files))
    result = training.train(settings)

    # 4. Calibrate on the clean validation images; score them with and without synthetic defects.
    detector = anomaly.AnomalyDetector(PConvUNet.from_pretrained(output_dir), config)
    names, clean = [], []
    for name, file in zip(split["validation"], validation_files):
        image = next(_usable_images([file], args.resolution), None)
        if image is not None:
            names.append(name)
            clean.append(image)
    if not clean:
        raise CliError("no usable validation image to calibrate on")
    clean = torch.stack(clean)
    anomaly.calibrate(detector, clean)
    painter = anomaly.DefectPainter(anomaly.DEFECT_KINDS)
    rng = np.random.default_rng([args.seed, 1])
    defected = torch.stack([painter(image, rng) for image in clean])
    clean_scores = detector(clean).score.tolist()
    defect_scores = detector(defected).score.tolist()
    rows = [{"image": f"split/validation/{n}", "score": s, "label": 0} for n, s in zip(names, clean_scores)]
    rows += [{"image": f"synthetic-defect/{n}", "score": s, "label": 1} for n, s in zip(names, defect_scores)]
    _write_csv(output_dir / "validation_scores.csv", rows, ["image", "score", "label"])
    synthetic_auc = anomaly.roc_auc(clean_scores + defect_scores, [0] * len(clean) + [1] * len(defected))

    config.training = {
        "train_dir": str(args.train_dir), "num_train": len(train_files), "num_validation": len(validation_files),
        "seed": args.seed, "steps": result["global_step"], "layer_size": layer_size,
        "base_channels": args.base_channels, "synthetic_defects": args.synthetic_defects,
        "synthetic_defect_kinds": args.synthetic_defect_kinds, "train_transform": "resize_flip",
        "validation_clean_score_mean": float(np.mean(clean_scores)),
        "validation_synthetic_defect_roc_auc": synthetic_auc,
    }  # fmt: skip
    path = config.save(output_dir)
    print(
        f"wrote {path}: clean validation score mean {np.mean(clean_scores):.3f} (1 = typical by construction), "
        f"ROC-AUC against synthetic defects {synthetic_auc:.3f}; labelled scores in "
        f"{output_dir / 'validation_scores.csv'}"
    )


# ---------------------------------------------------------------------------------------------------------
# score


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def score(args: argparse.Namespace) -> None:
    from .. import anomaly

    labelled = args.good_dir is not None or args.defect_dir is not None
    if (args.images is None) == (not labelled):
        raise CliError("give either --images DIR, or --good_dir and/or --defect_dir")
    if args.batch_size < 1:
        raise CliError(f"--batch_size must be >= 1, got {args.batch_size}")
    sources = [(args.images, None, "")] if args.images is not None else [
        (folder, label, prefix) for folder, label, prefix in
        ((args.good_dir, 0, "good"), (args.defect_dir, 1, "defect")) if folder is not None
    ]  # fmt: skip
    jobs = []  # (path, label, heat-map file)
    for folder, label, prefix in sources:
        if args.heatmaps is not None and _inside(args.heatmaps, folder):
            raise CliError(f"--heatmaps {args.heatmaps} must not be (inside) the input folder {folder}")
        for path in anomaly.list_images(folder):
            heatmap_name = Path(prefix) / path.relative_to(folder).with_suffix(".png")
            jobs.append((path, label, heatmap_name))

    check_output_file(args.output, [folder for folder, _, _ in sources])
    if args.heatmaps is not None and args.heatmaps.exists() and not args.heatmaps.is_dir():
        raise CliError(f"--heatmaps {args.heatmaps} is a file; name a folder")
    detector = anomaly.AnomalyDetector.from_pretrained(args.model, device=parse_device(args.device))
    threshold = _resolve_threshold(args.threshold, detector.config)

    rows, failures = [], {}
    progress = tqdm(total=len(jobs), desc="score", unit="img")
    by_path = {path: (label, heatmap_name) for path, label, heatmap_name in jobs}
    for batch_paths, maps, images in detector.score_files(list(by_path), args.batch_size, failures=failures):
        for i, path in enumerate(batch_paths):
            label, heatmap_name = by_path[path]
            row: dict[str, Any] = {
                "image": str(path), "score": maps.score[i].item(), "mse": maps.mse[i].item(),
                "perceptual": maps.perceptual[i].item(),
            }  # fmt: skip
            if label is not None:
                row["label"] = label
            if threshold is not None:
                row["defective"] = int(row["score"] >= threshold)
            rows.append(row)
            if args.heatmaps is not None:
                target = args.heatmaps / heatmap_name
                target.parent.mkdir(parents=True, exist_ok=True)
                panel = heatmap_panel(images[i], maps.reconstruction[i], maps.heatmap[i], detector.config.heatmap_max)
                panel.save(target)
        progress.update(len(batch_paths))
    progress.close()
    if not rows:
        raise CliError(f"none of the {len(jobs)} images can be read: {_listed(failures)}")

    columns = list(SCORE_COLUMNS) + (["label"] if labelled else []) + (["defective"] if threshold is not None else [])
    _write_csv(args.output, rows, columns)
    scores = [row["score"] for row in rows]
    summary = f"scored {len(rows)} images: mean {np.mean(scores):.4f}, max {np.max(scores):.4f}"
    if labelled and {row["label"] for row in rows} == {0, 1}:
        summary += f"; ROC-AUC {anomaly.roc_auc(scores, [row['label'] for row in rows]):.4f}"
    if threshold is not None:
        summary += f"; {sum(row['defective'] for row in rows)} at or above threshold {threshold:.6g}"
    print(f"{summary}; wrote {args.output}" + (f" and heat maps to {args.heatmaps}" if args.heatmaps else ""))
    if failures:
        raise CliError(f"{len(failures)} image(s) could not be read and are not in {args.output}: {_listed(failures)}")


def _listed(failures: dict[Path, str]) -> str:
    return "".join(f"\n  {path}: {reason}" for path, reason in failures.items())


def check_output_file(path: Path, inputs: list[Path] = ()) -> None:
    """An output file can be written: not a folder, not inside an input folder, its folder creatable."""
    if path.is_dir():
        raise CliError(f"--output {path} is a folder; name a CSV file")
    for folder in inputs:
        if _inside(path, folder):
            raise CliError(f"--output {path} must not be inside the input folder {folder}")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CliError(f"--output {path}: {parent} is a file, not a folder")


def _resolve_threshold(value: str | None, config) -> float | None:
    if value is None:
        return None
    if value in config.thresholds:
        return float(config.thresholds[value])
    try:
        number = float(value)
    except ValueError:
        known = ", ".join(config.thresholds) or "none yet: run `pconv-anomaly threshold --model ...`"
        raise CliError(f"--threshold {value!r} is neither a number nor a stored threshold ({known})") from None
    if not math.isfinite(number):
        raise CliError(f"--threshold must be finite, got {value}")
    return number


# ---------------------------------------------------------------------------------------------------------
# threshold


def _parse_label(value: str, where: str) -> int:
    text = value.strip().lower()
    if text in _POSITIVE_LABELS:
        return 1
    if text in _NEGATIVE_LABELS:
        return 0
    raise CliError(f"{where}: label {value!r} is not 1/defective or 0/good")


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CliError(f"{path} does not exist")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise CliError(f"{path} has no rows")
    return rows


def read_labelled_scores(scores_path: Path, labels_path: Path | None) -> tuple[list[float], list[int]]:
    """Scores and 0/1 labels from a `score` CSV, labels from its ``label`` column or from a labels CSV
    (columns image, label) matched by the image path, else by file name when those are unique."""
    rows = _read_csv(scores_path)
    if "image" not in rows[0] or "score" not in rows[0]:
        raise CliError(f"{scores_path} needs the columns image and score (the output of `pconv-anomaly score`)")
    scores = []
    for number, row in enumerate(rows, start=2):
        try:
            scores.append(float(row["score"]))
        except ValueError:
            raise CliError(f"{scores_path}, line {number}: score {row['score']!r} is not a number") from None
        if not math.isfinite(scores[-1]):
            raise CliError(f"{scores_path}, line {number}: score {row['score']!r} is not finite")
    if labels_path is None:
        if "label" not in rows[0]:
            raise CliError(f"{scores_path} has no label column: pass --labels, or score with --good_dir/--defect_dir")
        labels = [_parse_label(row["label"], f"{scores_path}, line {n}") for n, row in enumerate(rows, start=2)]
        return scores, labels

    label_rows = _read_csv(labels_path)
    if "image" not in label_rows[0] or "label" not in label_rows[0]:
        raise CliError(f"{labels_path} needs the columns image and label")
    by_path = {row["image"]: _parse_label(row["label"], f"{labels_path}") for row in label_rows}
    images = [row["image"] for row in rows]
    if all(image in by_path for image in images):
        return scores, [by_path[image] for image in images]
    by_name = {Path(image).name: label for image, label in by_path.items()}
    names = [Path(image).name for image in images]
    if len(by_name) == len(by_path) and len(set(names)) == len(names) and all(n in by_name for n in names):
        return scores, [by_name[n] for n in names]
    missing = [image for image in images if image not in by_path and Path(image).name not in by_name]
    raise CliError(f"{labels_path} has no label for {len(missing)} image(s) of {scores_path}, e.g. {missing[:3]}")


def threshold(args: argparse.Namespace) -> None:
    from .. import anomaly

    if args.test_labels is not None and args.test_scores is None:
        raise CliError("--test_labels needs --test_scores")
    check_output_file(args.output)
    config = anomaly.AnomalyConfig.load(args.model) if args.model is not None else None
    scores, labels = read_labelled_scores(args.scores, args.labels)
    chosen = anomaly.select_thresholds(scores, labels, args.target_rate)
    rows = anomaly.threshold_report(chosen, scores, labels, split="validation")
    if args.test_scores is not None:
        test_scores, test_labels = read_labelled_scores(args.test_scores, args.test_labels)
        rows += anomaly.threshold_report(chosen, test_scores, test_labels, split="test")
    print(anomaly.format_markdown(rows))
    _write_csv(args.output, rows, list(rows[0]))
    print(f"wrote {args.output}")
    if config is not None:
        config.thresholds = chosen
        print(f"stored the thresholds in {config.save(args.model)}")


# ---------------------------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
