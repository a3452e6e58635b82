"""Obfuscation test (seed 003, Figs. 4-7): a detector finds planted features before and after privatization."""

from __future__ import annotations

from typing import Self

import numpy as np
import pytest
from scipy import ndimage

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.evaluate.obfuscation import (
    add_block_marker,
    detection_set,
    flip_left_right,
    obfuscation_curve,
    plant_in_half,
    train_feature_detector,
)
from privmed.methods.base import PrivatizingMethod
from privmed.privacy.report import LAPLACE_MECHANISM, PrivacyReport


def _textures(n: int, seed: int, size: int = 28) -> ImageDataset:
    """Smooth random textures darker on the left, so a flip is visible."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, 1, size, size)), sigma=(0, 0, 2, 2))
    ramp = np.linspace(0.2, 0.6, size)[None, None, None, :]
    images = np.clip(ramp + 0.5 * noise, 0, 1).astype(np.float32)
    ids = [f"s{seed}-{i}" for i in range(n)]
    return ImageDataset(images=images, subjects=ids, sources=ids, labels=rng.integers(0, 2, n), name="textures")


class PixelNoise(PrivatizingMethod):
    """A stand-in privatizer: Laplace noise on pixels, clipped back to [0, 1]."""

    def __init__(self, scale: float, epsilon: float) -> None:
        self.scale = scale
        self.epsilon = epsilon

    def fit(self, data: ImageDataset) -> Self:
        return self

    def privatize(self, data: ImageDataset, seed: int | None = None) -> ImageDataset:
        rng = np.random.default_rng(seed)
        noisy = np.clip(data.images + rng.laplace(scale=self.scale, size=data.images.shape), 0, 1).astype(np.float32)
        return ImageDataset(images=noisy, subjects=data.subjects, sources=data.sources, labels=data.labels, name="noisy")

    def privacy_report(self) -> PrivacyReport:
        return PrivacyReport(mechanism=LAPLACE_MECHANISM, accountant="laplace", unit="image", n_units=1, epsilon=self.epsilon, delta=0.0)


def test_marker_and_flip_change_only_what_they_should() -> None:
    data = _textures(4, 0)
    marked = add_block_marker(data)
    changed = (marked.images != data.images).any(axis=(0, 1))
    assert changed.sum() == (28 // 7) ** 2 and (marked.images[:, :, changed] == 1.0).all()
    np.testing.assert_array_equal(flip_left_right(flip_left_right(data)).images, data.images)
    assert data.labels is not None and (marked.labels == data.labels).all()
    with pytest.raises(PrivmedError, match="unknown obfuscation feature"):
        detection_set(data, "tattoo")


def test_planting_half_keeps_class_labels() -> None:
    data = _textures(10, 1)
    planted, has_feature = plant_in_half(data, "marker", seed=0)
    assert has_feature.sum() == 5
    np.testing.assert_array_equal(planted.labels, data.labels)
    np.testing.assert_array_equal(planted.images[~has_feature], data.images[~has_feature])
    assert (planted.images[has_feature] != data.images[has_feature]).any(axis=(1, 2, 3)).all()


@pytest.mark.parametrize("feature", ["marker", "flip"])
def test_detector_finds_feature_on_clean_images_and_less_after_heavy_noise(feature: str) -> None:
    detector = train_feature_detector(_textures(256, 2), feature, epochs=10, seed=0)
    light, heavy = PixelNoise(scale=0.02, epsilon=40000.0), PixelNoise(scale=2.0, epsilon=400.0)
    points = obfuscation_curve(detector, _textures(128, 3), feature, [("light", light), ("heavy", heavy)])
    clean, light_point, heavy_point = points
    assert clean.method == "none" and clean.epsilon == float("inf")
    assert clean.detection_rate > 0.9 and clean.false_alarm_rate < 0.1 and clean.auc > 0.97
    assert light_point.epsilon == 40000.0 and light_point.unit == "image"
    assert light_point.advantage > 0.8
    assert heavy_point.auc < 0.75 and heavy_point.advantage < 0.3
    assert heavy_point.advantage == pytest.approx(heavy_point.detection_rate - heavy_point.false_alarm_rate)
