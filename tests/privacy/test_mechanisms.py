"""The Laplace mechanism draws exact, reproducible Laplace noise at scale sensitivity / epsilon."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from privmed.errors import PrivacyError
from privmed.privacy.mechanisms import LaplaceMechanism, laplace_scale


def test_scale_is_sensitivity_over_epsilon() -> None:
    assert laplace_scale(2.0, 0.5) == 4.0
    mechanism = LaplaceMechanism(sensitivity=3.0, epsilon=1.5)
    assert mechanism.scale == 2.0 and mechanism.epsilon == 1.5


def test_noise_follows_the_laplace_distribution_at_that_scale() -> None:
    mechanism = LaplaceMechanism(sensitivity=1.0, epsilon=0.5, seed=0)
    noise = mechanism.add_noise(torch.zeros(100_000, dtype=torch.float64)).numpy()
    assert abs(noise.mean()) < 0.05
    assert float(abs(noise).mean()) == pytest.approx(2.0, rel=0.02)  # E|X| = b
    assert float(noise.var()) == pytest.approx(2 * 2.0**2, rel=0.03)  # Var X = 2 b^2
    assert stats.kstest(noise, stats.laplace(scale=2.0).cdf).pvalue > 0.01


def test_same_seed_same_noise_and_input_untouched() -> None:
    values = torch.rand(4, 1, 8, 8)
    original = values.clone()

    def release(seed: int) -> torch.Tensor:
        return LaplaceMechanism(1.0, 2.0, seed=seed).add_noise(values)

    first, again, other = release(7), release(7), release(8)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(values, original)
    assert first.shape == values.shape and first.dtype == values.dtype
    assert torch.isfinite(first).all()


def test_noise_without_a_seed_is_fresh() -> None:
    mechanism = LaplaceMechanism(1.0, 1.0)
    assert not torch.equal(mechanism.add_noise(torch.zeros(64)), mechanism.add_noise(torch.zeros(64)))


@pytest.mark.parametrize(("sensitivity", "epsilon", "name"), [(0.0, 1.0, "sensitivity"), (-1.0, 1.0, "sensitivity"), (1.0, 0.0, "epsilon"), (1.0, math.inf, "epsilon")])
def test_bad_parameters_are_refused(sensitivity: float, epsilon: float, name: str) -> None:
    with pytest.raises(PrivacyError, match=name):
        LaplaceMechanism(sensitivity, epsilon)
    with pytest.raises(PrivacyError, match=name):
        laplace_scale(sensitivity, epsilon)


def test_integer_tensors_are_refused() -> None:
    with pytest.raises(PrivacyError, match="floating-point"):
        LaplaceMechanism(1.0, 1.0).add_noise(torch.zeros(3, dtype=torch.int64))


def test_unseeded_noise_comes_from_a_secret_stream_at_the_same_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    from privmed.privacy.secure_rng import RandomStream

    scales, secret = [], []
    original = RandomStream.laplace

    def spy(self: RandomStream, shape, scale, dtype=torch.float32, device=None):
        scales.append(scale)
        secret.append(self.secret)
        return original(self, shape, scale, dtype, device)

    monkeypatch.setattr(RandomStream, "laplace", spy)
    mechanism = LaplaceMechanism(sensitivity=1.0, epsilon=0.5)
    torch.manual_seed(0)
    noise = mechanism.add_noise(torch.zeros(100_000, dtype=torch.float64))
    assert scales == [2.0] and secret == [True] and noise.dtype == torch.float64
    assert float(noise.abs().mean()) == pytest.approx(2.0, rel=0.02)
    assert stats.kstest(noise.numpy(), stats.laplace(scale=2.0).cdf).statistic < 0.007
    torch.manual_seed(0)
    first = mechanism.add_noise(torch.zeros(8))
    torch.manual_seed(0)
    assert not torch.equal(first, mechanism.add_noise(torch.zeros(8)))  # torch's seed does not reach it
    assert not mechanism.reproducible and "reproducible" in repr(LaplaceMechanism(1.0, 1.0, seed=3))
