"""Randomized response for labels: the output distribution is the k-ary RR one, so its epsilon is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privmed.errors import PrivacyError
from privmed.privacy.randomized_response import keep_probability, randomized_response


def test_output_frequencies_match_k_ary_randomized_response() -> None:
    n, k, epsilon = 60_000, 3, 1.0
    released = randomized_response(np.zeros(n, dtype=np.int64), k, epsilon, seed=5)
    counts = np.bincount(released, minlength=k) / n
    keep = math.e / (math.e + k - 1)  # written out, not privmed's keep_probability
    tolerance = 5 * math.sqrt(keep * (1 - keep) / n)
    assert counts[0] == pytest.approx(keep, abs=tolerance)
    assert counts[1] == pytest.approx((1 - keep) / 2, abs=tolerance) and counts[2] == pytest.approx((1 - keep) / 2, abs=tolerance)
    # The worst ratio of output probabilities between two inputs is exactly e^epsilon.
    assert keep / ((1 - keep) / (k - 1)) == pytest.approx(math.exp(epsilon))
    assert keep_probability(epsilon, k) == pytest.approx(keep)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(PrivacyError):
        randomized_response(np.array([0, 3]), 3, 1.0)
    with pytest.raises(PrivacyError):
        keep_probability(1.0, 1)
    with pytest.raises(PrivacyError):
        keep_probability(0.0, 2)
