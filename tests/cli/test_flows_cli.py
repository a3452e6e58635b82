"""``privmed train flow`` and ``privmed privatize cadp | dpglow | pixel-ldp`` on phantom data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load
from privmed.privacy.ledger import BudgetLedger, dataset_key

runner = CliRunner()
TRAIN, TEST = "phantom-classes:train", "phantom-classes:test"


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flows") / "cinn"
    with pytest.MonkeyPatch.context() as patch:  # module scope: never the user's ledger (or its salt)
        patch.setenv("PRIVMED_LEDGER", str(tmp_path_factory.mktemp("flow-ledger") / "ledger.json"))
        result = runner.invoke(
            app,
            ["train", "flow", "--data", TRAIN, "--out", str(out), "--conditional", "--coupling", "gin",
             "--levels", "1", "--depth", "2", "--hidden", "8", "--epochs", "2", "--batch-size", "32"],
        )
    assert result.exit_code == 0, result.output
    return out


def test_train_flow_writes_a_run(flow_dir: Path) -> None:
    with (flow_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["train_bits_per_dim"])) for r in rows)
    assert (flow_dir / "checkpoints" / "latest.pt").is_file()
    assert (flow_dir / "samples" / "samples.png").is_file()
    config = json.loads((flow_dir / "config.json").read_text())
    assert config["method"] == "flow" and config["data"]["ref"] == TRAIN  # the one run-config schema
    assert config["params"]["flow"]["kind"] == "cinn" and config["params"]["flow"]["coupling"] == "gin"


def _privatize(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["privatize", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("paper_scale", [False, True])
def test_privatize_cadp(flow_dir: Path, tmp_path: Path, paper_scale: bool) -> None:
    out = tmp_path / "release"
    code, output = _privatize(["cadp", str(flow_dir), "--data", TEST, "--epsilon", "2", "--clip", "1", "--out", str(out), "--reproducible", "--seed", "0", "--public-labels",
                               *(["--paper-scale"] if paper_scale else [])])
    assert code == 0, output
    report = json.loads((out / "privacy.json").read_text())
    assert report["mechanism"] == "Laplace" and report["unit"] == "image" and report["delta"] == 0.0
    assert report["epsilon"] == pytest.approx(4.0 if paper_scale else 2.0)
    released, original = load(str(out / "data.npz")), load(TEST)
    assert released.images.shape == original.images.shape
    assert np.array_equal(released.labels, original.labels)
    assert report["public_data"] and "labels" in report["public_data"][0]
    assert not set(released.subjects) & set(original.subjects)
    ledger = BudgetLedger()
    assert ledger.spent(dataset_key(original), "image")[0] == pytest.approx(report["epsilon"])


def test_privatize_dpglow_and_pixel_ldp(flow_dir: Path, tmp_path: Path) -> None:
    code, output = _privatize(["dpglow", str(flow_dir), "--data", TEST, "--epsilon", "100", "--out", str(tmp_path / "dpglow"), "--reproducible", "--seed", "0", "--public-labels"])
    assert code == 0, output
    report = json.loads((tmp_path / "dpglow" / "privacy.json").read_text())
    assert report["epsilon"] == pytest.approx(100.0)
    assert any("per pixel" in note for note in report["notes"])
    code, output = _privatize(["pixel-ldp", "--data", TEST, "--epsilon", "100", "--out", str(tmp_path / "pixel"), "--format", "png"])
    assert code == 0, output
    assert json.loads((tmp_path / "pixel" / "privacy.json").read_text())["epsilon"] == pytest.approx(100.0)
    assert BudgetLedger().spent(dataset_key(load(TEST)), "image")[0] == pytest.approx(200.0)


def test_privatizing_the_flows_training_data_is_refused_or_states_no_guarantee(flow_dir: Path, tmp_path: Path) -> None:
    """Finding 7: a flow trained on the private data voids the guarantee."""
    args = ["cadp", str(flow_dir), "--data", TRAIN, "--epsilon", "1", "--clip", "0.5", "--public-labels"]
    code, output = _privatize([*args, "--out", str(tmp_path / "r")])
    assert code == 1 and "trained on" in output and "--flow-trained-on-private" in output
    assert not (tmp_path / "r" / "privacy.json").exists() and BudgetLedger().entries() == []
    code, output = _privatize([*args, "--out", str(tmp_path / "r2"), "--flow-trained-on-private"])
    assert code == 0, output
    report = json.loads((tmp_path / "r2" / "privacy.json").read_text())
    assert report["epsilon"] == "inf" and report["notes"][0].startswith("no guarantee")


def test_labels_are_dropped_by_default(tmp_path: Path) -> None:
    """Finding 5: pixel-ldp wrote every image's class and subject while claiming epsilon per image."""
    code, output = _privatize(["pixel-ldp", "--data", TEST, "--epsilon", "1", "--out", str(tmp_path / "p"), "--format", "png"])
    assert code == 0, output
    released, original = load(str(tmp_path / "p" / "images")), load(TEST)
    assert released.labels is None
    assert not set(released.subjects) & set(original.subjects) and not set(released.sources) & set(original.sources)
    records = (tmp_path / "p" / "images" / "records.csv").read_text()
    assert not any(subject in records for subject in set(original.subjects))
    assert json.loads((tmp_path / "p" / "privacy.json").read_text())["public_data"] == []


def test_mistakes_write_nothing(flow_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    code, output = _privatize(["cadp", str(flow_dir), "--data", TEST, "--epsilon", "0", "--clip", "1", "--out", str(out)])
    assert code == 1 and "epsilon" in output and "Traceback" not in output
    code, output = _privatize(["cadp", str(flow_dir), "--data", "phantom:test", "--epsilon", "1", "--clip", "1", "--out", str(out)])
    assert code == 1 and "the flow takes" in output
    assert BudgetLedger().entries() == []  # refused before any budget was reserved
    BudgetLedger().set_total(dataset_key(load(TEST)), 1.0, 0.0)
    code, output = _privatize(["pixel-ldp", "--data", TEST, "--epsilon", "2", "--out", str(out)])
    assert code == 1 and "Traceback" not in output
    assert not (out / "privacy.json").exists()
