"""``privmed train vessel-sim`` and ``privmed generate`` on its run, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load
from privmed.privacy.ledger import BudgetLedger, dataset_key
from privmed.privacy.report import PrivacyReport

runner = CliRunner()


def test_train_then_generate_carries_the_guarantee_and_books_it(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "samples"
    result = runner.invoke(app, ["train", "vessel-sim", "--data", "phantom:train", "--out", str(run), "--epsilon", "4", "--evaluations", "20"])
    assert result.exit_code == 0, result.output
    report = PrivacyReport.from_json(run / "privacy.json")
    assert report.epsilon == pytest.approx(4.0) and report.unit == "image" and report.n_units == 16 and report.delta == 1e-5
    assert BudgetLedger().spent(dataset_key(load("phantom:train")), "image")[0] == pytest.approx(4.0)
    assert (run / "samples" / "fitted.png").is_file()
    result = runner.invoke(app, ["generate", str(run), "--n", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = load(str(out / "data.npz"))
    assert len(samples) == 5 and samples.segmentations is not None and samples.spatial_shape == (96, 96)
    assert json.loads((out / "privacy.json").read_text())["epsilon"] == pytest.approx(4.0)


def test_public_prior_alone_reads_no_data_and_says_epsilon_zero(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "vessel-sim", "--epsilon", "0", "--out", str(tmp_path / "prior"), "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "public data only" in result.output
    report = PrivacyReport.from_json(tmp_path / "prior" / "privacy.json")
    assert report.epsilon == 0 and report.n_units == 0 and not BudgetLedger().entries()


def test_a_dp_fit_without_data_is_one_red_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "vessel-sim", "--epsilon", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--data is required" in result.output
