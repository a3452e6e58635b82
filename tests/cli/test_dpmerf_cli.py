"""``privmed train dpmerf`` and ``privmed generate`` on a tiny run; refusals print one line and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dpmerf-cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(root / "ledger.json"))
        result = runner.invoke(
            app, ["train", "dpmerf", "--data", "phantom-classes:train", "--out", str(root / "run"), "--epsilon", "2", "--steps", "3",
                  "--features", "pixels,rff=2"],
        )
    assert result.exit_code == 0, result.output
    assert "analytic Gaussian" in result.output
    return root / "run"


def test_train_writes_the_release_and_its_privacy_report(trained_run: Path) -> None:
    report = json.loads((trained_run / "privacy.json").read_text())
    assert report["unit"] == "image" and report["steps"] == 1 and report["epsilon"] == pytest.approx(2.0)
    assert report["delta"] == 1e-5 and report["sensitivity"] == 1.0
    config = json.loads((trained_run / "config.json").read_text())
    assert config["method"] == "dpmerf" and config["params"]["features"] == {"pixels": 1.0, "rff": 2.0}


def test_generate_any_number_of_labelled_images(trained_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "1000", "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    samples = load(str(tmp_path / "all" / "data.npz"))
    assert len(samples) == 1000 and set(np.unique(samples.labels)) == {0, 1}
    assert json.loads((tmp_path / "all" / "privacy.json").read_text())["epsilon"] == pytest.approx(2.0)
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "5", "--out", str(tmp_path / "one"), "--class", "normal"])
    assert result.exit_code == 0, result.output
    assert set(load(str(tmp_path / "one" / "data.npz")).labels) == {0}


@pytest.mark.parametrize(("options", "message"), [(["--epsilon", "0"], "epsilon"), (["--epsilon", "1", "--features", "pixels,edges"], "unknown feature")])
def test_bad_options_are_refused_in_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", "dpmerf", "--data", "phantom-classes:train", "--out", str(tmp_path / "run"), "--steps", "2", *options])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "run").exists()
