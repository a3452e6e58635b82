"""Calibration in both directions, and the checks on privacy parameters."""

from __future__ import annotations

import math

import pytest

from privmed.errors import PrivacyError
from privmed.privacy.accountants import RDPAccountant
from privmed.privacy.calibration import (
    check_delta,
    check_epsilon,
    check_sample_rate,
    default_delta,
    dpsgd_epsilon,
    dpsgd_noise_multiplier,
    dpsgd_steps_for,
    steps_for_epochs,
)

DELTA = 1e-5


def test_dpsgd_epsilon_is_the_accountants() -> None:
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=1.3, sample_rate=0.02, num_steps=700)
    assert dpsgd_epsilon(1.3, 0.02, 700, DELTA) == accountant.get_epsilon(DELTA)


@pytest.mark.parametrize(
    ("target", "rate", "steps", "accountant"),
    [(8.0, 0.01, 10000, "rdp"), (1.0, 0.01, 1000, "rdp"), (0.1, 0.001, 100, "rdp"), (3.0, 0.05, 200, "prv")],
)
def test_calibrated_noise_stays_within_target_and_close_to_it(target: float, rate: float, steps: int, accountant: str) -> None:
    noise = dpsgd_noise_multiplier(target, rate, steps, DELTA, accountant)
    epsilon = dpsgd_epsilon(noise, rate, steps, DELTA, accountant)
    assert 0.99 * target <= epsilon <= target
    # Noticeably less noise overshoots the target: the noise found is (near) the smallest.
    assert dpsgd_epsilon(0.95 * noise, rate, steps, DELTA, accountant) > target


def test_steps_for_a_budget_is_the_last_step_within_it() -> None:
    steps = dpsgd_steps_for(2.0, 1.0, 0.02, DELTA)
    assert steps > 1
    assert dpsgd_epsilon(1.0, 0.02, steps, DELTA) <= 2.0 < dpsgd_epsilon(1.0, 0.02, steps + 1, DELTA)
    assert dpsgd_steps_for(0.01, 0.5, 1.0, DELTA) == 0


def test_steps_for_epochs_is_what_the_trainer_takes() -> None:
    """Finding 9: the plan and training agree: round(1/q) steps per epoch (the trainer's plan_training)."""
    from privmed.privacy.plan import plan_training

    assert steps_for_epochs(3, 0.01) == 300
    assert steps_for_epochs(1, 0.3) == 3  # ceil(1/0.3) = 4 was planned, training takes round(1/0.3) = 3
    for n_units, batch, epochs in ((10, 3, 3), (7, 4, 2), (100, 30, 5), (1000, 7, 1)):
        plan = plan_training(target_epsilon=8.0, delta=1e-5, unit="record", record_kind="image", n_units=n_units,
                             batch_size=batch, epochs=epochs)
        assert steps_for_epochs(epochs, batch / n_units) == plan.steps == epochs * max(1, round(n_units / batch))
    with pytest.raises(PrivacyError, match="epochs"):
        steps_for_epochs(0, 0.1)


@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, "eight"])
def test_check_epsilon_refuses_non_positive_or_non_finite(epsilon: object) -> None:
    with pytest.raises(PrivacyError, match="epsilon"):
        check_epsilon(epsilon)  # type: ignore[arg-type]


def test_check_delta_refuses_one_over_n_and_says_why() -> None:
    n = 1000
    assert check_delta(default_delta(n), n) == 1e-5
    with pytest.raises(PrivacyError, match=r"1/N.*in the clear"):
        check_delta(1 / n, n, "patient")
    with pytest.raises(PrivacyError, match="patient"):
        check_delta(0.5, n, "patient")
    for delta in (0.0, 1.0, 1.5, -1e-9, math.nan):
        with pytest.raises(PrivacyError, match="delta"):
            check_delta(delta)


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01, math.nan])
def test_check_sample_rate_refuses_values_outside_unit_interval(rate: float) -> None:
    with pytest.raises(PrivacyError, match="sample_rate"):
        check_sample_rate(rate)
    assert check_sample_rate(1) == 1.0


def test_calibration_refuses_bad_inputs_by_name() -> None:
    with pytest.raises(PrivacyError, match="epsilon"):
        dpsgd_noise_multiplier(0.0, 0.01, 100, DELTA)
    with pytest.raises(PrivacyError, match="delta"):
        dpsgd_noise_multiplier(1.0, 0.01, 100, 1.0)
    with pytest.raises(PrivacyError, match="steps"):
        dpsgd_epsilon(1.0, 0.01, 0, DELTA)
    with pytest.raises(PrivacyError, match="cannot account DP-SGD"):
        dpsgd_epsilon(1.0, 0.01, 10, DELTA, accountant="laplace")
    with pytest.raises(PrivacyError, match="at least one unit"):
        default_delta(0)


def test_default_delta_is_at_most_1e_5_and_one_over_ten_n() -> None:
    """Finding 3: the default was 1/(N+1) (0.048 for DRIVE's 20 images)."""
    from privmed.privacy.calibration import delta_is_large

    for n in (1, 20, 41, 1000, 10**5, 10**7):
        assert default_delta(n) <= min(1e-5, 1 / (10 * n))
    assert default_delta(20) == 1e-5 and default_delta(10**7) == pytest.approx(1e-8)
    assert delta_is_large(1 / 21, 20) and not delta_is_large(1e-5, 20) and not delta_is_large(1e-3, 100)
