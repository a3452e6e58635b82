"""privmed sweep: a tiny pixel-noise grid on a local Ray instance, its resume, its files and its config errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from privmed.cli import app
from privmed.errors import PrivmedError
from privmed.privacy.ledger import BudgetLedger
from privmed.privacy.report import PrivacyReport
from privmed.sweep import SweepConfig, cell_name, run_cell, run_sweep

pytest.importorskip("ray")

EPSILONS = [100.0, math.inf]
SEEDS = [0, 1]
CONFIG = {
    "method": "pixel-ldp",
    "data": "phantom-classes:train",
    "test": "phantom-classes:test",
    "options": {},
    "evaluation": {"epochs": 1, "n_resamples": 200},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One Ray sweep (2 epsilons x 2 seeds, 2 local CPUs), then the same sweep again (every cell skipped)."""
    import ray

    root = tmp_path_factory.mktemp("sweep")
    ledger = root / "ledger.json"
    config_path = root / "sweep.json"
    config_path.write_text(json.dumps(CONFIG))
    config = SweepConfig.from_file(config_path)
    out = root / "out"
    events = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(ledger))
        first = run_sweep(config, EPSILONS, len(SEEDS), out, num_cpus=2, progress=events.append)
        ray_left_running = ray.is_initialized()
        mtimes = {path: path.stat().st_mtime_ns for path in (out / "cells").rglob("*") if path.is_file()}
        entries_after_first = BudgetLedger(ledger).entries()
        second = run_sweep(config, EPSILONS, len(SEEDS), out, num_cpus=2)
        entries_after_second = BudgetLedger(ledger).entries()
    return {
        "root": root, "out": out, "config": config, "config_path": config_path, "ledger": ledger, "first": first,
        "second": second, "events": events, "mtimes": mtimes, "ray_left_running": ray_left_running,
        "entries": (entries_after_first, entries_after_second),
    }


def test_every_cell_runs_within_its_epsilon(swept: dict) -> None:
    first = swept["first"]
    assert not first.failures and first.skipped == 0 and len(first.rows) == 4
    assert not swept["ray_left_running"], "the local Ray instance the sweep started must be shut down"
    assert [e.done for e in swept["events"]] == [1, 2, 3, 4] and {e.status for e in swept["events"]} == {"done"}
    for epsilon in EPSILONS:
        for seed in SEEDS:
            cell = swept["out"] / "cells" / cell_name(epsilon, seed)
            report = PrivacyReport.from_json(cell / "privacy.json")
            result = json.loads((cell / "result.json").read_text())
            assert report.epsilon <= epsilon * (1 + 1e-9)
            assert result["seed"] == seed and 0.0 <= result["utility"] <= 1.0
            assert (cell / "evaluation" / "metrics.json").is_file()
            if math.isfinite(epsilon):
                assert report.mechanism == "Laplace" and report.unit == "image" and report.delta == 0.0
                assert (cell / "data.npz").is_file()
            else:
                assert not (cell / "data.npz").exists(), "the non-private reference releases nothing"


def test_each_finite_cell_is_booked_once_in_the_ledger(swept: dict) -> None:
    entries, after_resume = swept["entries"]
    assert len(entries) == 2, "one release per finite cell; inf cells have nothing to book"
    assert all(e["status"] == "settled" and e["epsilon"] == 100.0 for e in entries)
    assert after_resume == entries
    assert BudgetLedger(swept["ledger"]).spent(entries[0]["dataset_key"], "image")[0] == pytest.approx(200.0)


def test_table_and_plot_read_the_cells(swept: dict) -> None:
    first, out = swept["first"], swept["out"]
    with first.csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["epsilon"], row["seed"]) for row in rows] == [("100.0", "0"), ("100.0", "1"), ("inf", "0"), ("inf", "1")]
    for row in rows:
        report = PrivacyReport.from_json(Path(row["cell"]) / "privacy.json")
        assert float(row["epsilon_spent"]) == report.epsilon and row["unit"] == "image"
        assert float(row["utility"]) == json.loads((Path(row["cell"]) / "result.json").read_text())["utility"]
    markdown = first.markdown_path.read_text()
    for epsilon in ("100", "inf"):
        for seed in SEEDS:
            assert f"\n| {epsilon} | {seed} | {epsilon} | image | 0 |" in markdown
    summary = first.summary()
    assert [s["cells"] for s in summary] == [2, 2] and all(s["min"] <= s["mean"] <= s["max"] for s in summary)
    with Image.open(first.plot_path) as image:
        assert image.format == "PNG" and image.size[0] > 300
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["config"] == swept["config"].to_dict() and stored["epsilons"] == [100.0, "inf"] and stored["seeds"] == SEEDS


def test_second_run_skips_every_cell(swept: dict) -> None:
    second = swept["second"]
    assert second.skipped == 4 and not second.failures
    assert [(r.epsilon, r.seed, r.utility) for r in second.rows] == [(r.epsilon, r.seed, r.utility) for r in swept["first"].rows]
    assert len(swept["mtimes"]) > 10
    for path, mtime in swept["mtimes"].items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten on resume"


def test_cli_resumes_and_prints_the_table(swept: dict) -> None:
    result = CliRunner().invoke(
        app, ["sweep", str(swept["config_path"]), "--epsilons", "100,inf", "--seeds", "2", "--out", str(swept["out"])],
        env={"PRIVMED_LEDGER": str(swept["ledger"]), "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "4 cell(s) were already finished" in result.output and "privacy_utility.png" in result.output


def test_resume_with_another_config_is_refused(swept: dict) -> None:
    changed = SweepConfig.from_dict({**CONFIG, "evaluation": {"epochs": 2}})
    before = (swept["out"] / "sweep.json").read_text()
    with pytest.raises(PrivmedError, match="another configuration.*evaluation"):
        run_sweep(changed, EPSILONS, len(SEEDS), swept["out"], num_cpus=2)
    assert (swept["out"] / "sweep.json").read_text() == before


def _copy_cell(swept: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, BudgetLedger]:
    """A finished finite cell and the sweep's ledger, copied so a test can break them."""
    cell = tmp_path / "cell"
    shutil.copytree(swept["out"] / "cells" / cell_name(100.0, 0), cell)
    ledger = tmp_path / "ledger.json"
    shutil.copy(swept["ledger"], ledger)
    salt = Path(swept["ledger"]).with_name(f".{Path(swept['ledger']).name}.salt")
    shutil.copy(salt, ledger.with_name(f".{ledger.name}.salt"))  # the salt travels with its ledger
    monkeypatch.setenv("PRIVMED_LEDGER", str(ledger))
    return cell, BudgetLedger(ledger)


def test_rerun_after_the_release_reuses_it(swept: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell that crashed during its evaluation keeps its release: no second privatization, no second booking."""
    cell, ledger = _copy_cell(swept, tmp_path, monkeypatch)
    released = (cell / "data.npz").read_bytes()
    (cell / "result.json").unlink()
    run_cell(swept["config"], 100.0, 0, cell)
    assert (cell / "data.npz").read_bytes() == released
    booked = [(e["release_id"], e["epsilon"], e["status"]) for e in swept["entries"][0]]
    assert [(e["release_id"], e["epsilon"], e["status"]) for e in ledger.entries()] == booked
    assert json.loads((cell / "result.json").read_text())["epsilon"] == 100.0


def test_rerun_after_an_unfinished_release_books_a_new_one(swept: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Privatized data on disk without privacy.json may have been read: it stays booked and the new release is booked too."""
    cell, ledger = _copy_cell(swept, tmp_path, monkeypatch)
    (cell / "result.json").unlink()
    (cell / "privacy.json").unlink()
    run_cell(swept["config"], 100.0, 0, cell)
    entries = ledger.entries()
    assert len(entries) == 3 and len({e["release_id"] for e in entries}) == 3
    assert ledger.spent(entries[0]["dataset_key"], "image")[0] == pytest.approx(300.0)
    assert PrivacyReport.from_json(cell / "privacy.json").epsilon == 100.0


def test_dpwgan_cell_books_once_and_resumes_its_run(tmp_path: Path) -> None:
    """The GAN path of a cell: trained into the cell as a run directory, booked by the method, resumed after a crash."""
    config = SweepConfig.from_dict({
        "method": "dpwgan", "data": "phantom:train", "test": "phantom:test",
        "options": {"max_steps": 2, "patch_size": 32, "patches_per_subject": 4, "batch_size": 8, "generator_channels": 8, "critic_channels": 8},
        "evaluation": {"samples": 8, "unet_steps": 2, "patch_size": 32},
    })
    cell = tmp_path / "cell"
    first = run_cell(config, 5.0, 0, cell)
    report = PrivacyReport.from_json(cell / "privacy.json")
    assert report.epsilon <= 5.0 and report.unit == "patch" and report.steps == 2
    assert first["metric"] == "dice" and 0.0 <= first["utility"] <= 1.0
    assert run_cell(config, 5.0, 0, cell) == first, "a finished cell is not run again"
    (cell / "result.json").unlink()
    again = run_cell(config, 5.0, 0, cell)
    assert again["utility"] == first["utility"], "the resumed run must hold the same generator"
    entries = BudgetLedger().entries()
    assert len(entries) == 1 and entries[0]["status"] == "settled" and entries[0]["epsilon"] == report.epsilon


def test_toml_config_equals_json(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(
        'method = "pixel-ldp"\ndata = "phantom-classes:train"\ntest = "phantom-classes:test"\n'
        "[options]\n[evaluation]\nepochs = 1\nn_resamples = 200\n"
    )
    assert SweepConfig.from_file(path) == SweepConfig.from_dict(CONFIG)


def test_relative_data_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data.npz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = SweepConfig.from_dict({**CONFIG, "data": "data.npz:train"})
    assert config.data == f"{tmp_path.resolve() / 'data.npz'}:train"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "gan"}, "unknown method 'gan'"),
        ({"seeds": 3}, "unknown key seeds"),
        ({"test": None}, "'test' is required"),
        ({"options": {"clip": 1.0}}, "unknown option clip for pixel-ldp"),
        ({"method": "dpwgan", "options": {"epsilon": 2.0}}, "epsilon come from the grid"),
        ({"method": "dpwgan", "options": {"max_step": 2}}, "unknown option max_step"),
        ({"method": "cadp", "options": {"clip": 1.0}, "evaluation": {}}, "cadp needs the option flow"),
        ({"method": "dpglow", "options": {"flow": "no/such/flow"}, "evaluation": {}}, "not a flow directory"),
        ({"evaluation": {"unet_steps": 5}}, "unknown evaluation key unet_steps"),
        ({"evaluation": {"epochs": 0}}, "evaluation.epochs = 0"),
        ({"options": []}, "'options' must be a mapping"),
    ],
)
def test_config_errors(change: dict, message: str) -> None:
    with pytest.raises(PrivmedError, match=message):
        SweepConfig.from_dict({**CONFIG, **change})


def test_bad_grid_and_bad_files_are_refused(tmp_path: Path) -> None:
    config = SweepConfig.from_dict(CONFIG)
    for epsilons in ([0.0], [-1.0], ["nan"], ["one"], []):
        with pytest.raises(PrivmedError):
            run_sweep(config, epsilons, 1, tmp_path / "out")
    with pytest.raises(PrivmedError, match="num_cpus sets up a local Ray instance"):
        run_sweep(config, [1.0], 1, tmp_path / "out", address="auto", num_cpus=2)
    with pytest.raises(PrivmedError, match="not valid JSON"):
        bad = tmp_path / "bad.json"
        bad.write_text("{method: pixel-ldp}")
        SweepConfig.from_file(bad)
    with pytest.raises(PrivmedError, match="cannot read"):
        SweepConfig.from_file(tmp_path / "missing.json")
    assert not (tmp_path / "out").exists()


def test_cli_config_error_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({**CONFIG, "method": "gan"}))
    result = CliRunner().invoke(app, ["sweep", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "unknown method 'gan'" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(PrivmedError, match=r"pip install 'privmed\[sweep\]'"):
        run_sweep(SweepConfig.from_dict(CONFIG), [1.0], 1, tmp_path / "out")
    assert not (tmp_path / "out").exists()
