"""One-run privacy auditing: the bound is valid on mechanisms with known epsilon and finds memorization."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from privmed.data import load
from privmed.errors import PrivmedError
from privmed.evaluate.audit import (
    AuditableMethod,
    ModelScoreAudit,
    ReleaseAudit,
    audit_from_scores,
    auditable_from_config,
    epsilon_lower_bound,
    insert_canaries,
    make_canaries,
    one_run_audit,
    one_run_p_value,
)
from privmed.methods.pixel_ldp import PixelLDP
from privmed.methods.registry import METHODS, MethodKind, MethodSpec
from privmed.privacy.report import PrivacyReport


def test_p_value_is_the_binomial_tail_without_delta() -> None:
    q = math.exp(1.0) / (1 + math.exp(1.0))
    assert one_run_p_value(500, 100, 80, 1.0) == pytest.approx(stats.binom.sf(79, 100, q))
    assert one_run_p_value(500, 100, 80, 1.0, delta=1e-3) > one_run_p_value(500, 100, 80, 1.0)


def test_lower_bound_is_where_the_p_value_crosses_the_level() -> None:
    bound = epsilon_lower_bound(1000, 200, 150, confidence=0.95)
    assert bound > 0
    assert one_run_p_value(1000, 200, 150, bound) < 0.05 <= one_run_p_value(1000, 200, 150, bound + 1e-3)
    assert epsilon_lower_bound(1000, 200, 100) == 0.0  # chance accuracy proves nothing
    with pytest.raises(PrivmedError):
        epsilon_lower_bound(10, 20, 5)


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_laplace_counting_mechanism_bound_stays_under_true_epsilon(epsilon: float) -> None:
    """Each canary's presence (0/1) released with Laplace noise of scale 1/epsilon is epsilon-DP per canary."""
    bounds = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        included = rng.random(1000) < 0.5
        released = included + rng.laplace(scale=1 / epsilon, size=included.size)
        bounds.append(audit_from_scores(released, included, k_plus=100, k_minus=100, claimed_epsilon=epsilon).epsilon_lower_bound)
    assert max(bounds) <= epsilon
    assert np.mean(bounds) > 0.25 * epsilon  # the audit is not vacuous on a mechanism that uses its budget


def test_randomized_response_bound_is_valid_and_nearly_tight() -> None:
    epsilon = 1.0
    rng = np.random.default_rng(3)
    included = rng.random(4000) < 0.5
    keep = rng.random(included.size) < math.exp(epsilon) / (1 + math.exp(epsilon))
    reported = np.where(keep, included, ~included).astype(float) + 1e-6 * rng.random(included.size)
    result = audit_from_scores(reported, included, k_plus=2000, k_minus=2000, claimed_epsilon=epsilon)
    assert 0.7 * epsilon < result.epsilon_lower_bound <= epsilon
    assert result.consistent is True


class _Memorizing:
    """A non-private 'method' whose release is its training data."""

    def train_with(self, data, seed):
        release = data.images.reshape(len(data), -1)
        return lambda canaries: -np.min(np.linalg.norm(canaries.images.reshape(len(canaries), 1, -1) - release[None], axis=2), axis=1)


@pytest.fixture(scope="module")
def audit_data():
    data = load("phantom-classes:train", n=120)
    canaries = make_canaries(load("phantom-classes:test", n=80), 80, seed=1)
    return data, canaries


def test_memorizing_release_is_caught(audit_data) -> None:
    data, canaries = audit_data
    assert isinstance(_Memorizing(), AuditableMethod)
    result = one_run_audit(_Memorizing(), data, canaries, k_plus=20, k_minus=20, seed=0)
    assert result.correct == result.guesses == 40
    assert result.epsilon_lower_bound > 2.0


def test_pixel_ldp_release_stays_under_its_claim(audit_data) -> None:
    data, canaries = audit_data
    method = ReleaseAudit(lambda: PixelLDP(2.0))
    result = one_run_audit(method, data, canaries, runs=2, seed=0)
    assert result.claimed_epsilon == pytest.approx(method.last_method.privacy_report().epsilon)
    assert result.claimed_epsilon == pytest.approx(2.0)
    assert result.epsilon_lower_bound <= result.claimed_epsilon
    assert result.canaries == 160 and result.runs == 2


def test_canaries_are_marked_and_configs_are_checked(audit_data) -> None:
    _, canaries = audit_data
    assert len(canaries) == 80 and len(set(canaries.sources)) == 80
    assert (canaries.images.max(axis=(1, 2, 3)) == 1.0).all()
    with pytest.raises(PrivmedError):
        auditable_from_config({"method": "dpwgan-unknown"})
    with pytest.raises(PrivmedError):
        auditable_from_config({"method": "pixel-ldp"})
    assert isinstance(auditable_from_config({"method": "memorize"}), ReleaseAudit)


def test_canaries_keep_segmentations_for_methods_that_learn_pairs() -> None:
    vessels = load("phantom:train", n=6, size=32)
    canaries = make_canaries(vessels, 4, seed=0)
    assert canaries.segmentations is not None and canaries.segmentations.shape == (4, 1, 32, 32)
    gaps = np.abs(canaries.images[:, None] - vessels.images[None]).reshape(4, 6, -1).max(axis=2)
    assert (gaps.min(axis=1) > 0).all()  # every canary carries its mark: none equals a pool image


def test_dpwgan_wires_into_the_audit_through_its_release() -> None:
    """A two-step DP-WGAN: its privacy report supplies the claim (epsilon and delta) the bound must respect."""
    from privmed.methods.dpwgan import DPWGAN

    data = load("phantom:train", n=8, size=32)
    canaries = make_canaries(load("phantom:test", n=8, size=32), 8, seed=0)
    method = ReleaseAudit(
        lambda: DPWGAN(epsilon=5.0, delta=1e-3, unit="image", patch_size=32, max_steps=2, epochs=None, batch_size=4, n_critic=1,
                       latent_dim=16, generator_channels=8, critic_channels=8, records_per_unit=None),
        n_samples=32,
    )
    result = one_run_audit(method, data, canaries, seed=0)
    report = method.last_method.privacy_report()
    assert result.claimed_epsilon == pytest.approx(report.epsilon) and result.delta == pytest.approx(report.delta)
    assert result.epsilon_lower_bound <= result.claimed_epsilon


TINY_ACGAN = {"max_steps": 4, "batch_size": 16, "generator_channels": 8, "discriminator_channels": 8, "latent_dim": 16}


def test_mislabelled_canaries_carry_another_class() -> None:
    pool = load("phantom-classes:test", n=40)
    canaries = make_canaries(pool, 30, seed=2, mislabel=True)
    kept = make_canaries(pool, 30, seed=2)
    np.testing.assert_array_equal(canaries.images, kept.images)  # same images and marks, only the class differs
    assert (canaries.labels == 1 - kept.labels).all()  # two classes: "another class" is the other one
    with pytest.raises(PrivmedError, match="two classes"):
        make_canaries(load("phantom:train", n=4, size=32), 3, mislabel=True)


def test_canaries_go_in_by_a_fair_coin() -> None:
    data, canaries = load("phantom-classes:train", n=10), make_canaries(load("phantom-classes:test", n=400), 400, seed=0)
    training, included = insert_canaries(data, canaries, np.random.default_rng(0))
    assert len(training) == 10 + included.sum()
    np.testing.assert_array_equal(training.images[10:], canaries.images[included])
    assert abs(included.mean() - 0.5) < 0.1


def test_acgan_audit_by_its_discriminator_stays_under_the_claim_of_its_run(tmp_path: Path) -> None:
    """A short DP AC-GAN: the canaries are scored by its discriminator; the claim comes from the run's privacy.json."""
    data = load("phantom-classes:train", n=64)
    canaries = make_canaries(load("phantom-classes:test", n=40), 40, seed=1, mislabel=True)
    method = auditable_from_config({"method": "acgan", "epsilon": 2.0, "options": TINY_ACGAN}, run_root=tmp_path)
    assert isinstance(method, ModelScoreAudit)
    result = one_run_audit(method, data, canaries, k_plus=10, k_minus=10, seed=0)
    written = PrivacyReport.from_json(tmp_path / "run-0" / "privacy.json")
    assert written.n_units == 64 + result.included  # the audited run trained on the data plus the included canaries
    assert result.claimed_epsilon == pytest.approx(written.epsilon) and written.epsilon <= 2.0
    assert result.delta == pytest.approx(written.delta)
    assert result.epsilon_lower_bound <= result.claimed_epsilon and result.consistent is True


def test_model_score_audit_catches_a_model_that_remembers_its_training_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in method whose 'model' is its training images: the audit pairs model scores with the coin flips."""
    def score_members(model_dir: Path, data) -> np.ndarray:
        known = np.load(model_dir / "seen.npy")
        return -np.min(np.linalg.norm(data.images.reshape(len(data), 1, -1) - known[None], axis=2), axis=1)

    spec = MethodSpec(name="remembering-standin", cls=PixelLDP, kind=MethodKind.GENERATIVE, title="stand-in", member_scorer=score_members)
    monkeypatch.setitem(METHODS, spec.name, spec)

    class Remembering:
        def __init__(self, run_dir: Path) -> None:
            self.run_dir = run_dir

        def fit(self, data) -> None:
            self.run_dir.mkdir(parents=True)
            (self.run_dir / "config.json").write_text(json.dumps({"method": "remembering-standin"}))
            np.save(self.run_dir / "seen.npy", data.images.reshape(len(data), -1))

    data, canaries = load("phantom-classes:train", n=40), make_canaries(load("phantom-classes:test", n=80), 80, seed=1)
    result = one_run_audit(ModelScoreAudit(Remembering, tmp_path), data, canaries, k_plus=20, k_minus=20, seed=0)
    assert result.correct == result.guesses == 40 and result.epsilon_lower_bound > 2.0
    assert result.claimed_epsilon is None


def test_acgan_audit_configuration_is_checked(tmp_path: Path) -> None:
    assert isinstance(auditable_from_config({"method": "acgan", "epsilon": "inf", "score": "release"}), ReleaseAudit)
    with pytest.raises(PrivmedError, match="needs an 'epsilon'"):
        auditable_from_config({"method": "acgan"}, run_root=tmp_path)
    with pytest.raises(PrivmedError, match="unknown AC-GAN option"):
        auditable_from_config({"method": "acgan", "epsilon": 1.0, "options": {"wings": 2}}, run_root=tmp_path)
    with pytest.raises(PrivmedError, match="run_dir"):
        auditable_from_config({"method": "acgan", "epsilon": 1.0, "options": {"run_dir": "x"}}, run_root=tmp_path)
    with pytest.raises(PrivmedError, match="unknown audit score"):
        auditable_from_config({"method": "acgan", "epsilon": 1.0, "score": "vibes"}, run_root=tmp_path)
    with pytest.raises(PrivmedError, match="folder for its training runs"):
        auditable_from_config({"method": "acgan", "epsilon": 1.0})
    (tmp_path / "run-0").mkdir()
    with pytest.raises(PrivmedError, match="exists"):
        auditable_from_config({"method": "acgan", "epsilon": 1.0}, run_root=tmp_path).train_with(load("phantom-classes:test", n=8), seed=0)


def test_the_ceiling_is_what_a_perfect_attacker_proves_and_the_default_cannot_test_eight() -> None:
    """Finding 8: 100 canaries and 25 guesses a side prove at most about 2.79, so a claim of 8 can never fail."""
    from privmed.evaluate.audit import canaries_needed, epsilon_ceiling

    ceiling = epsilon_ceiling(100, 50)
    assert ceiling == pytest.approx(2.79, abs=0.01)
    # Independent check: with all 50 right the p-value is q^50, q = e^eps/(1+e^eps); it equals 0.05 at the ceiling.
    assert (1 / (1 + math.exp(-ceiling))) ** 50 == pytest.approx(0.05, rel=1e-3)
    scores = np.arange(100.0)
    result = audit_from_scores(scores, scores >= 50, k_plus=25, k_minus=25, claimed_epsilon=8.0)
    assert result.correct == 50 and result.epsilon_ceiling == pytest.approx(ceiling)
    assert result.can_test_claim is False and "cannot test the claim" in result.notes[0]
    needed = canaries_needed(8.0)
    assert needed is not None and epsilon_ceiling(needed, 2 * (needed // 4)) > 8.0 >= epsilon_ceiling(needed - 1, 2 * ((needed - 1) // 4))
    assert canaries_needed(8.0, delta=1e-3) is None  # the delta term caps what any count proves
