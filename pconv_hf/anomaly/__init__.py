"""Reconstruction-based anomaly detection: find defects in images of otherwise uniform objects by how badly a
model trained on clean images reconstructs them.

Two ways to reconstruct an image with a ``PConvUNet`` trained on clean images only:

- ``"autoencoder"``: the plain-conv U-Net (``conv_type="plain"``) sees the whole image (an all-valid mask) and
  reproduces it. Its skip connections make copying easy, so train it with synthetic defects (the target stays
  clean) or keep training short; see docs/anomaly.md.
- ``"inpainting"``: a k x k grid of cells is split into ``period**2`` interleaved passes (a checkerboard for
  ``period=2`` in both directions); in each pass one set of cells is a hole that the partial-conv U-Net fills
  from its surroundings. Every pixel is a hole in exactly one pass, so the assembled prediction is made of
  guesses only. A defect cannot be guessed from the clean texture around it, so it stands out.

The comparison with the input gives a per-pixel heat map and a per-image score::

    heat map = lambda * mse_map / mse_scale + (1 - lambda) * feature_map / perceptual_scale
    score    = mean of the heat map = lambda * mse / mse_scale + (1 - lambda) * perceptual / perceptual_scale

``mse_map`` is the squared difference of the images standardised with the training set's per-channel std,
after a Gaussian blur of ``blur_sigma`` pixels: comparing local means lets fine texture that nothing can predict
average out while a coherent defect remains (``blur_sigma`` 0 is the plain per-pixel MSE). ``feature_map`` is the
distance of unit-normalised AlexNet or VGG16 features (as in LPIPS, without learned weights), averaged over three
stages and upsampled to the image; by default (``resolve_features``) ImageNet VGG16 when its converted weights are
present (``bash scripts/fetch_feature_weights.sh``), else the pixel term alone. ``mse_scale`` and
``perceptual_scale`` are the two terms' means over the clean validation images (1 until calibrated), so a score of
1 is a typical clean image and lambda weighs two terms of comparable size.

Conventions: a **higher score is more anomalous**; an image is predicted **defective iff score >= threshold**;
labels are **1 = defective** (the positive class) and **0 = good**.

Modules: ``config`` (anomaly.json, the feature-term default), ``detector`` (reconstruction, heat maps, scores,
calibration), ``thresholds`` (confusion counts, ROC-AUC, threshold choice), ``tables`` (the score and label CSV
files), ``fitting`` (``FitConfig`` and ``fit``: split, train, calibrate; needs the training extra, so import it
from ``pconv_hf.anomaly.fitting``) and ``cli`` (``pconv-anomaly``, a thin mapping of flags onto them). The
synthetic defects are a training augmentation, in ``pconv_hf.defects``. Everything else public is importable
from ``pconv_hf.anomaly`` itself.
"""

from __future__ import annotations

from ..defects import DEFECT_KINDS, DefectPainter, paint_defect
from .config import (
    CONFIG_NAME,
    DEFAULT_FEATURE_NETWORK,
    DEFAULT_MSE_WEIGHT,
    FEATURE_NETWORKS,
    FEATURE_WEIGHTS,
    HEATMAP_QUANTILE,
    MODES,
    STD_FLOOR,
    AnomalyConfig,
    resolve_features,
)
from .detector import (
    AnomalyDetector,
    AnomalyMaps,
    calibrate,
    channel_statistics,
    combine_maps,
    feature_distance_map,
    find_images,
    load_image,
    pixel_error_map,
    reconstruct,
    split_files,
)
from .thresholds import (
    Confusion,
    confusion,
    format_markdown,
    roc_auc,
    select_thresholds,
    threshold_names,
    threshold_report,
)

__all__ = [
    "CONFIG_NAME",
    "MODES",
    "FEATURE_NETWORKS",
    "FEATURE_WEIGHTS",
    "DEFAULT_FEATURE_NETWORK",
    "DEFAULT_MSE_WEIGHT",
    "STD_FLOOR",
    "HEATMAP_QUANTILE",
    "AnomalyConfig",
    "resolve_features",
    "DEFECT_KINDS",
    "paint_defect",
    "DefectPainter",
    "find_images",
    "load_image",
    "split_files",
    "channel_statistics",
    "reconstruct",
    "pixel_error_map",
    "feature_distance_map",
    "AnomalyMaps",
    "combine_maps",
    "AnomalyDetector",
    "calibrate",
    "Confusion",
    "confusion",
    "roc_auc",
    "threshold_names",
    "select_thresholds",
    "threshold_report",
    "format_markdown",
]
