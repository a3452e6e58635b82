"""``privmed train acgan``, ``privmed generate --class`` and ``privmed morph`` on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load

runner = CliRunner()
SMALL = ["--batch-size", "16", "--base-channels", "4", "--max-steps", "4"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("acgan-cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(root / "ledger.json"))
        result = runner.invoke(
            app, ["train", "acgan", "--data", "phantom-classes:train", "--out", str(root / "run"), "--epsilon", "5", *SMALL]
        )
    assert result.exit_code == 0, result.output
    assert "discriminator steps" in result.output
    return root / "run"


def test_train_writes_a_privacy_report_within_the_budget(trained_run: Path) -> None:
    report = json.loads((trained_run / "privacy.json").read_text())
    assert report["unit"] == "image" and report["steps"] == 4
    assert 0 < report["epsilon"] <= 5.0


def test_generate_one_class_and_by_frequencies(trained_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "12", "--out", str(tmp_path / "one"), "--class", "abnormal"])
    assert result.exit_code == 0, result.output
    samples = load(str(tmp_path / "one" / "data.npz"))
    assert len(samples) == 12 and np.all(samples.labels == 1)
    assert samples.class_names == ("normal", "abnormal")
    assert (tmp_path / "one" / "privacy.json").read_text() == (trained_run / "privacy.json").read_text()
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "64", "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    assert set(load(str(tmp_path / "all" / "data.npz")).labels) == {0, 1}


def test_generate_an_unknown_class_is_one_red_line(trained_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", str(trained_run), "--n", "4", "--out", str(tmp_path / "x"), "--class", "7"])
    assert result.exit_code == 1
    assert "unknown class" in result.output
    assert not (tmp_path / "x").exists()


def test_morph_writes_a_grid_of_rows_by_steps(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "morph.png"
    result = runner.invoke(app, ["morph", str(trained_run), "--from", "0", "--to", "1", "--steps", "8", "--rows", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    width, height = Image.open(out).size
    assert width > height > 0  # 8 tiles across, 2 down


def test_resume_of_a_finished_run_reads_its_data_and_options_from_the_run(trained_run: Path) -> None:
    before = json.loads((trained_run / "privacy.json").read_text())
    result = runner.invoke(app, ["train", "acgan", "--out", str(trained_run), "--resume"])
    assert result.exit_code == 0, result.output
    after = json.loads((trained_run / "privacy.json").read_text())
    assert after["steps"] == before["steps"] == 4
    assert after["epsilon"] == pytest.approx(before["epsilon"], rel=1e-12)


def test_the_recipe_options_reach_the_run_and_bad_ones_are_one_red_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVMED_LEDGER", str(tmp_path / "ledger.json"))
    base = ["train", "acgan", "--data", "phantom-classes:train", "--epsilon", "5", *SMALL]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "run"), "--discriminator-steps", "2", "--generator-ema", "0.9"])
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "run" / "config.json").read_text())["params"]
    assert params["discriminator_steps"] == 2 and params["generator_ema"] == 0.9
    notes = json.loads((tmp_path / "run" / "privacy.json").read_text())["notes"]
    assert any("2 discriminator steps per generator step" in note for note in notes)
    assert any("moving average of the generator's weights (decay 0.9" in note for note in notes)
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--generator-ema", "1"])
    assert result.exit_code == 1 and "generator_ema" in result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--discriminator-steps", "0"])
    assert result.exit_code != 0
    assert not (tmp_path / "bad").exists()
