"""Checks on privacy parameters, and DP-SGD calibration in both directions.

``dpsgd_epsilon`` answers "what does this noise give?"; ``dpsgd_noise_multiplier`` answers "what
noise do I need for this epsilon?" and ``dpsgd_steps_for`` "how long can I train on this budget?".
All of them go through the accountants in :mod:`privmed.privacy.accountants`, so every epsilon
privmed states comes from one place.
"""

from __future__ import annotations

import logging
import math
import numbers

from privmed.errors import PrivacyError
from privmed.privacy.accountants import DPSGD_ACCOUNTANTS, SubsampledGaussianAccountant, make_accountant

logger = logging.getLogger(__name__)

MAX_NOISE_MULTIPLIER = 1e6
MIN_NOISE_MULTIPLIER = 0.05
MAX_STEPS = 10**9


def check_epsilon(epsilon: float) -> float:
    """Return ``epsilon`` as a float if it is a finite positive number, else raise :class:`PrivacyError`."""
    value = _as_float(epsilon, "epsilon")
    if not math.isfinite(value) or value <= 0:
        raise PrivacyError(f"epsilon must be a finite number > 0, got {epsilon}")
    return value


def check_delta(delta: float, n_units: int | None = None, unit: str = "unit") -> float:
    """Return ``delta`` if it is in (0, 1) and, given ``n_units`` = N, strictly below 1/N.

    A delta of 1/N or more allows a mechanism that publishes one randomly chosen unit's data in the
    clear, so it protects no one; privmed defaults to ``default_delta(N)`` = min(1e-5, 1/(10N)) and
    flags any delta above 1/(10N) (:func:`delta_is_large`).
    """
    value = _as_float(delta, "delta")
    if not 0 < value < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta}")
    if n_units is not None:
        if n_units < 1:
            raise PrivacyError(f"the private data must hold at least one {unit}, got N={n_units}")
        if value >= 1 / n_units:
            raise PrivacyError(
                f"delta={value:g} is not below 1/N = {1 / n_units:g} for N={n_units} (privacy unit: {unit}): a delta "
                f"that large allows publishing one {unit}'s data in the clear; use delta < 1/N (default min(1e-5, 1/(10N)))"
            )
    return value


DEFAULT_DELTA_CAP = 1e-5
"""The default delta never exceeds this, however few units the data holds."""
LARGE_DELTA_FACTOR = 10
"""A delta above 1/(LARGE_DELTA_FACTOR * N) is flagged: a mechanism that leaks one unit in the clear
with probability delta leaks someone's data with probability N * delta, which this keeps below 1/10."""


def default_delta(n_units: int) -> float:
    """The default delta for ``n_units`` units: min(1e-5, 1/(10N)), so that N * delta <= 1/10."""
    if n_units < 1:
        raise PrivacyError(f"the private data must hold at least one unit to set delta, got {n_units}")
    return min(DEFAULT_DELTA_CAP, 1.0 / (LARGE_DELTA_FACTOR * n_units))


def delta_is_large(delta: float, n_units: int | None) -> bool:
    """Whether ``delta`` exceeds 1/(10N): allowed (below 1/N) but flagged in reports and the ledger."""
    return bool(n_units) and float(delta) > 1.0 / (LARGE_DELTA_FACTOR * int(n_units))


def large_delta_warning(delta: float, n_units: int, unit: str = "unit") -> str:
    """The sentence that flags a delta above 1/(10N)."""
    return (
        f"delta = {delta:.3g} is above 1/(10N) = {1.0 / (LARGE_DELTA_FACTOR * n_units):.3g} for N = {n_units} {unit}s: "
        f"a mechanism may then reveal some {unit}'s data in the clear with probability up to N * delta = {n_units * delta:.2g}"
    )


def check_sample_rate(sample_rate: float) -> float:
    """Return ``sample_rate`` if it is a Poisson sampling probability in (0, 1]."""
    value = _as_float(sample_rate, "sample_rate")
    if not 0 < value <= 1:
        raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate}")
    return value


def check_noise_multiplier(noise_multiplier: float) -> float:
    """Return ``noise_multiplier`` if it is a finite positive number."""
    value = _as_float(noise_multiplier, "noise_multiplier")
    if not math.isfinite(value) or value <= 0:
        raise PrivacyError(f"noise_multiplier must be a finite number > 0, got {noise_multiplier}")
    return value


def check_steps(steps: int) -> int:
    """Return ``steps`` if it is a whole number >= 1."""
    whole = isinstance(steps, numbers.Integral) or (isinstance(steps, float) and steps.is_integer())
    if isinstance(steps, bool) or not whole or steps < 1:
        raise PrivacyError(f"steps must be a whole number >= 1, got {steps}")
    return int(steps)


def steps_per_epoch(sample_rate: float) -> int:
    """Steps in one epoch at Poisson rate q: round(1/q) (one pass over the data in expectation), at least 1."""
    return max(1, round(1.0 / check_sample_rate(sample_rate)))


def steps_for_epochs(epochs: float, sample_rate: float) -> int:
    """DP-SGD steps in ``epochs`` epochs of :func:`steps_per_epoch` steps: what training plans and takes."""
    epochs_value = _as_float(epochs, "epochs")
    if not math.isfinite(epochs_value) or epochs_value <= 0:
        raise PrivacyError(f"epochs must be a number > 0, got {epochs}")
    return max(1, math.ceil(steps_per_epoch(sample_rate) * epochs_value - 1e-9))


def dpsgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at ``delta``, by the named accountant."""
    tracker = _dpsgd_accountant(accountant)
    tracker.step(
        noise_multiplier=check_noise_multiplier(noise_multiplier),
        sample_rate=check_sample_rate(sample_rate),
        num_steps=check_steps(steps),
    )
    return tracker.get_epsilon(check_delta(delta))


def dpsgd_noise_multiplier(
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
    tolerance: float = 0.01,
) -> float:
    """The smallest noise multiplier found whose epsilon is <= ``target_epsilon``.

    Bisection on the noise: every candidate's epsilon is computed by the accountant, and only a
    noise whose own epsilon is at most the target is ever returned; the search stops once that
    epsilon is within ``tolerance`` (relative) below the target. Raises :class:`PrivacyError` when
    even a noise multiplier of 1e6 does not reach the target.
    """
    target = check_epsilon(target_epsilon)
    sample_rate, steps, delta = check_sample_rate(sample_rate), check_steps(steps), check_delta(delta)
    _dpsgd_accountant(accountant)

    def epsilon_at(noise: float) -> float:
        return dpsgd_epsilon(noise, sample_rate, steps, delta, accountant)

    low, high = None, 1.0
    epsilon_high = epsilon_at(high)
    while epsilon_high > target:
        low, high = high, high * 2
        if high > MAX_NOISE_MULTIPLIER:
            raise PrivacyError(
                f"target epsilon {target:g} is out of reach at sample_rate={sample_rate:g}, steps={steps}, "
                f"delta={delta:g}: even noise_multiplier {MAX_NOISE_MULTIPLIER:g} exceeds it"
            )
        epsilon_high = epsilon_at(high)
    while low is None:
        candidate = high / 2
        if candidate < MIN_NOISE_MULTIPLIER:
            logger.info("epsilon stays below %g down to noise_multiplier %g; using %g", target, high, high)
            return high
        epsilon_candidate = epsilon_at(candidate)
        if epsilon_candidate > target:
            low = candidate
        else:
            high, epsilon_high = candidate, epsilon_candidate
    while epsilon_high < target * (1 - tolerance) and high - low > 1e-9 * high:
        middle = (low + high) / 2
        epsilon_middle = epsilon_at(middle)
        if epsilon_middle <= target:
            high, epsilon_high = middle, epsilon_middle
        else:
            low = middle
    return high


def dpsgd_steps_for(
    target_epsilon: float, noise_multiplier: float, sample_rate: float, delta: float, accountant: str = "rdp"
) -> int:
    """The largest number of DP-SGD steps whose epsilon is <= ``target_epsilon`` (0 if not even one)."""
    target = check_epsilon(target_epsilon)
    noise, sample_rate, delta = check_noise_multiplier(noise_multiplier), check_sample_rate(sample_rate), check_delta(delta)

    def within_budget(steps: int) -> bool:
        return dpsgd_epsilon(noise, sample_rate, steps, delta, accountant) <= target

    if not within_budget(1):
        return 0
    good, bad = 1, 2
    while within_budget(bad):
        good, bad = bad, bad * 2
        if bad > MAX_STEPS:
            logger.info("epsilon stays below %g for %d steps; capping there", target, good)
            return good
    while bad - good > 1:
        middle = (good + bad) // 2
        if within_budget(middle):
            good = middle
        else:
            bad = middle
    return good


def _dpsgd_accountant(name: str) -> SubsampledGaussianAccountant:
    if str(name).strip().lower() not in DPSGD_ACCOUNTANTS:
        raise PrivacyError(f"accountant {name!r} cannot account DP-SGD: use one of {', '.join(DPSGD_ACCOUNTANTS)}")
    accountant = make_accountant(name)
    assert isinstance(accountant, SubsampledGaussianAccountant)
    return accountant


def _as_float(value: float, name: str) -> float:
    if isinstance(value, bool):
        raise PrivacyError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PrivacyError(f"{name} must be a number, got {value!r}") from None
