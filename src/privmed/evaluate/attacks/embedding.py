"""The low-dimensional embedding the attacks compare images in.

Seed 001 compares candidates and released images in pixels and in a 64-dimensional embedding
learnt from real images. Here the embedding is the features of privmed's offline domain encoder
(:class:`privmed.evaluate.features.DomainEncoder`, trained on the attacker's real images), or of a
saved feature extractor, standardized and reduced by PCA so that distances and densities are
computed in a few well-scaled dimensions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from privmed.data.dataset import ImageDataset
from privmed.errors import NotFittedError, PrivmedError
from privmed.evaluate.features import DomainEncoder, FeatureExtractor

logger = logging.getLogger(__name__)

__all__ = ["AttackEmbedding"]


def _encoder_size(spatial_shape: tuple[int, ...]) -> int:
    """The domain encoder's input side: 32 for small images, 64 otherwise (both divisible by 8)."""
    return 32 if max(spatial_shape) <= 32 else 64


class AttackEmbedding:
    """Images -> feature-extractor features -> standardized -> PCA to ``dim`` dimensions."""

    def __init__(
        self,
        dim: int = 16,
        extractor: FeatureExtractor | None = None,
        encoder_steps: int = 300,
        seed: int = 0,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> None:
        if dim < 1:
            raise PrivmedError(f"the embedding needs at least 1 dimension, got {dim}")
        self.dim = int(dim)
        self.extractor = extractor
        self.encoder_steps = int(encoder_steps)
        self.seed = int(seed)
        self.progress = progress
        self._scaler: StandardScaler | None = None
        self._pca: PCA | None = None

    def fit(self, real: ImageDataset) -> "AttackEmbedding":
        """Train the domain encoder (unless an extractor was given) and the PCA on real images."""
        if len(real) < 2:
            raise PrivmedError(f"{real.name}: the embedding needs at least 2 real images")
        if self.extractor is None:
            if len(real.spatial_shape) != 2:
                raise PrivmedError(f"{real.name}: the attack embedding supports 2D images only")
            encoder = DomainEncoder(in_channels=real.n_channels, image_size=_encoder_size(real.spatial_shape))
            self.extractor = encoder.fit(real, steps=self.encoder_steps, seed=self.seed, progress=self.progress)
        features = self.extractor.features(real.images)
        self._scaler = StandardScaler().fit(features)
        components = min(self.dim, features.shape[0], features.shape[1])
        self._pca = PCA(n_components=components, random_state=self.seed).fit(self._scaler.transform(features))
        logger.info("attack embedding: %d dimensions keep %.1f%% of the feature variance", components, 100 * self._pca.explained_variance_ratio_.sum())
        return self

    def transform(self, data: ImageDataset | np.ndarray) -> np.ndarray:
        """Embedded images, (N, dim)."""
        if self.extractor is None or self._scaler is None or self._pca is None:
            raise NotFittedError("fit the attack embedding on real images first")
        images = data.images if isinstance(data, ImageDataset) else data
        return self._pca.transform(self._scaler.transform(self.extractor.features(images)))

    def describe(self) -> dict[str, Any]:
        """What a report needs to name this embedding."""
        extractor = self.extractor.describe() if self.extractor is not None and hasattr(self.extractor, "describe") else None
        variance = float(self._pca.explained_variance_ratio_.sum()) if self._pca is not None else None
        return {"extractor": extractor, "dim": self._pca.n_components_ if self._pca is not None else self.dim, "explained_variance": variance}
