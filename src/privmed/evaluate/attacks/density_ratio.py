"""DOMIAS-style density-ratio attack (van Breugel et al. 2023, "Membership inference attacks against
synthetic data through overfitting detection").

A generator that overfits puts more density near its training records than the data distribution
does. The score of a candidate is ``log p_release(x) - log p_reference(x)``, both densities
estimated in a low-dimensional embedding: the release's density from the released images, the
reference density from real images known not to be members. Densities are scikit-learn kernel
density estimates (Scott's bandwidth on standardized features) or Gaussian mixtures.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity
from sklearn.preprocessing import StandardScaler

from privmed.errors import PrivmedError
from privmed.evaluate.attacks.pairwise import flatten

__all__ = ["DENSITY_ESTIMATORS", "DensityRatioAttack"]

DensityEstimator = Literal["kde", "gmm"]
DENSITY_ESTIMATORS: tuple[str, ...] = ("kde", "gmm")


class DensityRatioAttack:
    """Fit on released and reference embeddings; ``score(candidates)`` gives log density ratios (N,)."""

    def __init__(self, density: DensityEstimator = "kde", n_components: int = 5, seed: int = 0) -> None:
        if density not in DENSITY_ESTIMATORS:
            raise PrivmedError(f"unknown density estimator {density!r}; choose one of {', '.join(DENSITY_ESTIMATORS)}")
        self.density = density
        self.n_components = int(n_components)
        self.seed = int(seed)
        self._scaler: StandardScaler | None = None
        self._release_model: KernelDensity | GaussianMixture | None = None
        self._reference_model: KernelDensity | GaussianMixture | None = None

    def _estimator(self, rows: np.ndarray) -> KernelDensity | GaussianMixture:
        if self.density == "kde":
            return KernelDensity(kernel="gaussian", bandwidth="scott").fit(rows)
        components = max(1, min(self.n_components, rows.shape[0] // 2))
        return GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=self.seed).fit(rows)

    def fit(self, release: np.ndarray, reference: np.ndarray) -> "DensityRatioAttack":
        """Estimate both densities; features are standardized with the reference set's scale."""
        release, reference = flatten(release), flatten(reference)
        for name, rows in (("release", release), ("reference", reference)):
            if rows.shape[0] < 2:
                raise PrivmedError(f"the density-ratio attack needs at least 2 {name} images, got {rows.shape[0]}")
        self._scaler = StandardScaler().fit(reference)
        self._release_model = self._estimator(self._scaler.transform(release))
        self._reference_model = self._estimator(self._scaler.transform(reference))
        return self

    def score(self, candidates: np.ndarray) -> np.ndarray:
        """``log p_release(x) - log p_reference(x)`` per candidate (higher = more likely a member)."""
        if self._scaler is None or self._release_model is None or self._reference_model is None:
            raise PrivmedError("fit the density-ratio attack before scoring candidates")
        rows = self._scaler.transform(flatten(candidates))
        return self._release_model.score_samples(rows) - self._reference_model.score_samples(rows)
