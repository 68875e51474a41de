"""Thresholds and metrics on labelled score lists: confusion counts, ROC-AUC, threshold choice, reports."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Thresholds and metrics (pure functions on score lists)


@dataclasses.dataclass(frozen=True)
class Confusion:
    """Counts at one threshold; positive = defective, predicted defective iff score >= threshold."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def tpr(self) -> float:
        """Share of defective images flagged (recall, sensitivity); NaN without defective images."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def tnr(self) -> float:
        """Share of good images passed (specificity); NaN without good images."""
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan

    @property
    def precision(self) -> float:
        """Share of flagged images that are defective; NaN when nothing is flagged."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); 0 when there is no true positive."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0


def _check_scores_labels(
    scores: Sequence[float], labels: Sequence[int], both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D and of equal length, got {scores.shape} and {labels.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite numbers")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    labels = labels.astype(bool)
    if both_classes and (labels.all() or not labels.any()):
        raise ValueError(
            f"need both good (0) and defective (1) images, got {int(labels.sum())} defective of {labels.size}"
        )
    return scores, labels


def confusion(scores: Sequence[float], labels: Sequence[int], threshold: float) -> Confusion:
    """TP / FP / TN / FN of the rule "defective iff score >= threshold"."""
    scores, labels = _check_scores_labels(scores, labels, both_classes=False)
    flagged = scores >= threshold
    return Confusion(
        tp=int(np.sum(flagged & labels)),
        fp=int(np.sum(flagged & ~labels)),
        tn=int(np.sum(~flagged & ~labels)),
        fn=int(np.sum(~flagged & labels)),
    )


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: the probability that a random defective image outscores a random good one
    (ties count one half), computed with the Mann-Whitney rank formula."""
    scores, labels = _check_scores_labels(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share the mean of their ranks.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        if count > 1:
            ranks[order[start : start + count]] = start + (count + 1) / 2
    positives, negatives = int(labels.sum()), int((~labels).sum())
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def threshold_names(target_rate: float = 0.95) -> tuple[str, str, str, str]:
    """The names ``select_thresholds`` returns, e.g. ("best_f1", "tpr>=0.95", "tnr>=0.95", "midpoint")."""
    return "best_f1", f"tpr>={target_rate:g}", f"tnr>={target_rate:g}", "midpoint"


def select_thresholds(scores: Sequence[float], labels: Sequence[int], target_rate: float = 0.95) -> dict[str, float]:
    """Thresholds chosen on a labelled (validation) set; "defective iff score >= threshold".

    Candidates are the distinct scores plus the next float above the largest (which flags nothing).

    - ``best_f1``: the highest F1; among equal F1 the highest threshold (fewest false alarms).
    - ``tpr>=R``: the highest threshold that still flags a share >= R of the defective images (the most good
      images pass while the defect recall target holds).
    - ``tnr>=R``: the lowest threshold that passes a share >= R of the good images (the most defects are caught
      while the false-alarm budget holds).
    - ``midpoint``: the mean of the two above, a compromise between both targets.
    """
    if not 0.0 < target_rate <= 1.0:
        raise ValueError(f"target_rate must be in (0, 1], got {target_rate}")
    scores, labels = _check_scores_labels(scores, labels)
    candidates = np.unique(scores)
    candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf))  # ascending
    positives, negatives = np.sort(scores[labels]), np.sort(scores[~labels])
    tp = len(positives) - np.searchsorted(positives, candidates, side="left")  # scores >= t
    fp = len(negatives) - np.searchsorted(negatives, candidates, side="left")
    fn, tn = len(positives) - tp, len(negatives) - fp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    tpr, tnr = tp / len(positives), tn / len(negatives)
    best_f1 = candidates[np.flatnonzero(np.isclose(f1, f1.max(), rtol=1e-12, atol=0))[-1]]
    # TPR falls and TNR rises with the threshold; the first candidate has TPR 1, the last TNR 1.
    at_tpr = candidates[np.flatnonzero(tpr >= target_rate)[-1]]
    at_tnr = candidates[np.flatnonzero(tnr >= target_rate)[0]]
    names = threshold_names(target_rate)
    return {
        names[0]: float(best_f1),
        names[1]: float(at_tpr),
        names[2]: float(at_tnr),
        names[3]: float((at_tpr + at_tnr) / 2),
    }


def threshold_report(
    thresholds: dict[str, float], scores: Sequence[float], labels: Sequence[int], split: str = "test"
) -> list[dict[str, Any]]:
    """One row per threshold: name, threshold, split, TP, FP, TN, FN, TPR, TNR, precision, F1, ROC-AUC of the set."""
    auc = roc_auc(scores, labels)
    rows = []
    for name, threshold in thresholds.items():
        counts = confusion(scores, labels, threshold)
        rows.append({
            "name": name, "threshold": threshold, "split": split,
            "TP": counts.tp, "FP": counts.fp, "TN": counts.tn, "FN": counts.fn,
            "TPR": counts.tpr, "TNR": counts.tnr, "precision": counts.precision, "F1": counts.f1, "ROC_AUC": auc,
        })  # fmt: skip
    return rows


def format_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of ``threshold_report`` as a markdown table (rates with 3 decimals, thresholds with 6 digits)."""
    if not rows:
        raise ValueError("no rows to format")
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if column == "threshold":
                cells.append(f"{value:.6g}")
            elif isinstance(value, float):
                cells.append("–" if math.isnan(value) else f"{value:.3f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
