"""The single Gaussian release: calibrated exactly, checked against dp-accounting's PLD."""

from __future__ import annotations

import math

import pytest
from dp_accounting.pld import privacy_loss_distribution

from privmed.errors import PrivacyError
from privmed.privacy.gaussian import gaussian_delta, gaussian_epsilon, gaussian_sigma


def pld_epsilon(sigma: float, delta: float, sensitivity: float) -> float:
    pld = privacy_loss_distribution.from_gaussian_mechanism(sigma, sensitivity=sensitivity, value_discretization_interval=1e-4)
    return pld.get_epsilon_for_delta(delta)


@pytest.mark.parametrize(("epsilon", "delta", "sensitivity"), [(0.5, 1e-5, 1.0), (1.0, 1e-6, 0.1), (8.0, 5e-3, 0.1), (10.0, 1e-5, 2.0)])
def test_calibrated_sigma_gives_the_target_epsilon_by_an_independent_pld(epsilon: float, delta: float, sensitivity: float) -> None:
    sigma = gaussian_sigma(epsilon, delta, sensitivity)
    assert pld_epsilon(sigma, delta, sensitivity) == pytest.approx(epsilon, rel=2e-3, abs=2e-3)
    assert gaussian_delta(epsilon, sigma, sensitivity) <= delta
    assert gaussian_epsilon(sigma, delta, sensitivity) == pytest.approx(epsilon, rel=1e-6)


def test_classical_formula_under_noises_above_epsilon_one() -> None:
    # FRONTIER.md: at epsilon 10 the classical sigma is ~0.484, the exact one ~0.500 (delta 1e-5, sensitivity 1).
    classical = math.sqrt(2 * math.log(1.25 / 1e-5)) / 10
    assert gaussian_sigma(10.0, 1e-5, 1.0) > classical
    assert pld_epsilon(classical, 1e-5, 1.0) > 10.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(PrivacyError):
        gaussian_sigma(0.0, 1e-5, 1.0)
    with pytest.raises(PrivacyError):
        gaussian_sigma(1.0, 1.0, 1.0)
    with pytest.raises(PrivacyError):
        gaussian_epsilon(1.0, 1e-5, 0.0)
