"""Pairwise attack (seed 001): a candidate close to some released image was probably trained on.

The score of a candidate is minus the Euclidean distance to its nearest released image, so that a
higher score means "more likely a member", like every attack in this package.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from privmed.errors import PrivmedError

__all__ = ["flatten", "nearest_distances", "pairwise_scores"]


def flatten(vectors: np.ndarray) -> np.ndarray:
    """(N, ...) images or features as float64 rows (N, D)."""
    array = np.asarray(vectors, dtype=np.float64)
    return array.reshape(array.shape[0], -1)


def nearest_distances(candidates: np.ndarray, release: np.ndarray) -> np.ndarray:
    """Euclidean distance from each candidate to its nearest released vector, shape (N,)."""
    candidates, release = flatten(candidates), flatten(release)
    if release.shape[0] == 0:
        raise PrivmedError("the release holds no images to attack")
    if candidates.shape[1] != release.shape[1]:
        raise PrivmedError(f"candidates have {candidates.shape[1]} values each, released images {release.shape[1]}: sizes differ")
    index = NearestNeighbors(n_neighbors=1).fit(release)
    distances, _ = index.kneighbors(candidates)
    return distances[:, 0]


def pairwise_scores(candidates: np.ndarray, release: np.ndarray) -> np.ndarray:
    """Membership scores: minus the nearest-neighbour distance (higher = more likely a member)."""
    return -nearest_distances(candidates, release)
