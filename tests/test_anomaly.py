"""pconv_hf.anomaly and ``pconv-anomaly``: thresholds and ROC-AUC on hand-made scores, the inpainting grid, the
scoring arithmetic, the training additions, and tiny models trained on real texture photos (scikit-image's grass,
gravel and brick) that must rank tiles with pasted defects above clean ones.

Tiny models run on one thread: on 2 cores shared with other work, a second OpenMP thread mostly waits.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pconv_hf import PConvUNet, anomaly
from pconv_hf.anomaly.fitting import FitConfig
from pconv_hf.anomaly.fitting import fit as fit_detector
from pconv_hf.cli import anomaly as anomaly_cli
from pconv_hf.data import TrainingStream, load_examples, rank_stream
from pconv_hf.feature_weights import feature_weights_path
from pconv_hf.images import to_tensor
from pconv_hf.losses import FeatureExtractor
from pconv_hf.masks import grid_masks, make_mask_source

TEXTURES = {"grass": (0.55, 1.0, 0.45), "gravel": (1.0, 0.92, 0.8), "brick": (1.0, 0.62, 0.5)}  # RGB tints
TILE = 64
TINY = ["--resolution", "64", "--layer_size", "5", "--base_channels", "8", "--mixed_precision", "bf16"]

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------
# Real texture photos with pasted defects


def texture_tiles() -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """64 px RGB tiles of the three 512 px textures (tinted, as they are greyscale): rows 0-5 of each 8 x 8 grid
    for training (144 tiles), rows 6-7 for testing (48 tiles), so no test pixel is ever trained on."""
    from skimage import data

    train, test = [], []
    for name, tint in TEXTURES.items():
        grey = getattr(data, name)().astype(np.float32) / 255
        rgb = (np.clip(grey[..., None] * np.array(tint), 0, 1) * 255 + 0.5).astype(np.uint8)
        for row in range(8):
            for col in range(8):
                tile = rgb[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
                (train if row < 6 else test).append((f"{name}_{row}{col}", tile))
    return train, test


def paste_defect(tile: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A circle (radius 4-8 px) or a scratch (1-2 px wide, 20-45 px long), bright, dark or saturated.

    Written here independently of ``anomaly.paint_defect``, so the test does not grade the package on its own
    defect generator.
    """
    out = tile.copy()
    style = rng.integers(3)
    if style == 0:
        colour = rng.uniform(220, 255, 3)
    elif style == 1:
        colour = rng.uniform(0, 40, 3)
    else:
        colour = np.roll([255, rng.uniform(0, 80), 0], rng.integers(3))
    colour = tuple(int(c) for c in colour)
    if kind == "circle":
        radius = int(rng.integers(4, 9))
        center = (int(rng.integers(radius, TILE - radius)), int(rng.integers(radius, TILE - radius)))
        cv2.circle(out, center, radius, colour, -1, cv2.LINE_AA)
    else:
        length, angle = rng.uniform(20, 45), rng.uniform(0, np.pi)
        start = rng.uniform(10, TILE - 10, 2)
        end = np.clip(start + length * np.array([np.cos(angle), np.sin(angle)]), 0, TILE - 1)
        thickness = int(rng.integers(1, 3))
        cv2.line(out, tuple(int(v) for v in start), tuple(int(v) for v in end), colour, thickness, cv2.LINE_AA)
    return out


def make_textures(clean_dir: Path) -> dict:
    """The training tiles as files in ``clean_dir``; the test tiles clean and, each twice, with a circle and with a
    scratch (the same defects every call). benchmarks/bench_anomaly.py measures on exactly these."""
    train, test = texture_tiles()
    clean_dir.mkdir(parents=True, exist_ok=True)
    for name, tile in train:
        Image.fromarray(tile).save(clean_dir / f"{name}.png")
    rng = np.random.default_rng(100)
    defective = [(name, paste_defect(tile, kind, rng)) for kind in ("circle", "scratch") for name, tile in test]
    return {
        "clean_dir": clean_dir,
        "test_clean": [(name.split("_")[0], to_tensor(Image.fromarray(tile))) for name, tile in test],
        "test_defective": [(name.split("_")[0], to_tensor(Image.fromarray(tile))) for name, tile in defective],
    }


@pytest.fixture(scope="module")
def textures(tmp_path_factory) -> dict:
    return make_textures(tmp_path_factory.mktemp("clean"))


def detection_aucs(detector: anomaly.AnomalyDetector, textures: dict) -> dict[str, float]:
    """ROC-AUC of clean vs defective test tiles, per texture (one product type, as a model is used) and pooled."""
    clean = detector(torch.stack([image for _, image in textures["test_clean"]])).score.tolist()
    defective = detector(torch.stack([image for _, image in textures["test_defective"]])).score.tolist()
    return texture_aucs(clean, defective, textures)


def texture_aucs(clean: list[float], defective: list[float], textures: dict) -> dict[str, float]:
    """``detection_aucs`` from the scores of ``textures["test_clean"]`` and ``textures["test_defective"]``."""
    aucs = {}
    for texture in TEXTURES:
        good = [s for (t, _), s in zip(textures["test_clean"], clean) if t == texture]
        bad = [s for (t, _), s in zip(textures["test_defective"], defective) if t == texture]
        aucs[texture] = anomaly.roc_auc(good + bad, [0] * len(good) + [1] * len(bad))
    aucs["pooled"] = anomaly.roc_auc(clean + defective, [0] * len(clean) + [1] * len(defective))
    return aucs


# ---------------------------------------------------------------------------------------------------------
# Thresholds and ROC-AUC: pure functions on hand-made scores

GOOD = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
DEFECTIVE = [0.75, 0.95, 1.1, 1.2, 1.3]


def test_select_thresholds_on_hand_made_scores():
    scores, labels = GOOD + DEFECTIVE, [0] * len(GOOD) + [1] * len(DEFECTIVE)
    chosen = anomaly.select_thresholds(scores, labels)

    # TPR >= 0.95 of 5 defects means all 5: the highest such threshold is the lowest defect score, 0.75.
    # TNR >= 0.95 of 10 good images means all 10: the lowest threshold above every good score is 1.1.
    # F1 = 2TP / (2TP + FP + FN) at each candidate: 0.75 -> 10/13, 0.8 -> 8/12, 0.9 -> 8/11, 0.95 -> 8/10,
    # 1.0 -> 6/9, 1.1 -> 6/8: the best is 0.8 at 0.95.
    assert chosen == {"best_f1": 0.95, "tpr>=0.95": 0.75, "tnr>=0.95": 1.1, "midpoint": pytest.approx(0.925)}

    rows = {row["name"]: row for row in anomaly.threshold_report(chosen, scores, labels, split="validation")}
    counts = {name: (row["TP"], row["FP"], row["TN"], row["FN"]) for name, row in rows.items()}
    assert counts == {
        "best_f1": (4, 1, 9, 1),  # flagged: 0.95 1.1 1.2 1.3 and the good 1.0; missed: 0.75
        "tpr>=0.95": (5, 3, 7, 0),  # good 0.8, 0.9, 1.0 are false alarms
        "tnr>=0.95": (3, 0, 10, 2),  # 0.75 and 0.95 are missed
        "midpoint": (4, 1, 9, 1),  # 0.925: the same split as 0.95
    }
    assert rows["tpr>=0.95"]["TPR"] == 1.0 and rows["tpr>=0.95"]["TNR"] == 0.7
    assert rows["tnr>=0.95"]["TPR"] == 0.6 and rows["tnr>=0.95"]["TNR"] == 1.0
    assert rows["best_f1"]["F1"] == pytest.approx(0.8)
    # Pairs (defect, good) with the defect higher: 7 + 9 + 10 + 10 + 10 = 46 of 50.
    assert all(row["ROC_AUC"] == pytest.approx(0.92) for row in rows.values())

    table = anomaly.format_markdown(list(rows.values()))
    assert table.splitlines()[0].startswith("| name | threshold | split | TP | FP | TN | FN | TPR | TNR")
    assert "| tnr>=0.95 | 1.1 | validation | 3 | 0 | 10 | 2 | 0.600 | 1.000 |" in table


def test_select_thresholds_other_rate_and_perfect_separation():
    # A lower target rate lets one defect go (TPR 4/5 = 0.8) and one good image be flagged (TNR 9/10 = 0.9).
    chosen = anomaly.select_thresholds(GOOD + DEFECTIVE, [0] * 10 + [1] * 5, target_rate=0.8)
    assert chosen["tpr>=0.8"] == 0.95 and chosen["tnr>=0.8"] == 0.9
    # Separable scores: every rule lands on the lowest defect score and the counts are perfect.
    chosen = anomaly.select_thresholds([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    assert set(chosen.values()) == {0.3}
    assert anomaly.confusion([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], 0.3) == anomaly.Confusion(tp=2, fp=0, tn=2, fn=0)


def test_roc_auc_counts_ties_as_half_and_matches_torchmetrics():
    assert anomaly.roc_auc([0.5, 0.5], [0, 1]) == 0.5
    # Defect 0.5 beats good 0.1 and ties good 0.5 (1.5); defect 0.9 beats both (2): 3.5 / 4.
    assert anomaly.roc_auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == 0.875
    assert anomaly.roc_auc([3.0, 2.0, 1.0], [0, 1, 1]) == 0.0

    from torchmetrics.functional.classification import binary_auroc

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 300) / 10  # many ties
    labels = (rng.random(300) < scores / 3).astype(int)
    expected = binary_auroc(torch.tensor(scores), torch.tensor(labels)).item()
    assert anomaly.roc_auc(scores, labels) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0, 0], "need both good"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], r"0 \(good\) or 1"),
        ([0.1, 0.2, 0.3], [0, 1], "equal length"),
    ],
)
def test_threshold_inputs_are_checked(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        anomaly.select_thresholds(scores, labels)
    with pytest.raises(ValueError, match=message):
        anomaly.roc_auc(scores, labels)


# ---------------------------------------------------------------------------------------------------------
# Building blocks


@pytest.mark.parametrize(("size", "cells", "period"), [(64, 8, 2), (64, 5, 2), (48, 9, 3)])
def test_grid_masks_make_every_pixel_a_hole_exactly_once(size, cells, period):
    masks = torch.from_numpy(grid_masks(size, size, cells, period))
    assert masks.shape == (period**2, 1, size, size)
    assert torch.equal((1 - masks).sum(dim=0), torch.ones(1, size, size))
    assert all(0 < (1 - m).mean() < 0.5 for m in masks)
    if period == 2 and cells == 8:
        # The 8 x 8 px cell at row 1, column 1 is a hole in pass 3; its eight neighbours are valid there.
        assert masks[3, 0, 8:16, 8:16].sum() == 0
        assert masks[3, 0, 0:24, 0:24].sum() == 24 * 24 - 64


def test_grid_masks_reject_bad_layouts():
    with pytest.raises(ValueError, match="period"):
        grid_masks(64, 64, 8, 1)
    with pytest.raises(ValueError, match="cells"):
        grid_masks(64, 64, 1, 2)
    with pytest.raises(ValueError, match="cells"):
        grid_masks(16, 16, 32, 2)


def test_inpainting_prediction_of_a_cell_ignores_the_cell_itself():
    """The point of the inpainting mode: a pixel's prediction comes from its surroundings only, so whatever is in
    a cell (a defect) cannot leak into its own prediction."""
    torch.manual_seed(0)
    model = PConvUNet(layer_size=5, base_channels=8, sample_size=64).eval()
    image = torch.rand(1, 3, 64, 64)
    defected = image.clone()
    defected[..., 16:24, 24:32] = 1.0  # exactly cell (2, 3) of the 8 x 8 grid
    before = anomaly.reconstruct(model, image, "inpainting", cells=8, period=2)
    after = anomaly.reconstruct(model, defected, "inpainting", cells=8, period=2)
    torch.testing.assert_close(after[..., 16:24, 24:32], before[..., 16:24, 24:32])
    assert not torch.allclose(after[..., 24:32, 24:32], before[..., 24:32, 24:32])  # the neighbours see it


def test_split_is_deterministic_disjoint_and_ninety_ten(tmp_path):
    files = [tmp_path / f"{i:03d}.png" for i in range(50)]
    train, validation = anomaly.split_files(files, 0.1, seed=3)
    assert len(validation) == 5 and len(train) == 45
    assert sorted(train + validation) == sorted(files)
    assert (train, validation) == anomaly.split_files(list(reversed(files)), 0.1, seed=3)
    assert validation != anomaly.split_files(files, 0.1, seed=4)[1]
    with pytest.raises(ValueError, match="at least 2"):
        anomaly.split_files(files[:1])


def test_channel_statistics_match_numpy():
    images = [torch.rand(3, 8, 8), torch.rand(3, 16, 4) * 0.5]
    mean, std = anomaly.channel_statistics(images)
    pixels = np.concatenate([i.flatten(1).numpy() for i in images], axis=1).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=1e-9)


def test_config_round_trip_and_validation(tmp_path):
    config = anomaly.AnomalyConfig(
        mode="autoencoder",
        resolution=64,
        mse_weight=0.3,
        feature_network="alexnet",
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
        thresholds={"best_f1": 1.5},
    )
    assert config.blur_sigma == 1.0  # resolution / 64
    config.save(tmp_path)
    assert anomaly.AnomalyConfig.load(tmp_path) == config
    assert json.loads((tmp_path / "anomaly.json").read_text())["mse_weight"] == 0.3

    with pytest.raises(ValueError, match="mode"):
        anomaly.AnomalyConfig(mode="diffusion")
    with pytest.raises(ValueError, match="lambda"):
        anomaly.AnomalyConfig(mse_weight=1.5)
    with pytest.raises(ValueError, match="set mse_weight"):
        anomaly.AnomalyConfig(feature_network="none", mse_weight=0.5)
    with pytest.raises(ValueError, match="no anomaly.json"):
        anomaly.AnomalyConfig.load(tmp_path / "missing")
    (tmp_path / "anomaly.json").write_text(json.dumps({"mode": "autoencoder", "colour": "red"}))
    with pytest.raises(ValueError, match="unknown keys"):
        anomaly.AnomalyConfig.load(tmp_path)


def test_score_is_the_weighted_heatmap_mean_and_zero_for_a_perfect_reconstruction():
    torch.manual_seed(0)
    model = PConvUNet(layer_size=5, base_channels=8, sample_size=64, conv_type="plain")
    config = anomaly.AnomalyConfig(
        mode="autoencoder",
        resolution=64,
        mse_weight=0.25,
        feature_network="vgg16",
        feature_weights="random",
        mse_scale=2.0,
        perceptual_scale=0.5,
    )
    detector = anomaly.AnomalyDetector(model, config)
    maps = detector(torch.rand(2, 3, 64, 64))
    assert maps.heatmap.shape == (2, 1, 64, 64) and maps.reconstruction.shape == (2, 3, 64, 64)
    torch.testing.assert_close(maps.score, maps.heatmap.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(maps.score, 0.25 * maps.mse / 2.0 + 0.75 * maps.perceptual / 0.5)
    assert (maps.perceptual > 0).all() and (maps.mse > 0).all()

    # Identical images give zero in both terms; a local change peaks where it is.
    image = torch.rand(1, 3, 64, 64)
    changed = image.clone()
    changed[..., 40:48, 8:16] = 1 - changed[..., 40:48, 8:16]
    assert anomaly.pixel_error_map(image, image, config.std, 1.0).max() == 0
    assert anomaly.feature_distance_map(detector.feature_extractor, image, image).abs().max() < 1e-6
    for error_map in (
        anomaly.pixel_error_map(image, changed, config.std, 1.0),
        anomaly.feature_distance_map(detector.feature_extractor, image, changed),
    ):
        row, col = divmod(int(error_map.flatten().argmax()), 64)
        assert 36 <= row < 52 and 4 <= col < 20


def test_detector_checks_model_and_images():
    partial = PConvUNet(layer_size=5, base_channels=8, sample_size=64)
    with pytest.raises(ValueError, match="conv_type='plain'"):
        anomaly.AnomalyDetector(
            partial, anomaly.AnomalyConfig(mode="autoencoder", resolution=64, feature_network="none", mse_weight=1.0)
        )
    detector = anomaly.AnomalyDetector(
        partial, anomaly.AnomalyConfig(resolution=64, feature_network="none", mse_weight=1.0)
    )
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\)"):
        detector(torch.rand(1, 3, 32, 32))


def test_defect_painter_is_seeded_and_local():
    image = torch.full((3, 64, 64), 0.5)
    painter = anomaly.DefectPainter(["circle", "scratch", "stain"])
    first = painter(image, np.random.default_rng(1))
    assert torch.equal(first, painter(image, np.random.default_rng(1)))
    for kind in anomaly.DEFECT_KINDS:
        changed = (anomaly.paint_defect(image, np.random.default_rng(2), kind) - image).abs().amax(dim=0) > 0.05
        assert 0 < changed.float().mean() < 0.3, kind
    with pytest.raises(ValueError, match="kinds"):
        anomaly.DefectPainter(["crack"])


def test_training_stream_synthetic_defects_keep_the_clean_target(textures):
    def first_batch(probability: float) -> dict:
        examples = rank_stream(
            load_examples(textures["clean_dir"]), seed=0, shuffle_buffer_size=10, rank=0, world_size=1
        )
        stream = TrainingStream(
            examples,
            resolution=64,
            batch_size=8,
            mask_source=make_mask_source("none", 64),
            seed=0,
            transform="resize_flip",
            defect_probability=probability,
            defect_source=anomaly.DefectPainter() if probability else None,
        )
        return next(iter(stream))

    plain, defected = first_batch(0.0), first_batch(1.0)
    assert "input" not in plain and torch.equal(plain["image"], defected["image"])  # same crops and flips
    assert torch.all(plain["valid_mask"] == 1)
    changed = (defected["input"] - defected["image"]).abs().flatten(1).amax(dim=1) > 0.05
    assert changed.all()
    grid = make_mask_source("grid:8", 64)(np.random.default_rng(0))
    assert grid.shape == (64, 64) and (1 - grid).mean() == 0.25
    with pytest.raises(ValueError, match="grid:CELLS"):
        make_mask_source("grid:x", 64)


def test_fit_config_refuses_bad_settings_as_value_errors(tmp_path):
    # The settings of `pconv-anomaly fit` as code: every bad value is a ValueError naming it, before any work.
    base = {"train_dir": tmp_path / "clean", "output_dir": tmp_path / "out", "mode": "inpainting"}
    config = FitConfig(**base, resolution=64)
    assert config.layer_size == 5 and config.conv_type == "partial" and config.training_args == []
    assert FitConfig(**{**base, "mode": "autoencoder"}).conv_type == "plain"
    for change, message in [
        ({"mode": "diffusion"}, "mode must be one of"),
        ({"feature_network": "resnet"}, "feature_network must be one of"),
        ({"feature_weights": "laion"}, "feature_weights must be one of"),
        ({"max_train_steps": 0}, "--max_train_steps"),
        ({"resolution": 96, "layer_size": 6}, "multiple of 2**layer_size = 64"),
        ({"output_dir": tmp_path / "clean" / "out"}, "must not be inside --train_dir"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            FitConfig(**{**base, **change})
    # Training flags after "--" that argparse cannot read are a ValueError too (not the end of the program).
    (tmp_path / "clean").mkdir()
    for flags, message in [(["--bogus"], "unrecognized arguments: --bogus"), (["--seed", "x"], "invalid int value")]:
        with pytest.raises(ValueError, match=message):
            fit_detector(FitConfig(**base, resolution=64, feature_network="none", training_args=flags))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------
# Detection on real photos: both scorers, briefly trained tiny models.
# Measured over fit seeds 0-4 with these tiles and defects (docs/anomaly.md has the table):
#   autoencoder, 500 steps, synthetic stains: per-texture mean 0.82-0.93 (seed 0: 0.90), pooled 0.77-0.85
#   inpainting, 1000 steps: per-texture mean 0.82-0.83 (seed 0: 0.83), brick 0.91-0.96
# The bounds below sit under the worst seed; a model that does not react to defects scores about 0.5.


def fit(out: Path, clean_dir: Path, mode: str, steps: int, *extra: str) -> anomaly.AnomalyDetector:
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
            *extra,
        ]
    )
    return anomaly.AnomalyDetector.from_pretrained(out)


def test_autoencoder_scores_pasted_defects_higher(textures, tmp_path):
    # Trained to remove synthetic *stains*, a kind the test never pastes: circles and scratches must stand out
    # because the model never learned to reproduce them, not because it learned these very defects.
    detector = fit(
        tmp_path / "ae",
        textures["clean_dir"],
        "autoencoder",
        500,
        "--feature_network",
        "none",
        "--synthetic_defects",
        "0.5",
        "--synthetic_defect_kinds",
        "stain",
    )
    aucs = detection_aucs(detector, textures)
    assert np.mean([aucs[t] for t in TEXTURES]) > 0.75, aucs
    assert aucs["pooled"] > 0.7, aucs


def test_inpainting_scores_pasted_defects_higher(textures, tmp_path):
    detector = fit(tmp_path / "inpaint", textures["clean_dir"], "inpainting", 1000, "--feature_network", "none")
    aucs = detection_aucs(detector, textures)
    assert np.mean([aucs[t] for t in TEXTURES]) > 0.75, aucs
    assert aucs["brick"] > 0.85, aucs


# ---------------------------------------------------------------------------------------------------------
# The CLI end to end


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_cli_fit_score_threshold_end_to_end(textures, tmp_path, capsys):
    train, test = texture_tiles()
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    for name, tile in train[::6] + train[1::6]:  # 48 tiles of all three textures
        Image.fromarray(tile).save(clean_dir / f"{name}.png")
    rng = np.random.default_rng(0)
    for split, tiles in (("val", test[0::2]), ("test", test[1::2])):
        for name, tile in tiles:
            (tmp_path / split / "good").mkdir(parents=True, exist_ok=True)
            (tmp_path / split / "defect").mkdir(parents=True, exist_ok=True)
            Image.fromarray(tile).save(tmp_path / split / "good" / f"{name}.png")
            Image.fromarray(paste_defect(tile, "circle", rng)).save(tmp_path / split / "defect" / f"{name}.png")
    out = tmp_path / "model"

    anomaly_cli.main(
        [
            "fit",
            "--train_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--mode",
            "inpainting",
            *TINY,
            "--max_train_steps",
            "5",
            "--train_batch_size",
            "4",
            "--feature_network",
            "alexnet",
            "--feature_weights",
            "random",
            "--grid_cells",
            "4",
        ]
    )
    config = json.loads((out / "anomaly.json").read_text())
    assert config["mode"] == "inpainting" and config["mse_weight"] == 0.5 and config["feature_network"] == "alexnet"
    assert len(config["mean"]) == 3 and all(0 < s < 0.5 for s in config["std"])
    assert config["training"]["num_train"] == 43 and config["training"]["num_validation"] == 5
    split = json.loads((out / "split.json").read_text())
    assert len(split["validation"]) == 5 and not set(split["validation"]) & set(split["train"])
    assert PConvUNet.from_pretrained(out).config["conv_type"] == "partial"
    validation_rows = read_csv(out / "validation_scores.csv")
    assert [row["label"] for row in validation_rows] == ["0"] * 5 + ["1"] * 5

    for split in ("val", "test"):
        anomaly_cli.main(
            [
                "score",
                "--model",
                str(out),
                "--good_dir",
                str(tmp_path / split / "good"),
                "--defect_dir",
                str(tmp_path / split / "defect"),
                "--output",
                str(tmp_path / f"{split}.csv"),
                "--heatmaps",
                str(tmp_path / "heat" / split),
                "--batch_size",
                "7",
            ]
        )
    rows = read_csv(tmp_path / "val.csv")
    assert list(rows[0]) == ["image", "score", "mse", "perceptual", "label"]
    assert len(rows) == 48 and sum(row["label"] == "1" for row in rows) == 24
    assert all(float(row["score"]) > 0 and float(row["perceptual"]) > 0 for row in rows)
    heatmaps = sorted((tmp_path / "heat" / "val").rglob("*.png"))
    assert len(heatmaps) == 48 and {p.parent.name for p in heatmaps} == {"good", "defect"}
    assert Image.open(heatmaps[0]).size == (3 * 66 + 2, 66 + 2)  # input | reconstruction | overlay

    capsys.readouterr()
    anomaly_cli.main(
        [
            "threshold",
            "--scores",
            str(tmp_path / "val.csv"),
            "--test_scores",
            str(tmp_path / "test.csv"),
            "--output",
            str(tmp_path / "thresholds.csv"),
            "--model",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "| name | threshold | split | TP | FP | TN | FN | TPR | TNR |" in printed
    table = read_csv(tmp_path / "thresholds.csv")
    assert [(row["name"], row["split"]) for row in table] == [
        (name, split) for split in ("validation", "test") for name in ("best_f1", "tpr>=0.95", "tnr>=0.95", "midpoint")
    ]
    assert all(int(row["TP"]) + int(row["FN"]) == 24 and int(row["TN"]) + int(row["FP"]) == 24 for row in table)
    stored = json.loads((out / "anomaly.json").read_text())["thresholds"]
    assert stored["best_f1"] == float(table[0]["threshold"])

    anomaly_cli.main(
        [
            "score",
            "--model",
            str(out),
            "--images",
            str(tmp_path / "test" / "defect"),
            "--output",
            str(tmp_path / "flagged.csv"),
            "--threshold",
            "tpr>=0.95",
        ]
    )
    flagged = read_csv(tmp_path / "flagged.csv")
    assert list(flagged[0]) == ["image", "score", "mse", "perceptual", "defective"]
    expected = [int(float(row["score"]) >= stored["tpr>=0.95"]) for row in flagged]
    assert [int(row["defective"]) for row in flagged] == expected

    # Labels from a separate CSV (any of 1/0, defective/good), joined on the image column.
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,label\n" + "".join(f"{row['image']},{'defective' if row['label'] == '1' else 'good'}\n" for row in rows)
    )
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("image,score\n" + "".join(f"{row['image']},{row['score']}\n" for row in rows[::2]))
    anomaly_cli.main(
        [
            "threshold",
            "--scores",
            str(unlabelled),
            "--labels",
            str(labels),
            "--output",
            str(tmp_path / "thresholds_from_labels.csv"),
        ]
    )
    joined = read_csv(tmp_path / "thresholds_from_labels.csv")
    assert all(int(row["TP"]) + int(row["FN"]) == 12 and int(row["TN"]) + int(row["FP"]) == 12 for row in joined)


def test_cli_errors_exit_non_zero_with_a_message(tmp_path, capsys):
    scores = tmp_path / "scores.csv"
    scores.write_text("image,score,label\na.png,0.1,0\nb.png,0.2,0\n")
    bad_label = tmp_path / "bad_label.csv"
    bad_label.write_text("image,score,label\na.png,0.1,maybe\nb.png,0.2,1\n")
    no_label = tmp_path / "no_label.csv"
    no_label.write_text("image,score\na.png,0.1\nb.png,0.2\n")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "a.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    cases = [
        (["threshold", "--scores", str(scores), "--output", str(tmp_path / "t.csv")], "need both good"),
        (["threshold", "--scores", str(bad_label), "--output", str(tmp_path / "t.csv")], "'maybe' is not"),
        (["threshold", "--scores", str(no_label), "--output", str(tmp_path / "t.csv")], "no label column"),
        (
            ["threshold", "--scores", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "t.csv")],
            "does not exist",
        ),
        (
            ["score", "--model", str(tmp_path), "--images", str(tmp_path / "images"), "--output", str(scores)],
            "no anomaly.json",
        ),
        (["score", "--model", str(tmp_path), "--output", str(scores)], "either --images"),
        (
            [
                "score",
                "--model",
                str(tmp_path),
                "--images",
                str(tmp_path / "images"),
                "--heatmaps",
                str(tmp_path / "images" / "heat"),
                "--output",
                str(scores),
            ],
            "must not be (inside) the input folder",
        ),
        (
            [
                "fit",
                "--train_dir",
                str(tmp_path / "nowhere"),
                "--output_dir",
                str(tmp_path / "out"),
                "--mode",
                "autoencoder",
                "--feature_network",
                "none",
                *TINY,
            ],
            "is not a folder",
        ),
        (
            [
                "fit",
                "--train_dir",
                str(tmp_path / "images"),
                "--output_dir",
                str(tmp_path / "out"),
                "--mode",
                "autoencoder",
                "--feature_network",
                "none",
                "--mse_weight",
                "0.5",
                *TINY,
            ],
            "set mse_weight",
        ),
        (
            [
                "fit",
                "--train_dir",
                str(tmp_path / "images"),
                "--output_dir",
                str(tmp_path / "out"),
                "--mode",
                "autoencoder",
                "--feature_network",
                "none",
                *TINY,
                "--",
                "--conv_type=partial",
            ],
            "use fit's --mode",
        ),
        (
            [
                "score",
                "--model",
                str(tmp_path),
                "--images",
                str(tmp_path / "images"),
                "--output",
                str(scores),
                "--",
                "--seed",
                "1",
            ],
            "only for `fit`",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as error:
            anomaly_cli.main(argv)
        err = capsys.readouterr().err
        assert error.value.code == 1 and message in err.splitlines()[-1] and "Traceback" not in err, (argv, err)
    # argparse errors (exit status 2) for flags that cannot parse.
    with pytest.raises(SystemExit) as error:
        anomaly_cli.main(["fit", "--train_dir", "x", "--output_dir", "y", "--mode", "diffusion"])
    assert error.value.code == 2 and "invalid choice" in capsys.readouterr().err

    # A model folder with a broken image among the inputs: the message names the file.
    model_dir = tmp_path / "model"
    PConvUNet(layer_size=5, base_channels=8, sample_size=64, conv_type="plain").save_pretrained(model_dir)
    anomaly.AnomalyConfig(mode="autoencoder", resolution=64, feature_network="none", mse_weight=1.0).save(model_dir)
    with pytest.raises(SystemExit) as error:
        anomaly_cli.main(
            [
                "score",
                "--model",
                str(model_dir),
                "--images",
                str(tmp_path / "images"),
                "--output",
                str(tmp_path / "s.csv"),
                "--threshold",
                "best_f1",
            ]
        )
    assert error.value.code == 1 and "stored threshold" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        anomaly_cli.main(
            [
                "score",
                "--model",
                str(model_dir),
                "--images",
                str(tmp_path / "images"),
                "--output",
                str(tmp_path / "s.csv"),
            ]
        )
    assert error.value.code == 1 and "broken.png" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# ImageNet features: the default when converted, a one-line note when not, a clear error when asked for


def fake_imagenet_features(home: Path, network: str = "vgg16") -> dict[str, torch.Tensor]:
    """A stand-in for the converted file under ``home`` (PCONV_HF_HOME): the convolutions the extractor uses, with
    fixed random values; returns them."""
    state = {f"features.{k}": v for k, v in FeatureExtractor(network, "random").features.state_dict().items()}
    path = home / "features" / feature_weights_path(network).name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)
    return state


def test_default_features_are_imagenet_when_converted(tmp_path, monkeypatch):
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path))
    network, weights, mse_weight, note = anomaly.resolve_features()
    assert (network, weights, mse_weight) == ("none", "imagenet", 1.0)  # nothing converted: the pixel term alone
    assert str(tmp_path / "features" / "vgg16-imagenet.safetensors") in note
    assert "bash scripts/fetch_feature_weights.sh" in note and "\n" not in note
    # Whatever the user sets is kept and never silently replaced (a missing file then stops fit, see below).
    assert anomaly.resolve_features("alexnet") == ("alexnet", "imagenet", 0.5, None)
    assert anomaly.resolve_features(weights="random") == ("vgg16", "random", 0.5, None)
    assert anomaly.resolve_features(mse_weight=0.3) == ("vgg16", "imagenet", 0.3, None)
    assert anomaly.resolve_features("none") == ("none", "imagenet", 1.0, None)

    state = fake_imagenet_features(tmp_path)
    assert anomaly.resolve_features() == ("vgg16", "imagenet", 0.5, None)
    model = PConvUNet(layer_size=5, base_channels=8, sample_size=64, conv_type="plain")
    detector = anomaly.AnomalyDetector(model, anomaly.AnomalyConfig(mode="autoencoder", resolution=64))
    for key, value in detector.feature_extractor.features.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key


@pytest.mark.parametrize("converted", [True, False])
def test_fit_without_feature_flags_uses_imagenet_when_converted(tmp_path, monkeypatch, capsys, converted):
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path / "home"))
    if converted:
        fake_imagenet_features(tmp_path / "home")
    train, _ = texture_tiles()
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    for name, tile in train[::12]:
        Image.fromarray(tile).save(clean_dir / f"{name}.png")
    out = tmp_path / "out"
    anomaly_cli.main(
        [
            "fit",
            "--train_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--mode",
            "autoencoder",
            *TINY,
            "--max_train_steps",
            "2",
            "--train_batch_size",
            "2",
        ]
    )
    config = anomaly.AnomalyConfig.load(out)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    if converted:
        assert (config.feature_network, config.feature_weights, config.mse_weight) == ("vgg16", "imagenet", 0.5)
        assert config.perceptual_scale != 1.0  # calibrated on the feature term
        assert notes == []
    else:
        assert (config.feature_network, config.mse_weight) == ("none", 1.0)
        assert len(notes) == 1 and "bash scripts/fetch_feature_weights.sh" in notes[0]


def test_missing_imagenet_weights_stop_fit_before_training(textures, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path / "empty_home"))
    out = tmp_path / "out"
    for flags in (["--feature_network", "alexnet"], ["--feature_weights", "imagenet"], ["--mse_weight", "0.5"]):
        with pytest.raises(SystemExit) as error:
            anomaly_cli.main(
                [
                    "fit",
                    "--train_dir",
                    str(textures["clean_dir"]),
                    "--output_dir",
                    str(out),
                    "--mode",
                    "inpainting",
                    *flags,
                    *TINY,
                    "--max_train_steps",
                    "2",
                ]
            )
        message = capsys.readouterr().err
        assert error.value.code == 1 and str(tmp_path / "empty_home" / "features") in message, flags
        assert "bash scripts/fetch_feature_weights.sh" in message and "--feature_network none" in message
        assert not out.exists()
