"""``privmed train dpwgan`` and ``privmed generate`` end to end on the phantom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load
from privmed.privacy.ledger import BudgetLedger

runner = CliRunner()
SMALL = ["--patch-size", "32", "--patches-per-subject", "8", "--batch-size", "8", "--base-channels", "8"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``privmed train dpwgan --data phantom --out R --epsilon 8 --max-steps 20`` (small networks and patches)."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(root / "ledger.json"))
        result = runner.invoke(
            app, ["train", "dpwgan", "--data", "phantom", "--out", str(root / "R"), "--epsilon", "8", "--max-steps", "20", *SMALL]
        )
    assert result.exit_code == 0, result.output
    assert "privacy budget of this run is spent" in result.output
    return root / "R"


def test_train_writes_a_privacy_report_within_the_budget(trained_run: Path) -> None:
    report = json.loads((trained_run / "privacy.json").read_text())
    assert 0 < report["epsilon"] <= 8.0
    assert report["unit"] == "patch" and 0 < report["delta"] < 1 / report["n_units"]
    assert report["steps"] == 20


def test_the_run_epsilon_is_what_privmed_budget_gives_for_its_parameters(trained_run: Path) -> None:
    report = json.loads((trained_run / "privacy.json").read_text())
    result = runner.invoke(
        app,
        ["budget", "--noise-multiplier", repr(report["noise_multiplier"]), "--sample-rate", repr(report["sample_rate"]),
         "--steps", str(report["steps"]), "--delta", repr(report["delta"]), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["epsilon"] == pytest.approx(report["epsilon"], rel=1e-9)


def test_generate_writes_pairs_that_data_info_reads(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "S"
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "16", "--out", str(out), "--format", "npz"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "privacy.json").read_text()) == json.loads((trained_run / "privacy.json").read_text())
    info = runner.invoke(app, ["data", "info", str(out / "data.npz"), "--json"])
    assert info.exit_code == 0, info.output
    summary = next(iter(json.loads(info.output)["splits"].values()))
    assert summary["records"] == 16 and summary["has_segmentations"]


def test_generate_png_loads_back(trained_run: Path, tmp_path: Path) -> None:
    from privmed.data import load

    result = runner.invoke(app, ["generate", str(trained_run), "--n", "4", "--out", str(tmp_path / "P"), "--format", "png"])
    assert result.exit_code == 0, result.output
    data = load(str(tmp_path / "P" / "data"))
    assert len(data) == 4 and set(data.segmentations.ravel()) <= {0, 1}


def test_bad_epsilon_is_one_red_line_and_no_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "dpwgan", "--data", "phantom", "--out", str(tmp_path / "R"), "--epsilon", "0", *SMALL])
    assert result.exit_code == 1
    assert "error:" in result.output and "epsilon" in result.output
    assert not (tmp_path / "R").exists()


def test_an_existing_run_is_not_overwritten(trained_run: Path) -> None:
    result = runner.invoke(app, ["train", "dpwgan", "--data", "phantom", "--out", str(trained_run), "--epsilon", "8", "--max-steps", "4", *SMALL])
    assert result.exit_code == 1 and "--resume" in result.output


def test_resume_of_a_finished_run_keeps_its_steps_and_its_one_ledger_entry(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = BudgetLedger(trained_run.parent / "ledger.json")
    monkeypatch.setenv("PRIVMED_LEDGER", str(ledger.path))
    before = json.loads((trained_run / "privacy.json").read_text())
    result = runner.invoke(app, ["train", "dpwgan", "--out", str(trained_run), "--resume"])
    assert result.exit_code == 0, result.output
    after = json.loads((trained_run / "privacy.json").read_text())
    assert after["steps"] == before["steps"] == 20 and after["epsilon"] == before["epsilon"]
    run_id = json.loads((trained_run / "config.json").read_text())["run_id"]
    assert [e["release_id"] for e in ledger.entries()] == [run_id]
    assert ledger.entries()[0]["status"] == "settled"


def test_the_issue_commands_run_with_default_options(tmp_path: Path) -> None:
    """`train dpwgan --data phantom --out R --epsilon 8 --max-steps 20`, then `generate R --n 16 --format npz`."""
    run, samples = tmp_path / "R", tmp_path / "S"
    trained = runner.invoke(app, ["train", "dpwgan", "--data", "phantom", "--out", str(run), "--epsilon", "8", "--max-steps", "20"])
    assert trained.exit_code == 0, trained.output
    generated = runner.invoke(app, ["generate", str(run), "--n", "16", "--out", str(samples), "--format", "npz"])
    assert generated.exit_code == 0, generated.output
    report = json.loads((run / "privacy.json").read_text())
    assert report["epsilon"] <= 8 and report["unit"] == "patch" and 0 < report["delta"]
    assert len(load(str(samples / "data.npz"))) == 16
