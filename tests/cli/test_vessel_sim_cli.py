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


def test_geometry_statistics_release_six_label_statistics_and_keep_the_appearance_public(tmp_path: Path) -> None:
    from privmed.data.vessel_sim import VesselSimParams
    from privmed.methods.vessel_sim import GEOMETRY_PARAMETERS

    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "vessel-sim", "--data", "phantom:train", "--out", str(run), "--epsilon", "4", "--evaluations", "12",
        "--statistics", "geometry", "--prior-weight", "10",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    fit = json.loads((run / "fit.json").read_text())
    assert fit["statistics"] == ["vessel_fraction", "width~1-2", "width~2-3", "width~3-5", "width~5-7", "width>=7"]
    assert len(fit["released_mean"]) == 6
    defaults = VesselSimParams().to_dict()
    assert {k: v for k, v in fit["simulator_params"].items() if k not in GEOMETRY_PARAMETERS} == {k: v for k, v in defaults.items() if k not in GEOMETRY_PARAMETERS}
    assert json.loads((run / "config.json").read_text())["params"]["statistics"] == "geometry"


def test_public_prior_alone_reads_no_data_and_says_epsilon_zero(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "vessel-sim", "--epsilon", "0", "--out", str(tmp_path / "prior"), "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "public data only" in result.output
    report = PrivacyReport.from_json(tmp_path / "prior" / "privacy.json")
    assert report.epsilon == 0 and report.n_units == 0 and not BudgetLedger().entries()


def test_a_dp_fit_without_data_is_one_red_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "vessel-sim", "--epsilon", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--data is required" in result.output


def test_demo_releases_vessel_pairs_with_its_evaluation_beside_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from privmed.cli import demo as demo_module

    for name, value in (("DEMO_PRIVATE_IMAGES", 6), ("DEMO_TEST_IMAGES", 2), ("DEMO_SIZE", 64), ("DEMO_SAMPLES", 6),
                        ("DEMO_EVALUATIONS", 2), ("DEMO_UTILITY_STEPS", 2)):
        monkeypatch.setattr(demo_module, name, value)
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "public (not covered by epsilon)" in result.output and "per image" in result.output
    assert "trained on the DP release" in result.output and "public prior alone" in result.output
    assert PrivacyReport.from_json(out / "release" / "privacy.json").epsilon == pytest.approx(8.0)
    assert PrivacyReport.from_json(out / "prior" / "privacy.json").epsilon == 0
    evaluation = json.loads((out / "release" / "evaluation" / "segmentation.json").read_text())
    assert {row["model"] for row in evaluation["results"]} >= {"U-Net trained on the DP release"}
    assert (out / "synthetic_grid.png").is_file() and len(load(str(out / "synthetic" / "data.npz"))) == 6
