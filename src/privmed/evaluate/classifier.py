"""Classification utility of a release: train on the release, test on real data.

The protocol of seeds 002 and 003: a classifier trained on released (privatized or synthetic)
images is tested on untouched real images; accuracy and ROC AUC measure how much of the
diagnostic signal the release kept. AUC comes with a bootstrap confidence interval because test
sets of a few hundred images leave a visible sampling error.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.metrics import roc_curve
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivmedError
from privmed.fileio import write_atomic, write_json_atomic
from privmed.models.classifiers import EpochCallback, build_classifier, labelled_tensors, predict_proba

logger = logging.getLogger(__name__)

"""Called after each epoch with (epoch, total epochs, mean training loss)."""


@dataclass(frozen=True)
class AUCInterval:
    """ROC AUC with a bootstrap confidence interval (BCa, resampling test images with their labels)."""

    auc: float
    low: float
    high: float
    confidence: float
    n_resamples: int


@dataclass
class ClassifierMetrics:
    """What ``evaluate classifier`` reports: accuracy at the arg-max class and ROC AUC with its CI.

    ``privacy`` holds the guarantee of the training release (from the privacy.json beside it) when known.
    """

    model: str
    accuracy: float
    roc_auc: float
    roc_auc_low: float
    roc_auc_high: float
    confidence: float
    n_resamples: int
    n_train: int
    n_test: int
    n_classes: int
    epochs: int
    seed: int
    train: str = ""
    test: str = ""
    privacy: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _auc_last_axis(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Binary ROC AUC along the last axis via the Mann-Whitney rank sum (ties get average ranks).

    Hand-written because the bootstrap needs the AUC of thousands of resamples at once, which
    scikit-learn's ``roc_auc_score`` (one sample per call) cannot vectorize; a resample holding one
    class only gives NaN.
    """
    positive = labels == 1
    n_positive = positive.sum(axis=-1)
    n_negative = labels.shape[-1] - n_positive
    ranks = stats.rankdata(scores, axis=-1)
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative)


def _auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of binary scores (..., N), or the macro one-vs-rest AUC of class scores (..., N, K)."""
    if scores.ndim == labels.ndim:
        return _auc_last_axis(labels, scores)
    per_class = [_auc_last_axis((labels == k).astype(np.int64), scores[..., k]) for k in range(scores.shape[-1])]
    return np.mean(per_class, axis=0)


def class_scores(probabilities: np.ndarray) -> np.ndarray:
    """The scores ROC analysis uses: P(class 1) for two classes, all class probabilities otherwise."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities[:, 1] if probabilities.ndim == 2 and probabilities.shape[1] == 2 else probabilities


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of scores (N,) for labels in {0, 1}, or macro one-vs-rest AUC of class scores (N, K)."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] != labels.shape[0]:
        raise PrivmedError(f"{scores.shape[0]} scores for {labels.shape[0]} labels")
    if np.unique(labels).size < 2:
        raise PrivmedError("ROC AUC needs test images of at least two classes")
    return float(_auc(labels, scores))


def roc_auc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> AUCInterval:
    """ROC AUC and its BCa bootstrap interval (``scipy.stats.bootstrap``, test images resampled)."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64)
    point = roc_auc(labels, scores)

    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        return _auc(labels[indices], scores[indices])

    with warnings.catch_warnings():
        # A perfectly separating classifier gives the same AUC on every resample; BCa is undefined then.
        warnings.simplefilter("ignore", (RuntimeWarning, stats.DegenerateDataWarning))
        result = stats.bootstrap(
            (np.arange(labels.shape[0]),),
            statistic,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="BCa",
            batch=200,
            rng=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        tail = 50.0 * (1.0 - confidence)
        low, high = (float(v) for v in np.nanpercentile(result.bootstrap_distribution, [tail, 100.0 - tail]))
    return AUCInterval(point, low, high, confidence, n_resamples)


def check_compatible(train: ImageDataset, test: ImageDataset) -> int:
    """Check that a classifier trained on ``train`` can be tested on ``test``; return the class count."""
    labelled_tensors(train)
    labelled_tensors(test)
    if train.n_channels != test.n_channels:
        raise DataError(f"{train.name} has {train.n_channels} channels but {test.name} has {test.n_channels}")
    if len(train.spatial_shape) != 2:
        raise DataError(f"{train.name}: classifiers take 2D images, got spatial shape {train.spatial_shape}")
    return max(train.n_classes, test.n_classes, 2)


def train_classifier(
    data: ImageDataset,
    *,
    model: str = "cnn",
    n_classes: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> nn.Module:
    """Train a classifier non-privately (Adam, cross-entropy, shuffled mini-batches); returns it in eval mode."""
    images, labels = labelled_tensors(data)
    if epochs < 1 or batch_size < 1:
        raise PrivmedError(f"epochs and batch size must be positive, got epochs={epochs}, batch_size={batch_size}")
    n_classes = n_classes or max(data.n_classes, 2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_classifier(model, data.n_channels, n_classes)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    network.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(network(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.numel()
        mean_loss = total / len(data)
        logger.info("classifier epoch %d/%d: loss %.4f", epoch, epochs, mean_loss)
        if on_epoch is not None:
            on_epoch(epoch, epochs, mean_loss)
    return network.eval()


def score_classifier(
    network: nn.Module,
    test: ImageDataset,
    *,
    model: str,
    n_train: int,
    epochs: int,
    seed: int,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> tuple[ClassifierMetrics, np.ndarray]:
    """Accuracy and ROC AUC (with CI) of ``network`` on ``test``; also returns the class probabilities."""
    _, labels = labelled_tensors(test)
    probabilities = predict_proba(network, test)
    truth = labels.numpy()
    interval = roc_auc_ci(truth, class_scores(probabilities), confidence=confidence, n_resamples=n_resamples, seed=seed)
    metrics = ClassifierMetrics(
        model=model,
        accuracy=float((probabilities.argmax(axis=1) == truth).mean()),
        roc_auc=interval.auc,
        roc_auc_low=interval.low,
        roc_auc_high=interval.high,
        confidence=confidence,
        n_resamples=n_resamples,
        n_train=n_train,
        n_test=len(test),
        n_classes=probabilities.shape[1],
        epochs=epochs,
        seed=seed,
        train="",
        test=test.name,
    )
    return metrics, probabilities


def evaluate_classifier(
    train: ImageDataset,
    test: ImageDataset,
    *,
    model: str = "cnn",
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    on_epoch: EpochCallback | None = None,
) -> tuple[ClassifierMetrics, np.ndarray]:
    """Train on ``train`` (a release), test on ``test`` (real images): metrics and test probabilities."""
    n_classes = check_compatible(train, test)
    network = train_classifier(
        train,
        model=model,
        n_classes=n_classes,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        on_epoch=on_epoch,
    )
    metrics, probabilities = score_classifier(
        network, test, model=model, n_train=len(train), epochs=epochs, seed=seed, confidence=confidence, n_resamples=n_resamples
    )
    metrics.train = train.name
    return metrics, probabilities


def save_roc_plot(path: str | Path, labels: np.ndarray, probabilities: np.ndarray, title: str) -> Path:
    """Write the ROC curve(s) as a PNG (one-vs-rest curves for more than two classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.asarray(labels).reshape(-1)
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    curves = [(1, "class 1")] if probabilities.shape[1] == 2 else [(k, f"class {k}") for k in range(probabilities.shape[1])]
    for k, name in curves:
        fpr, tpr, _ = roc_curve(labels == k, probabilities[:, k])
        auc = roc_auc((labels == k).astype(np.int64), probabilities[:, k])
        axes.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    try:
        return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    finally:
        plt.close(figure)


def write_classifier_report(out_dir: str | Path, metrics: ClassifierMetrics, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Path]:
    """Write ``metrics.json`` and ``roc.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    metrics_path = write_json_atomic(out / "metrics.json", metrics.to_dict())
    roc_path = save_roc_plot(out / "roc.png", labels, probabilities, title=f"{metrics.model} trained on {metrics.train}")
    return {"metrics": metrics_path, "roc": roc_path}
