"""``privmed evaluate segmentation | fidelity | table`` on the embedded phantom."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from privmed.cli import app
from privmed.privacy.report import PrivacyReport

runner = CliRunner()


def _report(epsilon: float) -> PrivacyReport:
    return PrivacyReport(mechanism="DP-SGD (subsampled Gaussian)", accountant="rdp", unit="patch", n_units=1000, epsilon=epsilon, delta=1e-4)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory):
    """A release directory with privacy.json and the outputs of both evaluation commands."""
    directory = tmp_path_factory.mktemp("release_eps8")
    _report(8.0).to_json(directory / "privacy.json")
    segmentation = runner.invoke(app, [
        "evaluate", "segmentation", "--train", "phantom:train", "--test", "phantom:test", "--out", str(directory / "evaluation"),
        "--steps", "5", "--patch-size", "32", "--json",
    ])  # fmt: skip
    fidelity = runner.invoke(app, [
        "evaluate", "fidelity", "--real", "phantom:train", "--synthetic", "phantom:test", "--out", str(directory / "evaluation"),
        "--encoder-steps", "5", "--ssim-pairs", "10", "--no-plots", "--json",
    ])  # fmt: skip
    return directory, segmentation, fidelity


def test_segmentation_command_writes_its_report(release) -> None:
    directory, result, _ = release
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["test"] == "phantom:test" and rows[0]["n_images"] > 0
    written = json.loads((directory / "evaluation" / "segmentation.json").read_text())
    assert written["results"][0]["dice_mean"] == pytest.approx(rows[0]["dice_mean"])
    assert written["training_sets"][written["model"]]["patch_size"] == 32
    assert (directory / "evaluation" / "per_image.csv").exists()
    assert list((directory / "evaluation" / "overlays").glob("*.png"))


def test_fidelity_command_writes_its_report(release) -> None:
    directory, _, result = release
    assert result.exit_code == 0, result.output
    written = json.loads((directory / "evaluation" / "fidelity.json").read_text())
    assert written["fid_train"] == pytest.approx(json.loads(result.stdout)["fid_train"])
    assert written["extractor"]["name"] == "domain"


def test_table_rows_come_from_the_release_files(release, tmp_path) -> None:
    directory, _, _ = release
    reference = tmp_path / "release_inf"
    reference.mkdir()
    _report(math.inf).to_json(reference / "privacy.json")
    result = runner.invoke(app, ["evaluate", "table", str(directory), str(reference), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    segmentation = json.loads((directory / "evaluation" / "segmentation.json").read_text())["results"][0]
    fidelity = json.loads((directory / "evaluation" / "fidelity.json").read_text())
    assert rows[0]["release"] == directory.name and float(rows[0]["epsilon"]) == 8.0 and rows[0]["unit"] == "patch"
    assert float(rows[0]["dsc"]) == pytest.approx(segmentation["dice_mean"])
    assert float(rows[0]["fid_train"]) == pytest.approx(fidelity["fid_train"])
    assert rows[1]["epsilon"] == "inf" and rows[1]["dsc"] == "" and rows[1]["fid_train"] == ""

    markdown = runner.invoke(app, ["evaluate", "table", str(directory), str(reference)])
    assert markdown.exit_code == 0
    lines = markdown.stdout.strip().splitlines()
    assert lines[0].startswith("| release | epsilon") and len(lines) == 4


def test_table_of_a_missing_directory_is_one_red_line(tmp_path) -> None:
    result = runner.invoke(app, ["evaluate", "table", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such release directory" in result.output and "Traceback" not in result.output


def test_segmentation_with_an_unlabelled_test_set_fails_cleanly(tmp_path) -> None:
    result = runner.invoke(app, [
        "evaluate", "segmentation", "--train", "phantom:train", "--test", "phantom-classes:test", "--out", str(tmp_path / "out"), "--steps", "1",
    ])  # fmt: skip
    assert result.exit_code == 1
    assert "no segmentation labels" in result.output
    assert not (tmp_path / "out" / "segmentation.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unusable_device_is_refused_before_anything_is_written(tmp_path) -> None:
    result = runner.invoke(app, [
        "evaluate", "segmentation", "--train", "phantom:train", "--test", "phantom:test", "--out", str(tmp_path / "out"), "--steps", "1",
        "--device", "cuda",
    ])  # fmt: skip
    assert result.exit_code == 2
    assert "--device" in result.output and "not usable" in result.output
    assert not (tmp_path / "out").exists()
