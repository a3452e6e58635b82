"""One Gaussian mechanism, calibrated exactly: the analytic Gaussian of Balle & Wang (2018).

Adding N(0, sigma^2 I) to a vector whose L2 sensitivity is Delta is (epsilon, delta)-DP exactly when

    Phi(Delta / (2 sigma) - epsilon sigma / Delta) - e^epsilon Phi(-Delta / (2 sigma) - epsilon sigma / Delta) <= delta

(Balle & Wang 2018, Theorem 8: the tight privacy profile of one Gaussian release). Written here with
scipy because dp-accounting's privacy-loss distributions discretize (a pessimistic, slightly larger
epsilon) and the classical sigma = Delta sqrt(2 ln(1.25/delta)) / epsilon holds only for epsilon < 1.
The tests check both directions against dp-accounting's PLD accountant.

:class:`GaussianMechanism` draws the noise from a secret AES-CTR stream (:mod:`privmed.privacy.secure_rng`,
float64 with exact tails), or from one reproducible from ``seed`` (a research release, flagged by its caller).
"""

from __future__ import annotations

import math

import torch
from scipy import optimize, special, stats

from privmed.errors import PrivacyError
from privmed.privacy.calibration import check_epsilon
from privmed.privacy.mechanisms import check_positive
from privmed.privacy.secure_rng import random_stream

GAUSSIAN_MECHANISM = "Gaussian (one release, analytic calibration)"
GAUSSIAN_ACCOUNTANT = "analytic-gaussian"
"""The accountant name a one-shot Gaussian release states in its privacy report."""
GAUSSIAN_PURPOSE = "gaussian-release"
NEIGHBOURING_RELATIONS = ("add-remove", "replace-one")


def _check_delta(delta: float) -> float:
    value = check_positive(delta, "delta")
    if value >= 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta}")
    return value


def gaussian_delta(sigma: float, sensitivity: float, epsilon: float) -> float:
    """The smallest delta for which N(0, sigma^2) noise on an L2-sensitivity query is (epsilon, delta)-DP."""
    sigma, sensitivity = check_positive(sigma, "sigma"), check_positive(sensitivity, "sensitivity")
    epsilon = float(epsilon)
    if epsilon < 0:
        raise PrivacyError(f"epsilon must be >= 0, got {epsilon}")
    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    # e^eps * Phi(-a - b) in the log domain: it overflows for large epsilon otherwise.
    second = math.exp(epsilon + special.log_ndtr(-a - b))
    return max(0.0, float(stats.norm.cdf(a - b)) - second)


def gaussian_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """The smallest epsilon of one Gaussian release with noise ``sigma`` at ``delta`` (0 if delta is already met)."""
    delta = _check_delta(delta)
    if gaussian_delta(sigma, sensitivity, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gaussian_delta(sigma, sensitivity, high) > delta:
        high *= 2
        if high > 1e6:
            raise PrivacyError(f"no finite epsilon for sigma={sigma:g}, sensitivity={sensitivity:g} at delta={delta:g}")
    return float(optimize.brentq(lambda e: gaussian_delta(sigma, sensitivity, e) - delta, 0.0, high, xtol=1e-12, rtol=1e-12))


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The smallest noise std sigma that makes one Gaussian release (epsilon, delta)-DP (Balle & Wang 2018).

    Returned rounded up by a relative 1e-9, so ``gaussian_delta(sigma, ...)`` is at most ``delta``.
    """
    sensitivity, epsilon, delta = check_positive(sensitivity, "sensitivity"), check_epsilon(epsilon), _check_delta(delta)
    low, high = sensitivity * 1e-3, sensitivity
    while gaussian_delta(high, sensitivity, epsilon) > delta:
        low, high = high, high * 2
        if high > sensitivity * 1e9:
            raise PrivacyError(f"epsilon={epsilon:g} at delta={delta:g} is out of reach with any noise")
    if gaussian_delta(low, sensitivity, epsilon) <= delta:
        raise PrivacyError(f"epsilon={epsilon:g} at delta={delta:g} needs almost no noise: choose a smaller epsilon")
    sigma = optimize.brentq(lambda s: gaussian_delta(s, sensitivity, epsilon) - delta, low, high, xtol=1e-14, rtol=1e-12)
    return float(sigma) * (1 + 1e-9)


class GaussianMechanism:
    """Adds N(0, sigma^2) to every element, sigma calibrated so one release is (epsilon, delta)-DP.

    ``sensitivity`` is the L2 distance by which one unit's data can move the released tensor under the
    neighbouring relation the caller states. Noise comes from a secret stream, or from one reproducible
    from ``seed`` (a research release: no guarantee against anyone who knows the seed).
    """

    mechanism = GAUSSIAN_MECHANISM

    def __init__(self, sensitivity: float, epsilon: float, delta: float, *, seed: int | None = None) -> None:
        self.sensitivity = check_positive(sensitivity, "sensitivity")
        self.epsilon = check_epsilon(epsilon)
        self.delta = _check_delta(delta)
        self.sigma = gaussian_sigma(self.sensitivity, self.epsilon, self.delta)
        self.seed = None if seed is None else int(seed)
        self._stream = random_stream(self.seed, GAUSSIAN_PURPOSE)

    @property
    def reproducible(self) -> bool:
        """Whether the noise follows from a seed rather than from a secret stream."""
        return self.seed is not None

    def add_noise(self, tensor: torch.Tensor) -> torch.Tensor:
        """A noisy float64 copy of ``tensor``; the input is left unchanged."""
        values = tensor.detach().to(torch.float64)
        return values + self._stream.gaussian(tuple(values.shape), self.sigma, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"GaussianMechanism(sensitivity={self.sensitivity:g}, epsilon={self.epsilon:g}, delta={self.delta:g}, sigma={self.sigma:.6g})"
