"""Diversity of a synthetic release (seed 001, section 2.2): does it cover the real distribution?

Two views. A UMAP map fitted on real image features only, with the synthetic images projected into
it (the map is not bent by the synthetic data, so gaps and pile-ups show). And a real-vs-synthetic
classifier trained on part of both sets and tested on held-out images: ROC AUC near 0.5 means the
classifier cannot tell them apart; the AUC carries a BCa bootstrap 95% interval with 2000 resamples
(``scipy.stats.bootstrap(method="BCa")`` via :func:`privmed.evaluate.classifier.roc_auc_ci`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivmedError
from privmed.evaluate.classifier import EpochCallback, predict_proba, roc_auc_ci, train_classifier
from privmed.evaluate.features import DomainEncoder, FeatureExtractor
from privmed.fileio import write_atomic, write_json_atomic

__all__ = ["DiversityReport", "UmapProjection", "diversity_report", "plot_umap", "real_vs_synthetic_auc", "umap_projection", "write_diversity_report"]

REAL, SYNTHETIC = 0, 1


@dataclass
class UmapProjection:
    """2D UMAP coordinates: fitted on real features, synthetic ones projected with the same map."""

    real: np.ndarray
    synthetic: np.ndarray
    real_labels: np.ndarray | None
    synthetic_labels: np.ndarray | None


def umap_projection(
    real_features: np.ndarray, synthetic_features: np.ndarray, *, n_neighbors: int = 15, seed: int = 0,
    real_labels: np.ndarray | None = None, synthetic_labels: np.ndarray | None = None,
) -> UmapProjection:
    """Fit UMAP on the real features only and project the synthetic features into it."""
    import umap  # imported here: umap-learn compiles with numba on first import, slow for other commands

    if len(real_features) < 4:
        raise PrivmedError(f"UMAP needs at least 4 real images, got {len(real_features)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a fixed random_state disables parallelism
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(real_features) - 1), random_state=seed)
        real_2d = reducer.fit_transform(real_features)
        synthetic_2d = reducer.transform(synthetic_features)
    return UmapProjection(np.asarray(real_2d), np.asarray(synthetic_2d), real_labels, synthetic_labels)


def plot_umap(path: str | Path, projection: UmapProjection, class_names: tuple[str, ...] | None = None, title: str = "UMAP of real features") -> Path:
    """Scatter plot: real images as dots, synthetic ones as crosses, coloured by class when labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 6))
    colours = plt.get_cmap("tab10")
    for points, labels, marker, kind in ((projection.real, projection.real_labels, "o", "real"), (projection.synthetic, projection.synthetic_labels, "x", "synthetic")):
        if labels is None:
            axis.scatter(points[:, 0], points[:, 1], s=10, marker=marker, alpha=0.6, label=kind, color=colours(0 if kind == "real" else 3))
            continue
        for label in np.unique(labels):
            name = class_names[label] if class_names is not None and label < len(class_names) else str(label)
            chosen = labels == label
            axis.scatter(points[chosen, 0], points[chosen, 1], s=10, marker=marker, alpha=0.6, color=colours(int(label) % 10), label=f"{kind}: {name}")
    axis.set_xlabel("UMAP 1")
    axis.set_ylabel("UMAP 2")
    axis.set_title(title)
    axis.legend(fontsize=7, markerscale=1.5)
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    plt.close(figure)
    return Path(path)


@dataclass
class DiversityReport:
    """What ``privmed evaluate diversity`` writes to diversity.json."""

    auc: float
    auc_low: float
    auc_high: float
    confidence: float
    n_resamples: int
    n_real: int
    n_synthetic: int
    n_test: int
    model: str
    epochs: int
    extractor: dict[str, Any]
    seed: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_comparable(real: ImageDataset, synthetic: ImageDataset) -> None:
    if real.images.shape[1:] != synthetic.images.shape[1:]:
        raise DataError(f"real images have shape {real.images.shape[1:]} and synthetic ones {synthetic.images.shape[1:]}: resize one set first")


def real_vs_synthetic_auc(
    real: ImageDataset,
    synthetic: ImageDataset,
    *,
    model: str = "cnn",
    epochs: int = 5,
    test_fraction: float = 0.3,
    n_resamples: int = 2000,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> tuple[Any, int]:
    """Train a real (0) vs synthetic (1) classifier on part of each set; AUC (BCa interval) on the rest.

    Returns the :class:`privmed.evaluate.classifier.AUCInterval` and the number of test images.
    """
    _check_comparable(real, synthetic)
    if not 0 < test_fraction < 1:
        raise PrivmedError(f"test fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    images = np.concatenate([real.images, synthetic.images])
    labels = np.concatenate([np.full(len(real), REAL), np.full(len(synthetic), SYNTHETIC)]).astype(np.int64)
    test = np.zeros(len(labels), dtype=bool)
    for kind in (REAL, SYNTHETIC):
        members = np.flatnonzero(labels == kind)
        n_test = max(1, round(test_fraction * members.size))
        if members.size - n_test < 1:
            raise PrivmedError(f"too few {'real' if kind == REAL else 'synthetic'} images ({members.size}) to hold some out for testing")
        test[rng.choice(members, size=n_test, replace=False)] = True
    ids = np.array([f"image-{i}" for i in range(len(labels))])
    combined = ImageDataset(images=images, subjects=ids, sources=ids, labels=labels, class_names=("real", "synthetic"), name="real-vs-synthetic")
    network = train_classifier(combined.subset(np.flatnonzero(~test)), model=model, n_classes=2, epochs=epochs, seed=seed, on_epoch=on_epoch)
    held_out = combined.subset(np.flatnonzero(test))
    probabilities = predict_proba(network, held_out)
    # Two classes: the macro one-vs-rest AUC equals the AUC of P(synthetic).
    return roc_auc_ci(held_out.labels, probabilities[:, SYNTHETIC], n_resamples=n_resamples, seed=seed), int(test.sum())


def diversity_report(
    real: ImageDataset,
    synthetic: ImageDataset,
    *,
    extractor: FeatureExtractor | None = None,
    encoder_steps: int = 300,
    model: str = "cnn",
    epochs: int = 5,
    test_fraction: float = 0.3,
    n_resamples: int = 2000,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    on_encoder_step: Callable[[int, int, float], None] | None = None,
) -> tuple[DiversityReport, UmapProjection]:
    """The UMAP projection (features of a domain encoder trained on ``real``) and the classifier AUC."""
    _check_comparable(real, synthetic)
    if extractor is None:
        size = 32 if max(real.spatial_shape) <= 32 else 64
        extractor = DomainEncoder(in_channels=real.n_channels, image_size=size).fit(real, steps=encoder_steps, seed=seed, progress=on_encoder_step)
    projection = umap_projection(extractor.features(real.images), extractor.features(synthetic.images), seed=seed, real_labels=real.labels, synthetic_labels=synthetic.labels)
    interval, n_test = real_vs_synthetic_auc(real, synthetic, model=model, epochs=epochs, test_fraction=test_fraction, n_resamples=n_resamples, seed=seed, on_epoch=on_epoch)
    notes = []
    if interval.low > 0.5:
        notes.append("the classifier tells synthetic from real images better than chance: the release does not match the real distribution")
    report = DiversityReport(
        auc=interval.auc, auc_low=interval.low, auc_high=interval.high, confidence=interval.confidence, n_resamples=interval.n_resamples,
        n_real=len(real), n_synthetic=len(synthetic), n_test=n_test, model=model, epochs=epochs,
        extractor=extractor.describe() if hasattr(extractor, "describe") else {"name": type(extractor).__name__}, seed=seed, notes=notes,
    )
    return report, projection


def write_diversity_report(out_dir: str | Path, report: DiversityReport, projection: UmapProjection, class_names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write diversity.json and umap.png to ``out_dir``."""
    out = Path(out_dir)
    return {
        "diversity": write_json_atomic(out / "diversity.json", report.to_dict()),
        "umap": plot_umap(out / "umap.png", projection, class_names),
    }
