"""Pixel LDP (seed 003's baseline): scale D/epsilon per image and the log-density ratio bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privmed.data.dataset import ImageDataset
from privmed.errors import NotFittedError
from privmed.methods.pixel_ldp import PixelLDP


def _dataset(n: int = 5) -> ImageDataset:
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    return ImageDataset(images=rng.uniform(size=(n, 1, 6, 5)).astype(np.float32), subjects=ids, sources=ids, labels=np.arange(n) % 2, name="toy")


def test_scale_is_values_per_image_over_epsilon() -> None:
    method = PixelLDP(epsilon=3.0)
    with pytest.raises(NotFittedError):
        method.noise_scale
    assert method.fit(_dataset()).noise_scale == pytest.approx(30 / 3.0)


def test_log_density_ratio_between_black_and_white_images() -> None:
    method, epsilon = PixelLDP(epsilon=2.0), 2.0
    black = torch.zeros(1, 1, 2, 3)  # its neighbour is the all-white image
    released = method.privatize_records(black.repeat(3000, 1, 1, 1), seed=4).reshape(3000, -1).double()
    scale = 6 / epsilon
    ratio = ((released - 1).abs() - released.abs()).sum(dim=1) / scale
    assert method.noise_scale == pytest.approx(scale)
    assert ratio.abs().max().item() <= epsilon + 1e-6
    assert ratio.abs().max().item() > 0.9 * epsilon


def test_privatize_clips_to_unit_range_and_reports() -> None:
    data = _dataset()
    method = PixelLDP(epsilon=10.0)
    released = method.privatize(data, seed=0)
    assert released.images.min() >= 0 and released.images.max() <= 1
    assert released.labels is None  # dropped by default (finding 5)
    assert not set(released.subjects) & set(data.subjects) and not set(released.sources) & set(data.sources)
    assert released.metadata == {"parent": "toy", "privatized_by": "pixel-ldp", "privacy": released.metadata["privacy"]}
    again = PixelLDP(epsilon=10.0).privatize(data, seed=0)
    other = PixelLDP(epsilon=10.0).privatize(data, seed=1)
    assert np.array_equal(again.images, released.images) and not np.array_equal(other.images, released.images)
    report = method.privacy_report()
    assert report.epsilon == pytest.approx(10.0) and report.sensitivity == 30 and report.unit == "image"
    assert any("per pixel" in note and "0.3333" in note for note in report.notes)
