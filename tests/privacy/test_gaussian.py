"""The analytic Gaussian: calibration checked against dp-accounting's PLD accountant, noise std, refusals."""

from __future__ import annotations

import math

import pytest
import torch
from dp_accounting import GaussianDpEvent
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

from privmed.errors import PrivacyError
from privmed.privacy.gaussian import GaussianMechanism, gaussian_delta, gaussian_epsilon, gaussian_sigma


def pld_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """Epsilon of one Gaussian release by dp-accounting's privacy-loss distribution (independent of privmed)."""
    accountant = PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(GaussianDpEvent(noise_multiplier=sigma / sensitivity))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("sensitivity", [1.0, 2.0])
def test_calibrated_sigma_spends_the_target_epsilon_by_dp_accounting(epsilon: float, sensitivity: float) -> None:
    sigma = gaussian_sigma(sensitivity, epsilon, 1e-5)
    # PLD discretizes pessimistically: its epsilon is at or a hair above the exact one.
    assert pld_epsilon(sigma, sensitivity, 1e-5) == pytest.approx(epsilon, rel=2e-3)
    assert gaussian_epsilon(sigma, sensitivity, 1e-5) == pytest.approx(epsilon, rel=1e-6)
    # Smallest: 1% less noise breaks the target.
    assert pld_epsilon(0.99 * sigma, sensitivity, 1e-5) > epsilon * 1.005


def test_sigma_beats_the_classical_formula_and_stays_exact_where_the_classical_one_under_noises() -> None:
    classical = lambda eps: math.sqrt(2 * math.log(1.25 / 1e-5)) / eps  # noqa: E731
    assert gaussian_sigma(1.0, 0.5, 1e-5) < classical(0.5)
    # At epsilon 10 the classical sigma is too small: it does not give (10, 1e-5).
    assert gaussian_delta(classical(10.0), 1.0, 10.0) > 1e-5
    assert gaussian_delta(gaussian_sigma(1.0, 10.0, 1e-5), 1.0, 10.0) <= 1e-5


def test_noise_std_equals_the_calibrated_sigma() -> None:
    mechanism = GaussianMechanism(1.0, 1.0, 1e-5, seed=3)
    draws = mechanism.add_noise(torch.zeros(200_000))
    # The sample std of 200k draws lies within 0.5% of sigma with overwhelming probability (its sd is ~0.16%).
    assert float(draws.std()) == pytest.approx(mechanism.sigma, rel=5e-3)
    assert abs(float(draws.mean())) < 5 * mechanism.sigma / math.sqrt(len(draws))
    assert mechanism.sigma == pytest.approx(3.7306, rel=1e-4)


def test_secret_noise_has_the_same_std_and_differs_between_mechanisms() -> None:
    first, second = (GaussianMechanism(2.0, 8.0, 1e-5).add_noise(torch.zeros(100_000)) for _ in range(2))
    assert float(first.std()) == pytest.approx(gaussian_sigma(2.0, 8.0, 1e-5), rel=1e-2)
    assert not torch.equal(first, second)  # no fixed seed behind the default noise


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_epsilon_is_refused(epsilon: float) -> None:
    with pytest.raises(PrivacyError):
        gaussian_sigma(1.0, epsilon, 1e-5)


@pytest.mark.parametrize(("sensitivity", "delta"), [(0.0, 1e-5), (-1.0, 1e-5), (1.0, 0.0), (1.0, 1.0)])
def test_bad_sensitivity_or_delta_is_refused(sensitivity: float, delta: float) -> None:
    with pytest.raises(PrivacyError):
        GaussianMechanism(sensitivity, 1.0, delta)
