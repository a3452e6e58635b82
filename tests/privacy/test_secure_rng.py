"""The AES-CTR random streams: the right distributions, secret streams that no seed reaches, seeded streams that resume exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivacyError
from privmed.methods.local_dp import REPRODUCIBLE_NOTE, SECRET_NOISE_NOTE
from privmed.methods.pixel_ldp import PixelLDP
from privmed.privacy import secure_rng
from privmed.privacy.dpsgd import DPGradient
from privmed.privacy.secure_rng import RandomStream

DRAWS = 100_000
# Kolmogorov-Smirnov statistic bound for 1e5 draws: the 0.9999 quantile of its null distribution is about 2.0 / sqrt(n).
KS_BOUND = 2.2 / math.sqrt(DRAWS)


def test_uniforms_lie_strictly_inside_the_unit_interval_on_the_53_bit_grid() -> None:
    values = RandomStream.secret_stream().uniform(DRAWS)
    assert values.dtype == np.float64 and values.shape == (DRAWS,)
    assert values.min() > 0.0 and values.max() < 1.0
    coarse = values[values > 2.0**-32] * 2.0**53
    assert np.array_equal(coarse, np.round(coarse)) and np.all(coarse % 2 == 1)  # odd multiples of 2**-53 above 2**-32
    assert stats.kstest(values, "uniform").statistic < KS_BOUND


def test_uniforms_below_2_to_the_minus_32_are_refined_by_more_bits() -> None:
    stream = RandomStream.seeded(0, "test")
    words = np.array([0, 2**12, 2**31, 2**32, 2**63], dtype=np.uint64)  # top 52 bits k = 0, 1, 2**19, 2**20, 2**51
    out = stream._unit(words, np.empty(5))
    assert 0 < out[0] < 2.0**-52 and 2.0**-52 < out[1] < 2.0**-51 and 2.0**-33 < out[2] < 2.0**-33 + 2.0**-52
    assert out[3] == (2.0**20 + 0.5) * 2.0**-52 and out[4] == (2.0**51 + 0.5) * 2.0**-52  # from 2**-32 up: the 2**-53 grid
    assert {out[0] * 2.0**53 % 2, out[1] * 2.0**53 % 2, out[2] * 2.0**53 % 2} != {1.0}  # refined: off the grid


def test_gaussian_draws_have_the_requested_std_and_pass_a_ks_test() -> None:
    values = RandomStream.secret_stream().gaussian((DRAWS,), std=2.5, dtype=torch.float64).numpy()
    assert abs(values.mean()) < 4 * 2.5 / math.sqrt(DRAWS)
    assert values.std() == pytest.approx(2.5, rel=0.015)
    assert stats.kstest(values, stats.norm(scale=2.5).cdf).statistic < KS_BOUND


def test_laplace_draws_have_the_requested_scale_and_pass_a_ks_test() -> None:
    values = RandomStream.secret_stream().laplace((DRAWS,), scale=0.7, dtype=torch.float64).numpy()
    assert abs(values.mean()) < 4 * 0.7 * math.sqrt(2) / math.sqrt(DRAWS)
    assert float(np.abs(values).mean()) == pytest.approx(0.7, rel=0.015)  # E|X| = b
    assert values.var() == pytest.approx(2 * 0.7**2, rel=0.03)
    assert stats.kstest(values, stats.laplace(scale=0.7).cdf).statistic < KS_BOUND


@pytest.mark.parametrize("shape", [(3, 5), (7,), (), (0, 4)])
def test_shapes_and_dtypes_are_as_requested(shape: tuple[int, ...]) -> None:
    source = RandomStream.secret_stream()
    gaussian = source.gaussian(shape, 1.0)
    laplace = source.laplace(shape, 1.0, dtype=torch.float64)
    assert gaussian.shape == shape and gaussian.dtype == torch.float32
    assert laplace.shape == shape and laplace.dtype == torch.float64
    assert torch.isfinite(gaussian).all() and torch.isfinite(laplace).all()


def test_secret_streams_ignore_torch_seeds_never_agree_and_have_no_state() -> None:
    torch.manual_seed(0)
    first = RandomStream.secret_stream().gaussian((64,), 1.0)
    torch.manual_seed(0)
    second = RandomStream.secret_stream().gaussian((64,), 1.0)
    assert not torch.equal(first, second)
    assert RandomStream.secret_stream().state_dict() == {"secret": True}
    with pytest.raises(PrivacyError, match="other kind"):
        RandomStream.seeded(1, "x").load_state_dict({"secret": True})


def test_seeded_streams_reproduce_per_purpose_and_resume_at_any_word() -> None:
    assert np.array_equal(RandomStream.seeded(3, "a").uniform(9), RandomStream.seeded(3, "a").uniform(9))
    assert not np.array_equal(RandomStream.seeded(3, "a").uniform(9), RandomStream.seeded(3, "b").uniform(9))
    assert not np.array_equal(RandomStream.seeded(3, "a").uniform(9), RandomStream.seeded(4, "a").uniform(9))
    reference = RandomStream.seeded(3, "a").uniform(9)
    stream = RandomStream.seeded(3, "a")
    stream.uniform(5)
    state = stream.state_dict()
    assert state == {"seed": 3, "position": 5}
    other = RandomStream.seeded(7, "a")
    other.load_state_dict(state)
    assert np.array_equal(other.uniform(4), reference[5:])


def test_shared_keys_give_the_same_secret_stream() -> None:
    key = secure_rng.new_secret_key()
    assert np.array_equal(RandomStream.from_key(key).uniform(8), RandomStream.from_key(key).uniform(8))
    assert RandomStream.from_key(key).secret


def test_a_forked_process_gets_a_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    source = RandomStream.secret_stream()
    key = source._key
    monkeypatch.setattr(secure_rng.os, "getpid", lambda: -1)
    source.random_words(4)
    assert source._key != key and source._pid == -1


def test_the_engine_draws_its_noise_from_a_secret_stream_at_the_calibrated_std(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = RandomStream.gaussian

    def spy(self: RandomStream, shape, std, dtype=torch.float32, device=None):
        calls.append((tuple(shape), std, self.secret))
        return original(self, shape, std, dtype, device)

    monkeypatch.setattr(RandomStream, "gaussian", spy)
    model = nn.Linear(200, 100)
    engine = DPGradient(model, max_grad_norm=2.0, noise_multiplier=1.5, expected_batch_units=3.0, prefetch=False)
    torch.manual_seed(0)
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert calls == [((20_100,), pytest.approx(1.0), True)]  # one draw for all parameters
    values = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(values.std()) == pytest.approx(1.5 * 2.0 / 3.0, rel=0.03)
    torch.manual_seed(0)
    first = model.weight.grad.clone()
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert not torch.equal(model.weight.grad, first)


def test_the_secret_engine_has_no_noise_state_to_resume() -> None:
    engine = DPGradient(nn.Linear(2, 2), max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0)
    assert engine.state_dict() == {"secret": True} and not engine.reproducible
    engine.load_state_dict(engine.state_dict())
    seeded = DPGradient(nn.Linear(2, 2), max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0, seed=1)
    assert seeded.reproducible
    with pytest.raises(PrivacyError, match="other kind"):
        seeded.load_state_dict(engine.state_dict())


def _images(n: int = 6) -> ImageDataset:
    ids = np.array([f"img{i}" for i in range(n)])
    images = np.random.default_rng(0).uniform(size=(n, 1, 8, 8)).astype(np.float32)
    return ImageDataset(images=images, subjects=ids, sources=ids, name="tiny")


def test_a_privatizer_draws_secret_noise_by_default_and_flags_a_seeded_release(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = RandomStream.laplace

    def spy(self: RandomStream, shape, scale, dtype=torch.float32, device=None):
        calls.append((tuple(shape), scale, self.secret))
        return original(self, shape, scale, dtype, device)

    monkeypatch.setattr(RandomStream, "laplace", spy)
    data = _images()
    method = PixelLDP(5.0).fit(data)
    method.privatize(data)
    assert calls == [((6, 1, 8, 8), pytest.approx(64 / 5.0), True)]
    report = method.privacy_report()
    assert SECRET_NOISE_NOTE in report.notes and report.seed is None and not report.reproducible
    seeded = PixelLDP(5.0).fit(data)
    seeded.privatize(data, seed=0)
    assert calls[-1][2] is False
    flagged = seeded.privacy_report()
    assert REPRODUCIBLE_NOTE in flagged.notes and flagged.reproducible and flagged.seed == 0


def test_privatize_on_the_command_line_is_secret_unless_reproducible(tmp_path, isolated_ledger) -> None:
    import json

    from typer.testing import CliRunner

    from privmed.cli import app
    from privmed.privacy.ledger import BudgetLedger

    runner = CliRunner()
    command = ["privatize", "pixel-ldp", "--data", "phantom-classes:test", "--epsilon", "1000"]
    refused = runner.invoke(app, [*command, "--out", str(tmp_path / "seeded"), "--seed", "1"])
    assert refused.exit_code == 1 and "--reproducible" in refused.output
    assert not (tmp_path / "seeded").exists() and BudgetLedger(isolated_ledger).entries() == []
    result = runner.invoke(app, [*command, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "privacy.json").read_text())
    assert SECRET_NOISE_NOTE in report["notes"] and report["seed"] is None and report["reproducible"] is False
    result = runner.invoke(app, [*command, "--out", str(tmp_path / "research"), "--reproducible", "--seed", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "research" / "privacy.json").read_text())
    assert REPRODUCIBLE_NOTE in report["notes"] and report["seed"] == 4 and report["reproducible"] is True
