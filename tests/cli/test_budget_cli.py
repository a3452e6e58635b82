"""``privmed budget`` in both directions and ``privmed ledger``: JSON outputs and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.privacy.calibration import dpsgd_epsilon
from privmed.privacy.ledger import BudgetLedger

runner = CliRunner()
DPSGD = ["--sample-rate", "0.01", "--steps", "10000", "--delta", "1e-5"]


def run_json(arguments: list[str]) -> dict:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_epsilon_from_noise() -> None:
    payload = run_json(["budget", "--noise-multiplier", "1.0", *DPSGD, "--unit", "patch", "--json"])
    assert payload["epsilon"] == dpsgd_epsilon(1.0, 0.01, 10000, 1e-5)
    assert payload["epsilon"] == pytest.approx(6.71, abs=0.01)
    assert payload["accountant"] == "rdp" and payload["unit"] == "patch" and payload["steps"] == 10000
    assert payload["summary"].endswith("-DP per patch, DP-SGD, RDP accountant")


def test_noise_from_target_epsilon() -> None:
    payload = run_json(["budget", "--target-epsilon", "8", *DPSGD, "--json"])
    assert 0.99 * 8 <= payload["epsilon"] <= 8
    assert payload["epsilon"] == dpsgd_epsilon(payload["noise_multiplier"], 0.01, 10000, 1e-5)


def test_epochs_and_default_delta_from_the_number_of_units() -> None:
    payload = run_json(["budget", "--noise-multiplier", "1.2", "--sample-rate", "0.05", "--epochs", "3", "--n-units", "99", "--json"])
    assert payload["steps"] == 60 and payload["delta"] == pytest.approx(1e-5)
    assert payload["epsilon"] == dpsgd_epsilon(1.2, 0.05, 60, 1e-5)


def test_epochs_plan_the_steps_training_takes() -> None:
    """Finding 9: at q = 0.3 an epoch is round(1/0.3) = 3 steps in training; budget planned ceil(3/0.3) = 10 for 3 epochs."""
    payload = run_json(["budget", "--noise-multiplier", "1.2", "--sample-rate", "0.3", "--epochs", "3", "--delta", "1e-5", "--json"])
    assert payload["steps"] == 9


def test_prv_accountant_gives_a_smaller_epsilon() -> None:
    arguments = ["budget", "--noise-multiplier", "1.0", "--sample-rate", "0.05", "--steps", "200", "--delta", "1e-5", "--json"]
    rdp, prv = run_json(arguments), run_json([*arguments, "--accountant", "prv"])
    assert prv["accountant"] == "prv" and prv["epsilon"] < rdp["epsilon"]


def test_laplace_scale() -> None:
    payload = run_json(["budget", "--laplace-sensitivity", "2", "--epsilon", "0.5", "--unit", "image", "--json"])
    assert payload["laplace_scale"] == 4.0 and payload["mechanism"] == "Laplace" and payload["unit"] == "image"


def test_table_output_states_the_guarantee() -> None:
    result = runner.invoke(app, ["budget", "--noise-multiplier", "1.0", *DPSGD, "--unit", "patient"])
    assert result.exit_code == 0, result.output
    assert "(epsilon=6.71, delta=1.0e-05)-DP per patient" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--noise-multiplier", "1", "--target-epsilon", "8", *DPSGD], "exactly one of --noise-multiplier"),
        (DPSGD, "exactly one of --noise-multiplier"),
        (["--target-epsilon", "0", *DPSGD], "epsilon"),
        (["--target-epsilon", "-2", *DPSGD], "epsilon"),
        (["--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "1"], "delta"),
        (["--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "0.02", "--n-units", "50"], "1/N"),
        (["--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--epochs", "2", "--delta", "1e-5"], "--steps and --epochs"),
        (["--noise-multiplier", "1", "--sample-rate", "2", "--steps", "10", "--delta", "1e-5"], "sample_rate"),
        (["--noise-multiplier", "1", *DPSGD, "--accountant", "gdp"], "gdp"),
        (["--noise-multiplier", "1", *DPSGD, "--unit", "organ"], "organ"),
        (["--epsilon", "1"], "--laplace-sensitivity"),
        (["--laplace-sensitivity", "1", "--epsilon", "0"], "epsilon"),
    ],
)
def test_bad_values_give_one_red_line_and_exit_1(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["budget", *arguments, "--json"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_ledger_set_total_and_show(isolated_ledger: Path) -> None:
    result = runner.invoke(app, ["ledger", "set-total", "drive@0123456789abcdef", "--epsilon", "10", "--delta", "1e-4"])
    assert result.exit_code == 0, result.output
    BudgetLedger().reserve("drive@0123456789abcdef", "run-1", epsilon=3.0, delta=1e-5, unit="patient", description="dpwgan")
    payload = run_json(["ledger", "show", "--json"])
    assert payload["ledger"] == str(isolated_ledger)
    budget = payload["datasets"]["drive@0123456789abcdef"]
    assert budget["total"] == {"epsilon": 10.0, "delta": 1e-4}
    assert budget["spent"]["patient"]["epsilon"] == 3.0 and budget["remaining"]["record"] == 7.0
    assert [r["release_id"] for r in payload["releases"]] == ["run-1"]
    table = runner.invoke(app, ["ledger", "show"])
    assert table.exit_code == 0 and "run-1" in table.output and "dpwgan" in table.output


def test_ledger_set_total_refuses_bad_epsilon_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    result = runner.invoke(app, ["ledger", "set-total", "x@0", "--epsilon", "-1", "--ledger", str(path)])
    assert result.exit_code == 1 and "epsilon" in result.output
    assert not path.exists()


def test_ledger_total_by_name_and_large_delta_flag(isolated_ledger: Path) -> None:
    """A total can be set by the dataset's name (the key's tag is private); a delta above 1/(10N) is flagged."""
    assert runner.invoke(app, ["ledger", "set-total", "drive", "--epsilon", "10"]).exit_code == 0
    BudgetLedger().reserve("drive@0123456789abcdef", "run-1", epsilon=3.0, delta=1 / 21, unit="image", n_units=20)
    payload = run_json(["ledger", "show", "--dataset", "drive", "--json"])
    budget = payload["datasets"]["drive@0123456789abcdef"]
    assert budget["total"]["epsilon"] == 10.0 and budget["remaining"]["image"] == 7.0
    assert budget["large_delta"] == ["run-1"]
    table = runner.invoke(app, ["ledger", "show"])
    assert "1/(10N)" in table.output
