"""The anomaly scorer's ROC-AUC with ImageNet, random and no features, side by side in one run.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/bench_anomaly.py [--seeds 0 1 2 3 4] \
        [--scorers autoencoder-stains autoencoder inpainting] [--mse_weights 0.5]

The protocol of docs/anomaly.md ("Measured"), with the tiles and pasted defects of tests/test_anomaly.py: 64 px
tiles of scikit-image's grass, gravel and brick, one tiny model for all three, ROC-AUC per texture and pooled.

The feature term is a scoring-time choice: ``fit`` trains the L1 terms only, whatever ``--feature_network`` says.
So each scorer is fitted once per seed (``--feature_network none``) and that one model is scored with every feature
network: its ``anomaly.json`` with another network / weights, recalibrated on the same clean validation tiles (as
``fit`` does). The calibrated scales are the two terms' means, which do not depend on lambda, so the score at
every lambda is ``combine_maps`` of each image's two term means (the mean of the heat map is linear in them):
each network runs once, however many lambdas. Lambda 1 is the pixel term alone, i.e. ``--feature_network none``.
Prints one line per fit and setting, then a markdown table after each scorer: the mean over the seeds, the worst
seed in brackets.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test helpers: tests/test_anomaly.py

from pconv_hf import anomaly  # noqa: E402
from pconv_hf.cli import anomaly as anomaly_cli  # noqa: E402
from tests.test_anomaly import TEXTURES, TINY, make_textures, texture_aucs  # noqa: E402

# The rows of docs/anomaly.md's table: mode, steps, extra fit flags.
SCORERS = {
    "autoencoder-stains": ("autoencoder", 500, ["--synthetic_defects", "0.5", "--synthetic_defect_kinds", "stain"]),
    "autoencoder": ("autoencoder", 500, []),
    "inpainting": ("inpainting", 1000, []),
}
FEATURES = (("alexnet", "imagenet"), ("vgg16", "imagenet"), ("alexnet", "random"), ("vgg16", "random"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="fit seeds")
    parser.add_argument("--scorers", nargs="+", choices=list(SCORERS), default=["autoencoder-stains"])
    parser.add_argument(
        "--mse_weights",
        type=float,
        nargs="+",
        default=[0.5],
        help="lambda values of the feature rows (0.5: fit's default)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the docs' table: 1)")
    return parser.parse_args()


def fit_model(out: Path, clean_dir: Path, scorer: str, seed: int) -> tuple[anomaly.AnomalyDetector, float]:
    """``pconv-anomaly fit`` as the tests run it; returns the detector and the fit's wall time in seconds."""
    mode, steps, extra = SCORERS[scorer]
    start = time.perf_counter()
    anomaly_cli.main(
        [
            "fit",
            "--train_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--mode",
            mode,
            *TINY,
            "--max_train_steps",
            str(steps),
            "--seed",
            str(seed),
            "--feature_network",
            "none",
            *extra,
        ]
    )
    seconds = time.perf_counter() - start
    # Accelerator state is a process-wide singleton: the next fit starts from a clean one (as the tests' fixture).
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    return anomaly.AnomalyDetector.from_pretrained(out), seconds


def scores_by_lambda(
    fitted: anomaly.AnomalyDetector,
    validation: torch.Tensor,
    images: torch.Tensor,
    network: str,
    weights: str,
    mse_weights: list[float],
) -> dict[float, torch.Tensor]:
    """Scores of ``images`` at each lambda with this feature network, calibrated on the clean ``validation``."""
    config = dataclasses.replace(fitted.config, feature_network=network, feature_weights=weights, mse_weight=0.5)
    detector = anomaly.AnomalyDetector(fitted.model, config)
    anomaly.calibrate(detector, validation)
    maps = detector(images)
    mse, perceptual = maps.mse.view(-1, 1, 1, 1), maps.perceptual.view(-1, 1, 1, 1)
    return {lam: anomaly.combine_maps(mse, perceptual, dataclasses.replace(config, mse_weight=lam)).flatten()
            for lam in mse_weights}  # fmt: skip


def summary(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ({min(values):.2f})" if len(values) > 1 else f"{values[0]:.2f}"


def print_table(results: dict, fit_seconds: dict[str, list[float]], seeds: list[int], threads: int) -> None:
    print(
        f"\nROC-AUC, mean over fit seeds {','.join(map(str, seeds))} (worst seed in brackets); "
        f"torch threads {threads}\n"
    )
    print("| Scorer | Steps | Features | lambda | Brick | Grass | Gravel | Per-texture mean | Pooled | Fit time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (scorer, features, lam), runs in results.items():
        cells = [f"{np.mean([r[t] for r in runs]):.2f}" for t in ("brick", "grass", "gravel")]
        cells += [summary([r["mean"] for r in runs]), summary([r["pooled"] for r in runs])]
        print(
            f"| {scorer} | {SCORERS[scorer][1]} | {features} | {lam:g} | "
            + " | ".join(cells)
            + f" | ~{np.mean(fit_seconds[scorer]):.0f} s |",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    # (scorer, features, lambda) -> one {texture: auc, "mean": ..., "pooled": ...} per seed.
    results: dict[tuple[str, str, float], list[dict[str, float]]] = {}
    fit_seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        textures = make_textures(Path(tmp) / "clean")
        clean = torch.stack([image for _, image in textures["test_clean"]])
        images = torch.cat([clean, torch.stack([image for _, image in textures["test_defective"]])])
        for scorer in args.scorers:
            for seed in args.seeds:
                out = Path(tmp) / f"{scorer}-{seed}"
                fitted, seconds = fit_model(out, textures["clean_dir"], scorer, seed)
                fit_seconds.setdefault(scorer, []).append(seconds)
                files = anomaly.find_images(out / "split" / "validation")
                validation = torch.stack([anomaly.load_image(f, fitted.config.resolution) for f in files])
                for index, (network, weights) in enumerate(FEATURES):
                    lambdas = ([1.0] if index == 0 else []) + args.mse_weights
                    for lam, scores in scores_by_lambda(fitted, validation, images, network, weights, lambdas).items():
                        features = "none" if lam == 1 else f"{network} {weights}"
                        aucs = texture_aucs(scores[: len(clean)].tolist(), scores[len(clean) :].tolist(), textures)
                        aucs["mean"] = float(np.mean([aucs[t] for t in TEXTURES]))
                        results.setdefault((scorer, features, lam), []).append(aucs)
                        print(
                            f"{scorer} seed {seed} ({seconds:.0f} s fit) {features} lambda {lam:g}: "
                            + " ".join(f"{k} {v:.3f}" for k, v in aucs.items()),
                            flush=True,
                        )
            print_table({k: v for k, v in results.items() if k[0] == scorer}, fit_seconds, args.seeds, args.threads)
    if len(args.scorers) > 1:
        print_table(results, fit_seconds, args.seeds, args.threads)


if __name__ == "__main__":
    main()
