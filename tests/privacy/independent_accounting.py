"""Epsilons of Poisson-subsampled Gaussian DP-SGD computed by dp-accounting alone, to check privmed against.

Nothing here imports privmed: these are the independent values privmed's own accounting must agree with.
"""

from __future__ import annotations

from dp_accounting import dp_event
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant


def rdp_epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """dp-accounting's RDP accountant (its default orders), add-or-remove-one neighbours."""
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.PoissonSampledDpEvent(sample_rate, dp_event.GaussianDpEvent(noise_multiplier)), steps)
    return float(accountant.get_epsilon(delta))


def pld_epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float, interval: float = 1e-4) -> float:
    """dp-accounting's privacy-loss distribution, pessimistic (an upper bound on the exact epsilon that
    tends to it as ``interval``, the loss discretization, shrinks)."""
    pld = privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=noise_multiplier, sampling_prob=sample_rate, value_discretization_interval=interval, pessimistic_estimate=True
    )
    return float(pld.self_compose(steps).get_epsilon_for_delta(delta))
