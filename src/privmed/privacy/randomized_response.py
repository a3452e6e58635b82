"""k-ary randomized response for class labels: epsilon-DP per label (Warner 1965; Kairouz et al. 2016).

Each label is kept with probability e^eps / (e^eps + k - 1) and otherwise replaced by one of the
other k - 1 classes, uniformly. Two inputs give any output with probabilities whose ratio is at most
e^eps, so one call is pure epsilon-DP per record. Written here because neither Opacus nor
dp-accounting samples it; the class count k must be public (the dataset's class names), never
read off the labels.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from privmed.errors import PrivacyError
from privmed.privacy.calibration import check_epsilon


def keep_probability(epsilon: float, n_classes: int) -> float:
    """The probability that randomized response returns the true label: e^eps / (e^eps + k - 1)."""
    epsilon = check_epsilon(epsilon)
    if n_classes < 2:
        raise PrivacyError(f"randomized response needs at least two classes, got {n_classes}")
    return 1.0 / (1.0 + (n_classes - 1) * math.exp(-epsilon))


def randomized_response(labels: np.ndarray, n_classes: int, epsilon: float, seed: int | None = None) -> np.ndarray:
    """Each label kept with :func:`keep_probability`, else a uniformly chosen other class.

    ``seed`` is for tests only; by default the generator is seeded with 128 bits from the OS, so the
    released labels cannot be predicted from anything published.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise PrivacyError(f"labels must lie in 0..{n_classes - 1} for randomized response over {n_classes} classes")
    keep = keep_probability(epsilon, n_classes)
    rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
    flip = rng.random(labels.shape) >= keep
    shift = rng.integers(1, n_classes, size=labels.shape)
    return np.where(flip, (labels + shift) % n_classes, labels)
