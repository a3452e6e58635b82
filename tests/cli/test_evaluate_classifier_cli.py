"""``privmed evaluate classifier`` on the embedded phantom."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from privmed.cli import app

runner = CliRunner()
PHANTOM = ["--train", "phantom-classes:train", "--test", "phantom-classes:test"]


def test_classifier_command_writes_metrics_and_beats_chance(tmp_path) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "classifier", *PHANTOM, "--epochs", "4", "--batch-size", "32", "--resamples", "200", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((out / "metrics.json").read_text())
    assert printed == written
    assert written["roc_auc"] > 0.75 and 0.5 < written["roc_auc_low"] <= written["roc_auc"] <= written["roc_auc_high"]
    assert written["train"] == "phantom-classes:train" and written["n_test"] > 0
    assert (out / "roc.png").stat().st_size > 0


def test_existing_results_are_not_overwritten(tmp_path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    result = runner.invoke(app, ["evaluate", "classifier", *PHANTOM, "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "already holds a metrics.json" in result.output
    assert (tmp_path / "metrics.json").read_text() == "{}"
    assert not (tmp_path / "roc.png").exists()


def test_unknown_model_is_one_red_line(tmp_path) -> None:
    result = runner.invoke(app, ["evaluate", "classifier", *PHANTOM, "--model", "vgg", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "unknown classifier 'vgg'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def _tiny_flow_dir(path, data, seed: int):
    """A flow directory like ``privmed train flow`` writes, from a one-epoch tiny Glow."""
    from privmed.methods.flow_training import FlowTrainer
    from privmed.models.flows import Glow
    from privmed.runs import RunDirectory

    flow = Glow(data.images.shape[1:], levels=1, depth=1, hidden_channels=8, seed=seed)
    run = RunDirectory(path)
    run.create({"flow": flow.config})
    FlowTrainer(flow, epochs=1, batch_size=64, seed=seed, run_dir=run.path).fit(data)
    return path


def test_detection_command_scores_with_two_flows(tmp_path) -> None:
    from privmed.data import load

    train = load("phantom-classes:train")
    normal_dir = _tiny_flow_dir(tmp_path / "normal", train.subset(train.labels == 0), seed=0)
    mixture_dir = _tiny_flow_dir(tmp_path / "mixture", train, seed=1)
    out = tmp_path / "detect"
    result = runner.invoke(
        app,
        ["evaluate", "detection", "--normal-flow", str(normal_dir), "--mixture-flow", str(mixture_dir),
         "--data", "phantom-classes:test", "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    written = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= written["auc_low"] <= written["auc"] <= written["auc_high"] <= 1.0
    assert written["n_images"] == len(load("phantom-classes:test"))


def test_detection_without_a_flow_directory_is_one_red_line(tmp_path) -> None:
    result = runner.invoke(
        app,
        ["evaluate", "detection", "--normal-flow", str(tmp_path), "--mixture-flow", str(tmp_path),
         "--data", "phantom-classes:test", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 1
    assert "not a privmed run directory" in result.output


def test_metrics_carry_the_guarantee_of_a_privatized_release(tmp_path) -> None:
    release = tmp_path / "release"
    made = runner.invoke(app, ["privatize", "pixel-ldp", "--data", "phantom-classes:train", "--epsilon", "50000", "--reproducible", "--seed", "0",
                               "--public-labels", "--out", str(release)])
    assert made.exit_code == 0, made.output
    train_ref = str(next(release.glob("*.npz")))
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["evaluate", "classifier", "--train", train_ref, "--test", "phantom-classes:test", "--epochs", "1", "--resamples", "100", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    privacy = json.loads((out / "metrics.json").read_text())["privacy"]
    written = json.loads((release / "privacy.json").read_text())
    assert privacy["epsilon"] == written["epsilon"] == 50000 and privacy["unit"] == written["unit"]
