"""Issue 12, findings 1 and 6: the randomness a guarantee rests on is secret, and its tails are exact.

Finding 1: with a public seed (published in privacy.json) an attacker could regenerate the DP noise
and the Poisson batches. Here two runs with the same public seed must draw different noise and
batches, the attacker's regeneration from the published seed must miss them, and no file of the run
may hold their state; a reproducible run must be identical from its seed and say so.
Finding 6: a sampler whose tail is cut (torch's float32 ``normal_`` stops at about 5.77 standard
deviations) makes outputs past the cut impossible under one dataset and possible under its
neighbour. The tail is checked where a cut would show: conditioned on the smallest uniforms, which is
where Box-Muller's far tail comes from.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.methods.dpwgan import DPWGAN
from privmed.methods.pixel_ldp import PixelLDP
from privmed.methods.trainer import DPTrainer, PrivateGradient
from privmed.privacy.dpsgd import DPGradient
from privmed.privacy.plan import plan_training, privacy_report
from privmed.privacy.report import PrivacyReport
from privmed.privacy.sampling import PoissonUnitSampler
from privmed.privacy.secure_rng import RandomStream
from privmed.report.guarantee import warnings_for
from privmed.runs import RunDirectory

TINY_WGAN = {
    "patch_size": 32, "patches_per_subject": 8, "batch_size": 8, "max_steps": 4, "checkpoint_every": 2,
    "generator_channels": 8, "critic_channels": 8, "latent_dim": 16, "seed": 0, "n_critic": 1,
}
# Probability that a correct sampler fails one binomial or KS check below.
FALSE_ALARM = 1e-6


@pytest.fixture(scope="module")
def phantom() -> ImageDataset:
    return load("phantom:train")


def _weights(model: DPWGAN) -> list[torch.Tensor]:
    return [tensor.clone() for tensor in model.generator_.state_dict().values()]


def _same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


# ---- finding 1: DP-WGAN ----------------------------------------------------------------------------------------------


def test_two_dpwgan_runs_with_the_same_public_seed_differ_unless_reproducible(phantom: ImageDataset) -> None:
    first = DPWGAN(8.0, **TINY_WGAN).fit(phantom)
    second = DPWGAN(8.0, **TINY_WGAN).fit(phantom)
    assert first.privacy_report().seed == second.privacy_report().seed == 0  # the same published seed...
    assert not _same(_weights(first), _weights(second))  # ...and yet different noise and batches
    research = [DPWGAN(8.0, reproducible=True, **TINY_WGAN).fit(phantom) for _ in range(2)]
    assert _same(_weights(research[0]), _weights(research[1]))


def _checkpoint_keys(value: Any) -> set[str]:
    """Every dictionary key anywhere in a checkpoint."""
    if isinstance(value, dict):
        return set(map(str, value)) | set().union(*(_checkpoint_keys(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_checkpoint_keys(v) for v in value)) if value else set()
    return set()


def test_a_guarantee_bearing_run_writes_no_noise_or_sampler_state_and_a_reproducible_one_is_flagged(phantom: ImageDataset, tmp_path: Path) -> None:
    DPWGAN(8.0, run_dir=tmp_path / "secret", **TINY_WGAN).fit(phantom)
    run = RunDirectory(tmp_path / "secret")
    checkpoint = run.load_checkpoint()
    assert checkpoint["sampler"] == {"secret": True} and checkpoint["gradient"] == {"secret": True}
    assert not _checkpoint_keys(checkpoint) & {"bit_generator", "noise_generators", "position", "key", "seed"}
    privacy = json.loads(run.privacy_path.read_text())
    config = json.loads(run.config_path.read_text())
    assert privacy["reproducible"] is False and config["params"]["reproducible"] is False
    stored = run.privacy_path.read_text() + run.config_path.read_text()
    assert "bit_generator" not in stored and "position" not in stored
    assert not any(w.level == "danger" and "seed" in w.text for w in warnings_for(PrivacyReport.from_json(run.privacy_path)))

    DPWGAN(8.0, run_dir=tmp_path / "research", reproducible=True, **TINY_WGAN).fit(phantom)
    flagged = PrivacyReport.from_json(RunDirectory(tmp_path / "research").privacy_path)
    assert flagged.reproducible
    danger = [w.text for w in warnings_for(flagged) if w.level == "danger"]
    assert any("no guarantee against anyone who knows the seed" in text for text in danger)


def test_a_resumed_run_draws_fresh_noise_and_batches_unless_reproducible(phantom: ImageDataset, tmp_path: Path) -> None:
    class Killed(Exception):
        pass

    def kill(event: Any) -> None:
        if event.step == 3:
            raise Killed

    def resumed_twice(name: str, **options: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        with pytest.raises(Killed):
            DPWGAN(8.0, run_dir=tmp_path / name, on_progress=kill, **TINY_WGAN, **options).fit(phantom)
        shutil.copytree(tmp_path / name, tmp_path / f"{name}-copy")
        ends = [DPWGAN.from_run(tmp_path / path).fit(phantom) for path in (name, f"{name}-copy")]
        assert all(model.privacy_report().steps == TINY_WGAN["max_steps"] for model in ends)
        return _weights(ends[0]), _weights(ends[1])

    assert not _same(*resumed_twice("secret"))  # the same checkpoint, fresh secret noise after each resume
    assert _same(*resumed_twice("research", reproducible=True))


# ---- finding 1: the DP-SGD trainer, against an attacker who knows the published seed ----------------------------------


class _SpyTask:
    """A private step whose private rows add nothing: the gradient the trainer writes is the DP noise alone."""

    metric_names = ("units",)

    def __init__(self) -> None:
        self.private_module = nn.Linear(6, 4)
        self.batches: list[list[int]] = []
        self.noise: list[torch.Tensor] = []

    def private_step(self, batch: np.ndarray, step: int, gradient: PrivateGradient) -> dict[str, float]:
        self.batches.append(batch.tolist())
        with gradient.capture():
            out = self.private_module(torch.ones(len(batch), 6))
        gradient.backward(out.sum(1) * 0.0, torch.from_numpy(batch))
        self.noise.append(self.private_module.weight.grad.clone())
        return {"units": float(len(batch))}

    def end_epoch(self, epoch: int, run: RunDirectory | None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


N_UNITS, STEPS = 60, 6
PLAN = plan_training(target_epsilon=4.0, delta=1e-5, unit="record", record_kind="image", n_units=N_UNITS, batch_size=12, max_steps=STEPS)


def _train(**options: Any) -> tuple[_SpyTask, PrivacyReport]:
    task = _SpyTask()
    trainer = DPTrainer(
        task, PLAN, np.arange(N_UNITS), seed=0,
        report_factory=lambda steps, epsilon: privacy_report(PLAN, steps, epsilon, seed=0, dataset=None, notes=[]), **options,
    )
    return task, trainer.train()


def _attacker_regenerates(seed: int) -> tuple[list[list[int]], torch.Tensor]:
    """What someone holding privacy.json recomputes from its seed: the batches, and the first step's noise."""
    sampler = PoissonUnitSampler(np.arange(N_UNITS), PLAN.sample_rate, seed=seed)
    batches = [sampler.next_batch().tolist() for _ in range(STEPS)]
    module = nn.Linear(6, 4)
    engine = DPGradient(
        module, max_grad_norm=PLAN.max_grad_norm, noise_multiplier=PLAN.noise_multiplier,
        expected_batch_units=PLAN.expected_batch_units, seed=seed, prefetch=False,
    )
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return batches, module.weight.grad


def test_dpsgd_batches_and_noise_are_secret_from_anyone_who_knows_the_published_seed() -> None:
    first, report = _train()
    second, _ = _train()
    assert report.seed == 0
    assert first.batches != second.batches
    assert not any(torch.equal(a, b) for a, b in zip(first.noise, second.noise))
    batches, noise = _attacker_regenerates(report.seed)
    assert batches != first.batches and not torch.equal(noise, first.noise[0])
    assert not report.reproducible
    assert float(torch.cat([n.flatten() for n in first.noise]).std()) == pytest.approx(
        PLAN.noise_multiplier * PLAN.max_grad_norm / PLAN.expected_batch_units, rel=0.25
    )


def test_a_reproducible_dpsgd_run_is_what_its_seed_says_and_is_flagged() -> None:
    first, report = _train(reproducible=True)
    second, _ = _train(reproducible=True)
    assert report.reproducible
    assert first.batches == second.batches and all(torch.equal(a, b) for a, b in zip(first.noise, second.noise))
    batches, noise = _attacker_regenerates(report.seed)
    assert batches == first.batches and torch.equal(noise, first.noise[0])  # exactly why it carries no guarantee


# ---- finding 1: a local-DP privatizer -------------------------------------------------------------------------------


def _images(n: int = 5) -> ImageDataset:
    ids = np.array([f"img{i}" for i in range(n)])
    return ImageDataset(images=np.full((n, 1, 6, 6), 0.5, dtype=np.float32), subjects=ids, sources=ids, name="flat")


def test_a_local_dp_release_draws_secret_noise_unless_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _images()
    secret = [PixelLDP(50.0).fit(data).privatize(data).images for _ in range(2)]
    assert not np.array_equal(*secret)
    research = [PixelLDP(50.0, reproducible=True).fit(data) for _ in range(2)]
    assert np.array_equal(*(method.privatize(data).images for method in research))
    flagged = research[0].privacy_report()
    assert flagged.reproducible and flagged.seed == 0
    assert any("no guarantee against anyone who knows the seed" in w.text for w in warnings_for(flagged) if w.level == "danger")

    kinds = []
    original = RandomStream.laplace

    def spy(self: RandomStream, *args: Any, **kwargs: Any) -> torch.Tensor:
        kinds.append(self.secret)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RandomStream, "laplace", spy)
    default = PixelLDP(50.0).fit(data)
    default.privatize(data)
    assert kinds == [True] and not default.privacy_report().reproducible


# ---- finding 6: exact tails -----------------------------------------------------------------------------------------


def _binomial_holds(count: int, n: int, p: float) -> bool:
    low, high = stats.binom.interval(1 - FALSE_ALARM, n, p)
    return low <= count <= high


def _gaussian_radii_beyond(shift: int, pairs: int, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """privmed's Box-Muller radii given that the radius uniform U fell below 2**-shift (the sampler's far tail).

    The stream's first call supplies the radius words: shifted right by ``shift`` bits they make U
    uniform on (0, 2**-shift) (below 2**-32 through the refinement words), as the sampler sees it in the
    rare draws that end up in the tail. R^2 = z1^2 + z2^2 of each Box-Muller pair.
    """
    stream = RandomStream.seeded(12, "tail-test")
    original, calls = stream.random_words, []

    def restricted(count: int) -> np.ndarray:
        calls.append(count)
        words = original(count)
        return words >> np.uint64(shift) if len(calls) == 1 else words

    stream.random_words = restricted  # type: ignore[method-assign]
    values = stream.gaussian((2 * pairs,), 1.0, dtype=dtype).double().numpy()
    return np.hypot(values[:pairs], values[pairs:])


def _torch_float32_radii_beyond(shift: int, pairs: int) -> np.ndarray:
    """The same for torch's float32 ``normal_`` (today's seeded noise): its radius uniform is 1 - u, u on the 2**-24 grid."""
    grid = np.arange(1, 2 ** max(24 - shift, 0) + 1)  # the 2**-24 multiples below 2**-shift (none past 2**-24)
    if grid.size == 0:
        return np.empty(0)
    u = np.random.default_rng(0).choice(grid, pairs) * 2.0**-24
    return np.sqrt(-2.0 * np.log(u))


def _check_far_tail(radii: np.ndarray, shift: int, pairs: int) -> None:
    """Given U < 2**-shift, E = R^2 / 2 - shift ln 2 is exactly Exp(1): check its law and its tail counts."""
    assert radii.size == pairs, "the sampler cannot reach this tail at all"
    excess = radii**2 / 2 - shift * math.log(2)
    assert stats.kstest(excess, "expon").pvalue > FALSE_ALARM
    for threshold in (4.0, 8.0, 11.0):
        assert _binomial_holds(int((excess > threshold).sum()), pairs, math.exp(-threshold)), threshold


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shift", [20, 44])
def test_gaussian_noise_tails_are_exact_far_beyond_any_delta(shift: int, dtype: torch.dtype) -> None:
    """shift 20: radii from 5.3 to about 7.4 standard deviations; shift 44: from 7.8 to about 9.2."""
    pairs = 200_000
    _check_far_tail(_gaussian_radii_beyond(shift, pairs, dtype), shift, pairs)


@pytest.mark.parametrize("shift", [20, 44])
def test_the_far_tail_check_fails_on_torchs_float32_sampler(shift: int) -> None:
    """The same check on today's sampler: its 24-bit uniforms give 16 radii at most 5.77 (shift 20) or none (44)."""
    pairs = 200_000
    with pytest.raises(AssertionError):
        _check_far_tail(_torch_float32_radii_beyond(shift, pairs), shift, pairs)


def test_laplace_noise_tails_are_exact_far_beyond_any_delta() -> None:
    """Given U < 2**-44, |X| / b - 44 ln 2 is exactly Exp(1): magnitudes from 30.5 to about 42 scales."""
    pairs, shift = 200_000, 44
    stream = RandomStream.seeded(13, "tail-test")
    original, calls = stream.random_words, []

    def restricted(count: int) -> np.ndarray:
        calls.append(count)
        words = original(count)
        return ((words >> np.uint64(shift)) & ~np.uint64(1)) | (words & np.uint64(1)) if len(calls) == 1 else words  # keep the sign bit

    stream.random_words = restricted  # type: ignore[method-assign]
    values = stream.standard_laplace(pairs)
    excess = np.abs(values) - shift * math.log(2)
    assert stats.kstest(excess, "expon").pvalue > FALSE_ALARM
    assert _binomial_holds(int((values > 0).sum()), pairs, 0.5)
    for threshold in (4.0, 8.0, 11.0):
        assert _binomial_holds(int((excess > threshold).sum()), pairs, math.exp(-threshold)), threshold


def test_the_engines_noise_has_the_exact_tail_mass_over_ten_million_draws() -> None:
    """The whole path (float64 draw, scaling, float32 cast) against the normal distribution's two-sided tail."""
    module = nn.Linear(1000, 1000)
    engine = DPGradient(module, max_grad_norm=1.0, noise_multiplier=2.0, expected_batch_units=4.0, seed=7)
    draws = []
    for _ in range(10):
        engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
        draws.append(module.weight.grad.flatten().double() / 0.5)
    engine.close()
    z = torch.cat(draws).abs().numpy()
    for threshold in (3.0, 4.0, 4.5, 5.0):
        assert _binomial_holds(int((z > threshold).sum()), z.size, 2 * stats.norm.sf(threshold)), threshold


# ---- the command line -------------------------------------------------------------------------------------------------


def test_train_dpwgan_is_secret_by_default_and_reproducible_only_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from privmed.cli import app

    runner = CliRunner()
    small = ["--data", "phantom", "--epsilon", "8", "--max-steps", "2", "--patch-size", "32", "--patches-per-subject", "8",
             "--batch-size", "8", "--base-channels", "8", "--seed", "3"]
    reports = {}
    for name, extra in (("secret", []), ("research", ["--reproducible"])):
        result = runner.invoke(app, ["train", "dpwgan", "--out", str(tmp_path / name), *small, *extra])
        assert result.exit_code == 0, result.output
        reports[name] = (json.loads((tmp_path / name / "privacy.json").read_text()), result.output)
    secret, research = reports["secret"][0], reports["research"][0]
    assert secret["seed"] == research["seed"] == 3
    assert secret["reproducible"] is False and research["reproducible"] is True
    assert "REPRODUCIBLE RUN" in reports["research"][1] and "REPRODUCIBLE RUN" not in reports["secret"][1]
    checkpoint = RunDirectory(tmp_path / "secret").load_checkpoint()
    assert checkpoint["sampler"] == {"secret": True} and checkpoint["gradient"] == {"secret": True}
    assert RunDirectory(tmp_path / "research").load_checkpoint()["sampler"]["seed"] == 3
