"""Pathology detection by a likelihood ratio of two flows (seed 003, Appendix A).

With one flow trained on normal images only and one trained on all images, Bayes' rule gives
``log p(normal | x) = log p(x | normal) - log p(x) + log p(normal)``. The last term is a constant,
so ``log p(x | normal) - log p(x)`` ranks images by how normal they look, without any classifier.
Seed 003 applies it to privatized test images to measure how much pathology a release keeps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.evaluate.classifier import AUCInterval, roc_auc_ci


class DensityModel(Protocol):
    """Anything with an exact log-density per image, e.g. a privmed Glow (``log_prob(x) -> (N,)``)."""

    def log_prob(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class DetectionResult:
    """AUC of abnormality detection by the likelihood ratio, with its bootstrap interval."""

    auc: float
    auc_low: float
    auc_high: float
    confidence: float
    n_images: int
    n_abnormal: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def log_likelihoods(model: DensityModel, data: ImageDataset, batch_size: int = 256) -> np.ndarray:
    """``log p(x)`` of every image under ``model`` (nats), evaluated in batches without gradients."""
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    images = torch.from_numpy(data.images)
    try:
        values = [model.log_prob(images[i : i + batch_size]).reshape(-1).double() for i in range(0, len(data), batch_size)]
    finally:
        if was_training:
            model.train()
    result = torch.cat(values).numpy() if values else np.zeros(0)
    if not np.isfinite(result).all():
        raise DataError(f"{data.name}: the flow gives a non-finite log-likelihood for some images")
    return result


def normality_scores(normal_model: DensityModel, mixture_model: DensityModel, data: ImageDataset, batch_size: int = 256) -> np.ndarray:
    """``log p(x | normal) - log p(x)``: the log posterior of "normal" up to a constant (higher = more normal)."""
    return log_likelihoods(normal_model, data, batch_size) - log_likelihoods(mixture_model, data, batch_size)


def detection_auc(
    normal_model: DensityModel,
    mixture_model: DensityModel,
    data: ImageDataset,
    *,
    normal_label: int = 0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> DetectionResult:
    """ROC AUC of detecting abnormal images (label != ``normal_label``) by the likelihood ratio."""
    if data.labels is None:
        raise DataError(f"{data.name}: detection AUC needs class labels to know which images are abnormal")
    abnormal = (data.labels != normal_label).astype(np.int64)
    scores = normality_scores(normal_model, mixture_model, data)
    interval: AUCInterval = roc_auc_ci(abnormal, -scores, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return DetectionResult(
        auc=interval.auc,
        auc_low=interval.low,
        auc_high=interval.high,
        confidence=confidence,
        n_images=len(data),
        n_abnormal=int(abnormal.sum()),
    )
