"""The hypothesis-testing bound of DP on any membership test's ROC curve (Kairouz et al. 2015)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privmed.errors import PrivmedError
from privmed.privacy.hypothesis import dp_roc_bound


@pytest.mark.parametrize("epsilon, delta", [(0.5, 0.0), (1.0, 1e-5), (3.0, 0.01)])
def test_dp_roc_bound_matches_kairouz_formula(epsilon: float, delta: float) -> None:
    for fpr in np.linspace(0, 1, 21):
        expected = min(1.0, math.exp(epsilon) * fpr + delta, 1 - math.exp(-epsilon) * (1 - delta - fpr))
        assert dp_roc_bound(fpr, epsilon, delta) == pytest.approx(max(expected, 0.0), abs=1e-12)


def test_dp_roc_bound_stays_exact_for_epsilons_whose_exponential_overflows() -> None:
    # e^720 overflows a float, but e^720 * 1e-320 = e^(720 - 736.8) ~ 5e-8 does not: the bound must keep it.
    fpr = np.array([0.0, 1e-320, 1e-300, 0.5])
    bound = dp_roc_bound(fpr, 720.0, 1e-6)
    expected_tiny = math.exp(720.0 + math.log(1e-320)) + 1e-6
    np.testing.assert_allclose(bound, [1e-6, expected_tiny, 1.0, 1.0], rtol=1e-9)


def test_dp_roc_bound_is_chance_at_zero_epsilon_and_refuses_bad_values() -> None:
    grid = np.linspace(0, 1, 11)
    np.testing.assert_allclose(dp_roc_bound(grid, 0.0, 0.0), grid, atol=1e-12)
    with pytest.raises(PrivmedError):
        dp_roc_bound(grid, -1.0)
    with pytest.raises(PrivmedError):
        dp_roc_bound(grid, 1.0, delta=1.5)
