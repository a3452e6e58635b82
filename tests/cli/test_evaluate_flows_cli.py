"""``privmed evaluate obfuscation`` on phantom-classes with tiny flows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load

runner = CliRunner()
DATA = ["--originals", "phantom-classes:train", "--test", "phantom-classes:test"]


def _tiny_flow_dir(path: Path, conditional: bool) -> Path:
    """A one-epoch tiny flow directory as ``privmed train flow`` writes it."""
    from privmed.methods.flow_training import FlowTrainer
    from privmed.models.flows import ConditionalINN, Glow
    from privmed.runs import RunDirectory

    data = load("phantom-classes:train")
    shape = data.images.shape[1:]
    size = {"levels": 1, "depth": 1, "hidden_channels": 8}
    flow = ConditionalINN(shape, n_classes=2, **size) if conditional else Glow(shape, **size)
    run = RunDirectory(path)
    run.create({"flow": flow.config})
    FlowTrainer(flow, epochs=1, batch_size=64, run_dir=run.path).fit(data)
    return path


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("obfuscation-flows")
    return {"cinn": _tiny_flow_dir(root / "cinn", conditional=True), "glow": _tiny_flow_dir(root / "glow", conditional=False)}


def test_obfuscation_curve_for_every_method(flows: dict[str, Path], tmp_path: Path, isolated_ledger: Path) -> None:
    out = tmp_path / "obf"
    result = runner.invoke(
        app,
        ["evaluate", "obfuscation", *DATA, "--feature", "marker", "--out", str(out), "--epsilons", "1,1e7",
         "--cadp", str(flows["cinn"]), "--clip", "2", "--dpglow", str(flows["glow"]), "--pixel-ldp",
         "--detector-epochs", "4", "--json"],
    )
    assert result.exit_code == 0, result.output
    written = json.loads((out / "obfuscation.json").read_text())
    assert json.loads(result.stdout) == written
    points = written["points"]
    assert [(p["method"], p["epsilon"]) for p in points] == [
        ("none", float("inf")), ("cadp", 1.0), ("cadp", 1e7), ("dpglow", 1.0), ("dpglow", 1e7), ("pixel-ldp", 1.0), ("pixel-ldp", 1e7)
    ]
    assert all(p["unit"] == "image" and p["feature"] == "marker" for p in points)
    for p in points:
        assert p["advantage"] == pytest.approx(p["detection_rate"] - p["false_alarm_rate"])
    by_key = {(p["method"], p["epsilon"]): p for p in points}
    # The detector finds the marker on untouched images, and pixel noise at epsilon 1e7 (scale 8e-5) leaves it there;
    # at epsilon 1 (scale 784 per pixel) the pixels are noise and the marker is gone.
    assert by_key[("none", float("inf"))]["advantage"] > 0.8
    assert by_key[("pixel-ldp", 1e7)]["advantage"] > 0.8
    assert abs(by_key[("pixel-ldp", 1.0)]["advantage"]) < 0.25
    assert written["methods"]["cadp"] == {"flow": str(flows["cinn"]), "clip": 2.0}
    assert (out / "obfuscation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not isolated_ledger.exists(), "an evaluation must not record a release in the budget ledger"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epsilons", "1,10"], "choose at least one method"),
        (["--epsilons", "1,ten", "--pixel-ldp"], "'ten' is not a number"),
        (["--epsilons", "0,10", "--pixel-ldp"], "positive and finite"),
        (["--epsilons", "1", "--cadp", "FLOW"], "--cadp needs --clip"),
        (["--epsilons", "1", "--clip", "2", "--pixel-ldp"], "give it together with --cadp"),
        (["--epsilons", "1", "--dpglow", "MISSING"], "not a privmed run directory"),
    ],
)
def test_mistakes_are_one_red_line_and_write_nothing(flows: dict[str, Path], tmp_path: Path, extra: list[str], message: str) -> None:
    extra = [str(flows["cinn"]) if arg == "FLOW" else str(tmp_path / "none") if arg == "MISSING" else arg for arg in extra]
    out = tmp_path / "obf"
    result = runner.invoke(app, ["evaluate", "obfuscation", *DATA, "--feature", "flip", "--out", str(out), *extra])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_existing_results_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "obfuscation.json").write_text("{}")
    args = ["evaluate", "obfuscation", *DATA, "--feature", "flip", "--out", str(tmp_path), "--epsilons", "1", "--pixel-ldp"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "already holds an obfuscation.json" in result.output
    assert (tmp_path / "obfuscation.json").read_text() == "{}"
    assert not (tmp_path / "obfuscation.png").exists()


def test_a_detector_that_cannot_find_the_feature_is_flagged(tmp_path: Path) -> None:
    # The phantom is left-right symmetric by construction (lungs at 0.3 and 0.7, the opacity in either), so no
    # detector can see a flip there: its misses after privatization must not read as "hidden".
    out = tmp_path / "obf"
    args = ["evaluate", "obfuscation", *DATA, "--feature", "flip", "--out", str(out), "--epsilons", "10", "--pixel-ldp"]
    result = runner.invoke(app, [*args, "--detector-epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "barely finds the flip" in result.output
    written = json.loads((out / "obfuscation.json").read_text())
    assert written["points"][0]["auc"] < 0.75
    assert any("barely finds the flip" in note for note in written["notes"])
