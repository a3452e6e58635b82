"""Distribution attack (seed 001): many released images crowding around a candidate betray it.

The score is the number of released images within a radius of the candidate. Seed 001 sets the
radius at a low percentile of all candidate-to-release distances (the 1st in pixel space, the 0.1th
in an embedding), so the neighbourhood is small whatever the scale of the space.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from privmed.errors import PrivmedError
from privmed.evaluate.attacks.pairwise import flatten

__all__ = ["PIXEL_PERCENTILE", "EMBEDDING_PERCENTILE", "distance_percentile", "neighbour_counts", "distribution_scores"]

PIXEL_PERCENTILE = 1.0
"""Seed 001's neighbourhood radius in pixel space: the 1st percentile of pairwise distances."""

EMBEDDING_PERCENTILE = 0.1
"""Seed 001's neighbourhood radius in an embedding: the 0.1th percentile of pairwise distances."""

_MAX_PAIRS = 20_000_000
"""Above this many candidate-release pairs, the percentile is estimated on a random subset of rows."""


def distance_percentile(candidates: np.ndarray, release: np.ndarray, percentile: float, seed: int = 0) -> float:
    """The ``percentile``-th percentile of all Euclidean distances between candidates and released vectors."""
    if not 0 < percentile < 100:
        raise PrivmedError(f"the neighbourhood percentile must be in (0, 100), got {percentile}")
    candidates, release = flatten(candidates), flatten(release)
    if candidates.shape[0] * release.shape[0] > _MAX_PAIRS:
        rows = max(1, _MAX_PAIRS // release.shape[0])
        candidates = candidates[np.random.default_rng(seed).choice(candidates.shape[0], size=rows, replace=False)]
    return float(np.percentile(cdist(candidates, release), percentile))


def neighbour_counts(candidates: np.ndarray, release: np.ndarray, radius: float) -> np.ndarray:
    """How many released vectors lie within ``radius`` of each candidate, shape (N,)."""
    index = NearestNeighbors(radius=radius).fit(flatten(release))
    neighbourhoods = index.radius_neighbors(flatten(candidates), return_distance=False)
    return np.array([len(neighbours) for neighbours in neighbourhoods], dtype=np.float64)


def distribution_scores(candidates: np.ndarray, release: np.ndarray, percentile: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """Membership scores (neighbour counts, higher = more likely a member) and the radius used."""
    radius = distance_percentile(candidates, release, percentile, seed=seed)
    return neighbour_counts(candidates, release, radius), radius
