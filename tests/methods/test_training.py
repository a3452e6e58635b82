"""The shared DP training plan: schedule arithmetic, calibration, refusals."""

from __future__ import annotations

import math

import pytest

from privmed.errors import PrivacyError, PrivmedError
from privmed.methods.trainer import start_run
from privmed.privacy.ledger import BudgetLedger
from privmed.privacy.plan import plan_training
from privmed.runs import RunDirectory
from tests.privacy.independent_accounting import pld_epsilon, rdp_epsilon


def test_epochs_are_one_over_q_steps_and_the_plan_ends_at_the_target() -> None:
    plan = plan_training(target_epsilon=5.0, delta=1e-4, unit="patch", record_kind="patch", n_units=3200, batch_size=32, epochs=3)
    assert plan.sample_rate == pytest.approx(0.01)
    assert plan.steps_per_epoch == 100 and plan.steps == 300 and plan.epochs == 3
    assert plan.unit == "record" and plan.unit_word == "patch" and plan.expected_batch_units == pytest.approx(32)
    spent = rdp_epsilon(plan.sample_rate, plan.noise_multiplier, plan.steps, plan.delta)  # dp-accounting's own RDP
    assert 0.98 * 5.0 <= spent <= 1.05 * 5.0


def test_max_steps_replaces_epochs_and_a_partial_last_epoch_counts() -> None:
    plan = plan_training(target_epsilon=5.0, delta=1e-4, unit="image", record_kind="patch", n_units=3200, batch_size=32, epochs=3, max_steps=150)
    assert plan.steps == 150 and plan.epochs == 2 and plan.unit_word == "image"


def test_infinite_epsilon_plans_no_noise() -> None:
    plan = plan_training(target_epsilon=math.inf, delta=1e-4, unit="patch", record_kind="patch", n_units=100, batch_size=10, max_steps=5)
    assert not plan.private and plan.noise_multiplier is None and plan.to_dict()["target_epsilon"] == "inf"


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"batch_size": 200}, PrivmedError, "exceeds the 100 privacy units"),
        ({"delta": 0.01}, PrivacyError, "1/N"),
        ({"target_epsilon": 0.0}, PrivacyError, "epsilon"),
        ({"epochs": None}, PrivmedError, "epochs"),
        ({"max_grad_norm": 0.0}, PrivacyError, "max_grad_norm"),
    ],
)
def test_bad_plans_are_refused_with_a_message(changes: dict, error: type, message: str) -> None:
    options = {"target_epsilon": 4.0, "delta": 1e-3, "unit": "patch", "record_kind": "patch", "n_units": 100, "batch_size": 10, "epochs": 1}
    with pytest.raises(error, match=message):
        plan_training(**{**options, **changes})


def test_start_run_resumes_only_with_the_same_data_and_options(tmp_path) -> None:
    plan = plan_training(target_epsilon=5.0, delta=1e-4, unit="patch", record_kind="patch", n_units=3200, batch_size=32, max_steps=10)
    run = RunDirectory(tmp_path / "run")
    common = {"method": "dpwgan", "plan": plan, "data_info": {"name": "phantom"}}
    run_id = start_run(run, False, params={"lr": 1.0}, data_key="phantom@aaaa", **common)
    config_before = run.config_path.read_text()
    assert start_run(run, True, params={"lr": 1.0}, data_key="phantom@aaaa", **common) == run_id
    assert "phantom@aaaa" not in run.config_path.read_text()  # the ledger key stays in the ledger
    BudgetLedger().reserve("phantom@aaaa", run_id, epsilon=5.0, delta=1e-4, unit="patch")  # what training books
    with pytest.raises(PrivmedError, match="trained on other data"):
        start_run(run, True, params={"lr": 1.0}, data_key="other@bbbb", **common)
    with pytest.raises(PrivmedError, match="other options"):
        start_run(run, True, params={"lr": 2.0}, data_key="phantom@aaaa", **common)
    with pytest.raises(PrivmedError, match="already holds a run"):
        start_run(run, False, params={"lr": 1.0}, data_key="phantom@aaaa", **common)
    assert run.config_path.read_text() == config_before


class _Killed(Exception):
    pass


def test_a_default_run_resumes_says_its_randomness_is_secret_and_stores_no_noise_or_sampler_state(tmp_path) -> None:
    from privmed.data import load
    from privmed.methods.dpwgan import DPWGAN
    from privmed.methods.trainer import REPRODUCIBLE_NOTE, SECRET_RANDOMNESS_NOTE

    tiny = {"patch_size": 32, "patches_per_subject": 8, "batch_size": 8, "max_steps": 8, "checkpoint_every": 4,
            "generator_channels": 8, "critic_channels": 8, "latent_dim": 16}
    data = load("phantom:train")

    def kill(event) -> None:
        if event.step == 6:
            raise _Killed

    with pytest.raises(_Killed):
        DPWGAN(8.0, run_dir=tmp_path / "run", on_progress=kill, **tiny).fit(data)
    checkpoint = RunDirectory(tmp_path / "run").load_checkpoint()
    assert checkpoint["step"] == 4 and checkpoint["gradient"] == {"secret": True} and checkpoint["sampler"] == {"secret": True}
    resumed = DPWGAN.from_run(tmp_path / "run")
    assert not resumed.reproducible
    report = resumed.fit(data).privacy_report()
    assert report.steps == 8 and not report.reproducible
    args = (report.sample_rate, report.noise_multiplier, 8, report.delta)
    assert pld_epsilon(*args) <= report.epsilon <= 1.05 * rdp_epsilon(*args)  # dp-accounting, not privmed
    assert SECRET_RANDOMNESS_NOTE in report.notes and REPRODUCIBLE_NOTE not in report.notes
    flagged = DPWGAN(8.0, **{**tiny, "reproducible": True}).fit(data).privacy_report()
    assert flagged.reproducible and REPRODUCIBLE_NOTE in flagged.notes and SECRET_RANDOMNESS_NOTE not in flagged.notes
