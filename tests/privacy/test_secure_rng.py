"""Secure DP noise: the right distributions, no seed anywhere, and the engine and mechanisms use it when asked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivacyError
from privmed.methods.local_dp import SECURE_NOISE_NOTE
from privmed.methods.pixel_ldp import PixelLDP
from privmed.privacy import secure_rng
from privmed.privacy.dpsgd import DPGradient
from privmed.privacy.secure_rng import SecureNoise

DRAWS = 100_000
# Kolmogorov-Smirnov statistic bound for 1e5 draws: the 0.9999 quantile of its null distribution is about 2.0 / sqrt(n).
KS_BOUND = 2.2 / math.sqrt(DRAWS)


def test_uniforms_lie_strictly_inside_the_unit_interval_on_the_53_bit_grid() -> None:
    values = SecureNoise().uniform(DRAWS).numpy()
    assert values.dtype == np.float64 and values.shape == (DRAWS,)
    assert values.min() > 0.0 and values.max() < 1.0
    scaled = values * 2.0**53
    assert np.array_equal(scaled, np.round(scaled)) and np.all(scaled % 2 == 1)  # odd multiples of 2**-53
    assert stats.kstest(values, "uniform").statistic < KS_BOUND


def test_gaussian_draws_have_the_requested_std_and_pass_a_ks_test() -> None:
    values = SecureNoise().gaussian((DRAWS,), std=2.5, dtype=torch.float64).numpy()
    assert abs(values.mean()) < 4 * 2.5 / math.sqrt(DRAWS)
    assert values.std() == pytest.approx(2.5, rel=0.015)
    assert stats.kstest(values, stats.norm(scale=2.5).cdf).statistic < KS_BOUND


def test_laplace_draws_have_the_requested_scale_and_pass_a_ks_test() -> None:
    values = SecureNoise().laplace((DRAWS,), scale=0.7, dtype=torch.float64).numpy()
    assert abs(values.mean()) < 4 * 0.7 * math.sqrt(2) / math.sqrt(DRAWS)
    assert float(np.abs(values).mean()) == pytest.approx(0.7, rel=0.015)  # E|X| = b
    assert values.var() == pytest.approx(2 * 0.7**2, rel=0.03)
    assert stats.kstest(values, stats.laplace(scale=0.7).cdf).statistic < KS_BOUND


@pytest.mark.parametrize("shape", [(3, 5), (7,), (), (0, 4)])
def test_shapes_and_dtypes_are_as_requested(shape: tuple[int, ...]) -> None:
    source = SecureNoise()
    gaussian = source.gaussian(shape, 1.0)
    laplace = source.laplace(shape, 1.0, dtype=torch.float64)
    assert gaussian.shape == shape and gaussian.dtype == torch.float32
    assert laplace.shape == shape and laplace.dtype == torch.float64
    assert torch.isfinite(gaussian).all() and torch.isfinite(laplace).all()


def test_no_seed_is_accepted_and_two_sources_never_agree() -> None:
    with pytest.raises(TypeError):
        SecureNoise(seed=0)  # type: ignore[call-arg]
    torch.manual_seed(0)
    first = SecureNoise().gaussian((64,), 1.0)
    torch.manual_seed(0)
    second = SecureNoise().gaussian((64,), 1.0)
    assert not torch.equal(first, second)


def test_a_forked_process_gets_a_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    source = SecureNoise()
    encryptor = source._encryptor
    monkeypatch.setattr(secure_rng.os, "getpid", lambda: -1)
    source.random_words(4)
    assert source._encryptor is not encryptor and source._pid == -1


def test_the_engine_draws_its_noise_from_the_secure_source_at_the_calibrated_std(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = SecureNoise.gaussian

    def spy(self: SecureNoise, shape, std, dtype=torch.float32, device=None):
        calls.append((tuple(shape), std))
        return original(self, shape, std, dtype, device)

    monkeypatch.setattr(SecureNoise, "gaussian", spy)
    model = nn.Linear(200, 100)
    engine = DPGradient(model, max_grad_norm=2.0, noise_multiplier=1.5, expected_batch_units=3.0, secure_rng=True)
    torch.manual_seed(0)
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert dict(calls) == {(100, 200): pytest.approx(1.0), (100,): pytest.approx(1.0)}
    values = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(values.std()) == pytest.approx(1.5 * 2.0 / 3.0, rel=0.03)
    torch.manual_seed(0)
    first = model.weight.grad.clone()
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert not torch.equal(model.weight.grad, first)


def test_the_secure_engine_refuses_a_seed_and_has_no_noise_state_to_resume() -> None:
    with pytest.raises(PrivacyError, match="no seed"):
        DPGradient(nn.Linear(2, 2), max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0, seed=3, secure_rng=True)
    engine = DPGradient(nn.Linear(2, 2), max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0, secure_rng=True)
    assert engine.state_dict() == {"secure_rng": True}
    engine.load_state_dict(engine.state_dict())
    seeded = DPGradient(nn.Linear(2, 2), max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0, seed=1)
    with pytest.raises(PrivacyError, match="secure"):
        seeded.load_state_dict(engine.state_dict())


def _images(n: int = 6) -> ImageDataset:
    ids = np.array([f"img{i}" for i in range(n)])
    images = np.random.default_rng(0).uniform(size=(n, 1, 8, 8)).astype(np.float32)
    return ImageDataset(images=images, subjects=ids, sources=ids, name="tiny")


def test_a_privatizer_with_secure_rng_draws_from_it_says_so_and_refuses_a_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = SecureNoise.laplace

    def spy(self: SecureNoise, shape, scale, dtype=torch.float32, device=None):
        calls.append((tuple(shape), scale))
        return original(self, shape, scale, dtype, device)

    monkeypatch.setattr(SecureNoise, "laplace", spy)
    data = _images()
    method = PixelLDP(5.0, secure_rng=True).fit(data)
    with pytest.raises(PrivacyError, match="seed"):
        method.privatize(data, seed=1)
    assert calls == []
    method.privatize(data)
    assert calls == [((6, 1, 8, 8), pytest.approx(64 / 5.0))]
    report = method.privacy_report()
    assert SECURE_NOISE_NOTE in report.notes and report.seed is None
    default = PixelLDP(5.0).fit(data)
    default.privatize(data, seed=0)
    assert SECURE_NOISE_NOTE not in default.privacy_report().notes


def test_privatize_with_secure_rng_on_the_command_line(tmp_path, isolated_ledger) -> None:
    import json

    from typer.testing import CliRunner

    from privmed.cli import app
    from privmed.privacy.ledger import BudgetLedger

    runner = CliRunner()
    command = ["privatize", "pixel-ldp", "--data", "phantom-classes:test", "--epsilon", "1000", "--secure-rng"]
    refused = runner.invoke(app, [*command, "--out", str(tmp_path / "seeded"), "--seed", "1"])
    assert refused.exit_code == 1 and "--seed" in refused.output
    assert not (tmp_path / "seeded").exists() and BudgetLedger(isolated_ledger).entries() == []
    result = runner.invoke(app, [*command, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "privacy.json").read_text())
    assert SECURE_NOISE_NOTE in report["notes"] and report["seed"] is None
