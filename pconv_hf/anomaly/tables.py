"""The CSV files of anomaly detection: score tables (written by ``fit`` and ``score``, read by ``threshold``) and
labels files, with the one rule for reading a label (1 / defective, 0 / good)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

SCORE_COLUMNS = ("image", "score", "mse", "perceptual")
_POSITIVE_LABELS = {"1", "defective", "defect", "bad", "anomalous", "true"}
_NEGATIVE_LABELS = {"0", "good", "ok", "clean", "normal", "false"}


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """``rows`` as a CSV file with ``columns`` (other keys ignored), written whole or not at all."""
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


def parse_label(value: str, where: str) -> int:
    """1 for defective (1, defective, defect, bad, anomalous, true), 0 for good (0, good, ok, clean, normal,
    false), any case; else ValueError naming ``where``."""
    text = value.strip().lower()
    if text in _POSITIVE_LABELS:
        return 1
    if text in _NEGATIVE_LABELS:
        return 0
    raise ValueError(f"{where}: label {value!r} is not 1/defective or 0/good")


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header; ValueError if it is missing or empty."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


def read_labelled_scores(scores_path: Path, labels_path: Path | None) -> tuple[list[float], list[int]]:
    """Scores and 0/1 labels from a `score` CSV, labels from its ``label`` column or from a labels CSV
    (columns image, label) matched by the image path, else by file name when those are unique."""
    rows = read_csv(scores_path)
    if "image" not in rows[0] or "score" not in rows[0]:
        raise ValueError(f"{scores_path} needs the columns image and score (the output of `pconv-anomaly score`)")
    scores = []
    for number, row in enumerate(rows, start=2):
        try:
            scores.append(float(row["score"]))
        except ValueError:
            raise ValueError(f"{scores_path}, line {number}: score {row['score']!r} is not a number") from None
        if not math.isfinite(scores[-1]):
            raise ValueError(f"{scores_path}, line {number}: score {row['score']!r} is not finite")
    if labels_path is None:
        if "label" not in rows[0]:
            raise ValueError(f"{scores_path} has no label column: pass --labels, or score with --good_dir/--defect_dir")
        labels = [parse_label(row["label"], f"{scores_path}, line {n}") for n, row in enumerate(rows, start=2)]
        return scores, labels

    label_rows = read_csv(labels_path)
    if "image" not in label_rows[0] or "label" not in label_rows[0]:
        raise ValueError(f"{labels_path} needs the columns image and label")
    by_path = {row["image"]: parse_label(row["label"], f"{labels_path}") for row in label_rows}
    images = [row["image"] for row in rows]
    if all(image in by_path for image in images):
        return scores, [by_path[image] for image in images]
    by_name = {Path(image).name: label for image, label in by_path.items()}
    names = [Path(image).name for image in images]
    if len(by_name) == len(by_path) and len(set(names)) == len(names) and all(n in by_name for n in names):
        return scores, [by_name[n] for n in names]
    missing = [image for image in images if image not in by_path and Path(image).name not in by_name]
    raise ValueError(f"{labels_path} has no label for {len(missing)} image(s) of {scores_path}, e.g. {missing[:3]}")
