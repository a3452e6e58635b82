"""What a differential-privacy guarantee allows an attacker: the hypothesis-testing view of DP.

By Kairouz, Oh & Viswanath (2015, Theorem 2.1), any test of "member" versus "not a member" on an
(epsilon, delta)-DP release with false-positive rate ``a`` has true-positive rate at most
``min(e^eps a + delta, 1 - e^-eps (1 - delta - a))``. The attack reports and the release report draw
and quote this curve; it is computed here only.
"""

from __future__ import annotations

import math

import numpy as np

from privmed.errors import PrivmedError

__all__ = ["dp_roc_bound"]


def dp_roc_bound(fpr: np.ndarray | float, epsilon: float, delta: float = 0.0) -> np.ndarray:
    """The highest true-positive rate any membership test can reach at ``fpr`` on an (epsilon, delta)-DP release."""
    if not epsilon >= 0 or not 0 <= delta <= 1:
        raise PrivmedError(f"the DP ROC bound needs epsilon >= 0 and delta in [0, 1], got epsilon={epsilon}, delta={delta}")
    fpr = np.clip(np.asarray(fpr, dtype=np.float64), 0.0, 1.0)
    if math.isinf(epsilon):
        return np.ones_like(fpr)
    # e^eps * fpr in the log domain, capped at 1 before exponentiating: exact for any epsilon (e^eps overflows past ~709).
    with np.errstate(divide="ignore"):
        scaled = np.exp(np.minimum(epsilon + np.log(fpr), 0.0))
    upper = np.minimum(scaled + delta, 1.0 - math.exp(-epsilon) * (1.0 - delta - fpr))
    return np.clip(upper, 0.0, 1.0)
