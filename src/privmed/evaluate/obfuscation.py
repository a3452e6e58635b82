"""Does a privatizer hide an identifying feature? (seed 003, Figs. 4-7, made quantitative)

Seed 003 plants two re-identifying features in chest X-rays, a bright block marker and a
left-right flip (simulated situs inversus), and shows by eye whether they survive privatization.
Here a detector (a small CNN) learns to find the feature on original images; it then looks at
privatized images with and without the feature. Its detection rate on privatized images with the
feature, next to its false-alarm rate on those without, measures how well the feature was hidden:
a perfect privatizer leaves the detector at chance (AUC 0.5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.evaluate.classifier import EpochCallback, predict_proba, roc_auc, train_classifier
from privmed.fileio import write_atomic
from privmed.methods.base import PrivatizingMethod

logger = logging.getLogger(__name__)

FEATURES = ("marker", "flip")


def add_block_marker(data: ImageDataset, *, size: int | None = None, value: float = 1.0) -> ImageDataset:
    """Paint a bright square (side ``size``, default 1/7 of the image) into the upper right of every image.

    The position is fixed, like a radiographer's side marker, so one detector can learn it.
    """
    height, width = data.spatial_shape[-2:]
    side = size or max(2, min(height, width) // 7)
    if not 0 < side < min(height, width):
        raise PrivmedError(f"marker size {side} does not fit images of {height}x{width}")
    top, left = height // 8, width - width // 8 - side
    images = data.images.copy()
    images[..., top : top + side, left : left + side] = value
    return replace(data, images=images, metadata={**data.metadata, "obfuscation_feature": "marker"})


def flip_left_right(data: ImageDataset) -> ImageDataset:
    """Mirror every image left-right (seed 003's simulated situs inversus)."""
    images = np.ascontiguousarray(data.images[..., ::-1])
    return replace(data, images=images, metadata={**data.metadata, "obfuscation_feature": "flip"})


def apply_feature(data: ImageDataset, feature: str) -> ImageDataset:
    """Plant ``feature`` ("marker" or "flip") into every image."""
    if feature == "marker":
        return add_block_marker(data)
    if feature == "flip":
        return flip_left_right(data)
    raise PrivmedError(f"unknown obfuscation feature {feature!r}: use one of {', '.join(FEATURES)}")


def plant_in_half(data: ImageDataset, feature: str, seed: int = 0) -> tuple[ImageDataset, np.ndarray]:
    """``data`` with ``feature`` planted in a random half of the images (labels kept), and that half's mask."""
    rng = np.random.default_rng(seed)
    has_feature = np.zeros(len(data), dtype=bool)
    has_feature[rng.permutation(len(data))[: len(data) // 2]] = True
    featured = apply_feature(data, feature)
    images = np.where(has_feature[:, None, None, None], featured.images, data.images)
    return replace(data, images=images, name=f"{data.name}+{feature}"), has_feature


def detection_set(data: ImageDataset, feature: str, seed: int = 0) -> ImageDataset:
    """A random half of ``data`` with the feature planted; labels say which (0 plain, 1 with feature)."""
    planted, has_feature = plant_in_half(data, feature, seed)
    return replace(planted, labels=has_feature.astype(np.int64), class_names=("plain", feature))


def train_feature_detector(
    originals: ImageDataset,
    feature: str,
    *,
    model: str = "cnn",
    epochs: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> nn.Module:
    """Train a classifier that tells original images with ``feature`` from those without."""
    training = detection_set(originals, feature, seed=seed)
    return train_classifier(training, model=model, n_classes=2, epochs=epochs, batch_size=batch_size, seed=seed, on_epoch=on_epoch)


@dataclass(frozen=True)
class FeatureDetection:
    """How often the detector finds the feature: on images with it, on images without it, and the AUC.

    ``advantage`` = detection rate - false-alarm rate: what the detector gains over guessing (noise
    alone can make it flag every image, which a detection rate on its own would count as success).
    """

    detection_rate: float
    false_alarm_rate: float
    advantage: float
    auc: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_feature(detector: nn.Module, data: ImageDataset, has_feature: np.ndarray) -> FeatureDetection:
    """Detection rate (P(feature) > 0.5) on images with the feature, false alarms on the others, and the AUC."""
    has_feature = np.asarray(has_feature, dtype=bool)
    scores = predict_proba(detector, data)[:, 1]
    detection_rate = float((scores[has_feature] > 0.5).mean())
    false_alarm_rate = float((scores[~has_feature] > 0.5).mean())
    return FeatureDetection(
        detection_rate=detection_rate,
        false_alarm_rate=false_alarm_rate,
        advantage=detection_rate - false_alarm_rate,
        auc=roc_auc(has_feature.astype(np.int64), scores),
    )


@dataclass(frozen=True)
class ObfuscationPoint:
    """Feature detection after one privatizer at one budget; epsilon and unit from its privacy report."""

    method: str
    feature: str
    epsilon: float
    unit: str
    detection_rate: float
    false_alarm_rate: float
    advantage: float
    auc: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def obfuscation_curve(
    detector: nn.Module,
    test: ImageDataset,
    feature: str,
    methods: Iterable[tuple[str, PrivatizingMethod]],
    *,
    seed: int = 0,
    on_method: Callable[[str], None] | None = None,
) -> list[ObfuscationPoint]:
    """Plant the feature in half of ``test``, privatize the set once per (name, fitted method), detect it.

    Each image is privatized once per method (one release per image), class labels kept for
    conditional privatizers. The first point is the untouched images (method "none", epsilon inf).
    """
    planted, has_feature = plant_in_half(test, feature, seed)
    clean = detect_feature(detector, planted, has_feature)
    points = [ObfuscationPoint("none", feature, float("inf"), "image", **clean.to_dict())]
    for name, method in methods:
        if on_method is not None:
            on_method(name)
        private = method.privatize(planted, seed=seed)
        report = method.privacy_report()
        found = detect_feature(detector, private, has_feature)
        logger.info("%s: %s detected in %.1f%% of images", name, feature, 100 * found.detection_rate)
        points.append(ObfuscationPoint(name, feature, float(report.epsilon), report.unit, **found.to_dict()))
    return points


def save_obfuscation_plot(path: str | Path, points: Iterable[ObfuscationPoint], title: str = "") -> Path:
    """Detection rate (solid) and false-alarm rate (dashed) against epsilon per method, as a PNG.

    The untouched images (method "none") are drawn as a horizontal line; epsilon is on a log axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = list(points)
    figure, axes = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    for point in points:
        if point.method == "none":
            axes.axhline(point.detection_rate, color="grey", linestyle=":", linewidth=1.0, label="no privatization")
    methods = dict.fromkeys(point.method for point in points if point.method != "none")
    for method in methods:
        curve = sorted((p for p in points if p.method == method), key=lambda p: p.epsilon)
        epsilons = [p.epsilon for p in curve]
        (line,) = axes.plot(epsilons, [p.detection_rate for p in curve], marker="o", label=f"{method}: detection")
        false_alarms = [p.false_alarm_rate for p in curve]
        axes.plot(epsilons, false_alarms, marker="x", linestyle="--", color=line.get_color(), label=f"{method}: false alarms")
    if methods:
        axes.set_xscale("log")
    axes.set(xlabel="epsilon per image", ylabel="rate", ylim=(-0.02, 1.02), title=title)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    try:
        return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    finally:
        plt.close(figure)
