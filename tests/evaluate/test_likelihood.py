"""Likelihood-ratio detection (seed 003, Appendix A) with a stand-in density per pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.evaluate.likelihood import detection_auc, log_likelihoods, normality_scores


class PixelGaussian(nn.Module):
    """A stand-in density: independent Gaussians per pixel, fitted by moments."""

    def __init__(self, images: np.ndarray) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.from_numpy(images.mean(axis=0)).double(), requires_grad=False)
        self.std = nn.Parameter(torch.from_numpy(images.std(axis=0) + 0.02).double(), requires_grad=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        density = torch.distributions.Normal(self.mean, self.std)
        return density.log_prob(x.double()).flatten(1).sum(dim=1)


def _toy(n: int, seed: int) -> ImageDataset:
    """Normal images: noise around 0.3; abnormal ones also carry a bright blob in the centre."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = np.clip(0.3 + 0.05 * rng.standard_normal((n, 1, 8, 8)), 0, 1)
    images[labels == 1, :, 2:6, 2:6] += 0.4
    ids = [f"p{i}" for i in range(n)]
    return ImageDataset(images=images.astype(np.float32), subjects=ids, sources=ids, labels=labels, name="toy")


def test_scores_are_the_difference_of_the_two_log_densities() -> None:
    train, test = _toy(200, 0), _toy(50, 1)
    normal = PixelGaussian(train.images[train.labels == 0])
    mixture = PixelGaussian(train.images)
    expected = [
        stats.norm.logpdf(test.images.astype(np.float64), model.mean.numpy(), model.std.numpy()).reshape(50, -1).sum(axis=1)
        for model in (normal, mixture)
    ]
    np.testing.assert_allclose(log_likelihoods(normal, test, batch_size=7), expected[0], rtol=1e-9)
    np.testing.assert_allclose(normality_scores(normal, mixture, test), expected[0] - expected[1], rtol=1e-9)


def test_likelihood_ratio_detects_abnormal_images() -> None:
    train, test = _toy(400, 2), _toy(200, 3)
    normal = PixelGaussian(train.images[train.labels == 0])
    mixture = PixelGaussian(train.images)
    result = detection_auc(normal, mixture, test, n_resamples=300)
    assert result.auc > 0.9
    assert result.auc_low <= result.auc <= result.auc_high
    assert result.n_abnormal == int(test.labels.sum())


def test_swapped_flows_invert_the_ranking() -> None:
    train, test = _toy(400, 4), _toy(200, 5)
    normal = PixelGaussian(train.images[train.labels == 0])
    mixture = PixelGaussian(train.images)
    right = detection_auc(normal, mixture, test, n_resamples=200).auc
    swapped = detection_auc(mixture, normal, test, n_resamples=200).auc
    assert swapped == pytest.approx(1.0 - right)


def test_detection_needs_labels() -> None:
    test = _toy(10, 6)
    object.__setattr__(test, "labels", None)
    model = PixelGaussian(_toy(20, 7).images)
    with pytest.raises(DataError, match="class labels"):
        detection_auc(model, model, test)
