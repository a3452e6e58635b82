"""The Gaussian mechanism released once: exact calibration in both directions (analytic Gaussian).

For a query of L2 sensitivity Delta, adding N(0, sigma^2) noise to each coordinate is (epsilon,
delta)-DP if and only if (Balle & Wang 2018, "Improving the Gaussian mechanism for differential
privacy", Theorem 8)

    Phi(Delta / (2 sigma) - epsilon sigma / Delta) - e^epsilon Phi(-Delta / (2 sigma) - epsilon sigma / Delta) <= delta.

The classical sigma = Delta sqrt(2 ln(1.25/delta)) / epsilon is only valid for epsilon < 1 and is
not used. Neither Opacus nor dp-accounting exposes this closed form for one release (dp-accounting's
PLD reaches it numerically, which the tests use as the independent check), so it is written here
with scipy's normal distribution and root finding.
"""

from __future__ import annotations

import math

from scipy import optimize, stats

from privmed.errors import PrivacyError
from privmed.privacy.calibration import check_epsilon

GAUSSIAN_MECHANISM = "Gaussian (one release)"
GAUSSIAN_ACCOUNTANT = "analytic Gaussian"


def gaussian_delta(epsilon: float, sigma: float, sensitivity: float) -> float:
    """The smallest delta for which N(0, sigma^2) noise on a query of L2 ``sensitivity`` is (epsilon, delta)-DP."""
    ratio = sensitivity / sigma
    first = stats.norm.cdf(ratio / 2 - epsilon / ratio)
    second = math.exp(epsilon + stats.norm.logcdf(-ratio / 2 - epsilon / ratio))
    return max(float(first - second), 0.0)


def _check(delta: float, sensitivity: float) -> None:
    if not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta}")
    if not (math.isfinite(sensitivity) and sensitivity > 0):
        raise PrivacyError(f"the sensitivity must be a finite number > 0, got {sensitivity}")


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The smallest noise std that makes one Gaussian release of L2 ``sensitivity`` (epsilon, delta)-DP."""
    epsilon = check_epsilon(epsilon)
    _check(delta, sensitivity)

    def excess(log_sigma: float) -> float:
        return gaussian_delta(epsilon, math.exp(log_sigma), sensitivity) - delta

    low, high = math.log(sensitivity) - 10, math.log(sensitivity) + 10
    while excess(high) > 0:
        high += 10
    return math.exp(optimize.brentq(excess, low, high, xtol=1e-12, rtol=1e-12)) * (1 + 1e-9)


def gaussian_epsilon(sigma: float, delta: float, sensitivity: float) -> float:
    """The epsilon of one Gaussian release with noise std ``sigma`` at ``delta`` (0 if even epsilon = 0 meets delta)."""
    _check(delta, sensitivity)
    if not (math.isfinite(sigma) and sigma > 0):
        raise PrivacyError(f"the noise std must be a finite number > 0, got {sigma}")
    if gaussian_delta(0.0, sigma, sensitivity) <= delta:
        return 0.0

    def excess(epsilon: float) -> float:
        return gaussian_delta(epsilon, sigma, sensitivity) - delta

    high = 1.0
    while excess(high) > 0:
        high *= 2
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-12, rtol=1e-12))
