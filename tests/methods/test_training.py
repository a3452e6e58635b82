"""The shared DP training plan: schedule arithmetic, calibration, refusals."""

from __future__ import annotations

import math

import pytest

from privmed.errors import PrivacyError, PrivmedError
from privmed.methods.trainer import start_run
from privmed.privacy.calibration import dpsgd_epsilon
from privmed.privacy.plan import plan_training
from privmed.runs import RunDirectory


def test_epochs_are_one_over_q_steps_and_the_plan_ends_at_the_target() -> None:
    plan = plan_training(target_epsilon=5.0, delta=1e-4, unit="patch", record_kind="patch", n_units=3200, batch_size=32, epochs=3)
    assert plan.sample_rate == pytest.approx(0.01)
    assert plan.steps_per_epoch == 100 and plan.steps == 300 and plan.epochs == 3
    assert plan.unit == "record" and plan.unit_word == "patch" and plan.expected_batch_units == pytest.approx(32)
    spent = dpsgd_epsilon(plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta)
    assert 0.98 * 5.0 <= spent <= 5.0


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
    with pytest.raises(PrivmedError, match="trained on phantom@aaaa"):
        start_run(run, True, params={"lr": 1.0}, data_key="other@bbbb", **common)
    with pytest.raises(PrivmedError, match="other options"):
        start_run(run, True, params={"lr": 2.0}, data_key="phantom@aaaa", **common)
    with pytest.raises(PrivmedError, match="already holds a run"):
        start_run(run, False, params={"lr": 1.0}, data_key="phantom@aaaa", **common)
    assert run.config_path.read_text() == config_before


class _Killed(Exception):
    pass


def test_a_secure_rng_run_resumes_says_so_and_stores_no_noise_state(tmp_path) -> None:
    from privmed.data import load
    from privmed.methods.dpwgan import DPWGAN
    from privmed.methods.trainer import SECURE_NOISE_NOTE

    tiny = {"patch_size": 32, "patches_per_subject": 8, "batch_size": 8, "max_steps": 8, "checkpoint_every": 4,
            "generator_channels": 8, "critic_channels": 8, "latent_dim": 16, "secure_rng": True}
    data = load("phantom:train")

    def kill(event) -> None:
        if event.step == 6:
            raise _Killed

    with pytest.raises(_Killed):
        DPWGAN(8.0, run_dir=tmp_path / "run", on_progress=kill, **tiny).fit(data)
    checkpoint = RunDirectory(tmp_path / "run").load_checkpoint()
    assert checkpoint["step"] == 4 and checkpoint["gradient"] == {"secure_rng": True}
    resumed = DPWGAN.from_run(tmp_path / "run")
    assert resumed.secure_rng
    report = resumed.fit(data, resume=True).privacy_report()
    assert report.steps == 8
    assert report.epsilon == pytest.approx(dpsgd_epsilon(report.noise_multiplier, report.sample_rate, 8, report.delta), rel=1e-12)
    assert SECURE_NOISE_NOTE in report.notes
    assert SECURE_NOISE_NOTE not in DPWGAN(8.0, **{**tiny, "secure_rng": False}).fit(data).privacy_report().notes
