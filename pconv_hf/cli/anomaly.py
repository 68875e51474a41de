"""``pconv-anomaly``: reconstruction-based anomaly detection with a PConvUNet (see docs/anomaly.md).

    pconv-anomaly fit --train_dir clean/ --output_dir OUT --mode inpainting --max_train_steps 5000
    pconv-anomaly score --model OUT --good_dir val/good --defect_dir val/defect --output val.csv
    pconv-anomaly score --model OUT --images new/ --output scores.csv --heatmaps heatmaps/
    pconv-anomaly threshold --scores val.csv --test_scores test.csv --output thresholds.csv --model OUT

Higher score = more anomalous; an image is predicted defective iff score >= threshold; label 1 = defective.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..anomaly.config import AnomalyConfig
from ..anomaly.detector import AnomalyDetector, find_images
from ..anomaly.tables import SCORE_COLUMNS, read_labelled_scores, write_csv
from ..anomaly.thresholds import format_markdown, roc_auc, select_thresholds, threshold_report
from ..runtime import parse_device
from ..visualize import heatmap_panel
from . import common
from .common import CliError, HelpFormatter, fail, int_range

PROG = "pconv-anomaly"


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
    common.run(f"{PROG} {args.command}", commands[args.command])


# ---------------------------------------------------------------------------------------------------------
# fit


def fit(args: argparse.Namespace, extra: list[str]) -> None:
    """``fit``'s flags (each a :class:`~pconv_hf.anomaly.fitting.FitConfig` field of the same name) as a
    ``FitConfig``, and the workflow run with it."""
    # fit trains through pconv_hf.training, which needs the training extra (accelerate, datasets, heavy and
    # optional): imported when fit runs, so that score and threshold work with the package alone.
    from ..anomaly.fitting import FitConfig
    from ..anomaly.fitting import fit as fit_detector

    flags = [field.name for field in dataclasses.fields(FitConfig) if field.name != "training_args"]
    fit_detector(FitConfig(**{flag: getattr(args, flag) for flag in flags}, training_args=extra))


# ---------------------------------------------------------------------------------------------------------
# score


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def score(args: argparse.Namespace) -> None:
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
        for path in find_images(folder):
            heatmap_name = Path(prefix) / path.relative_to(folder).with_suffix(".png")
            jobs.append((path, label, heatmap_name))

    check_output_file(args.output, [folder for folder, _, _ in sources])
    if args.heatmaps is not None and args.heatmaps.exists() and not args.heatmaps.is_dir():
        raise CliError(f"--heatmaps {args.heatmaps} is a file; name a folder")
    detector = AnomalyDetector.from_pretrained(args.model, device=parse_device(args.device))
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
    write_csv(args.output, rows, columns)
    scores = [row["score"] for row in rows]
    summary = f"scored {len(rows)} images: mean {np.mean(scores):.4f}, max {np.max(scores):.4f}"
    if labelled and {row["label"] for row in rows} == {0, 1}:
        summary += f"; ROC-AUC {roc_auc(scores, [row['label'] for row in rows]):.4f}"
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


def threshold(args: argparse.Namespace) -> None:
    if args.test_labels is not None and args.test_scores is None:
        raise CliError("--test_labels needs --test_scores")
    check_output_file(args.output)
    config = AnomalyConfig.load(args.model) if args.model is not None else None
    scores, labels = read_labelled_scores(args.scores, args.labels)
    chosen = select_thresholds(scores, labels, args.target_rate)
    rows = threshold_report(chosen, scores, labels, split="validation")
    if args.test_scores is not None:
        test_scores, test_labels = read_labelled_scores(args.test_scores, args.test_labels)
        rows += threshold_report(chosen, test_scores, test_labels, split="test")
    print(format_markdown(rows))
    write_csv(args.output, rows, list(rows[0]))
    print(f"wrote {args.output}")
    if config is not None:
        config.thresholds = chosen
        print(f"stored the thresholds in {config.save(args.model)}")


if __name__ == "__main__":
    main()
