"""What every command shares: plain --help, release directories as data, options checked before any progress bar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from privmed.cli import app

runner = CliRunner()


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under the app, groups included."""
    out = [path]
    for name, child in (getattr(group, "commands", None) or {}).items():
        out += _commands(child, (*path, name))
    return out


def test_help_shows_no_python_type_tags() -> None:
    tags = re.compile(r"<(bool|str|int|float|path)>")
    for path in _commands(get_command(app)):
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        assert not tags.search(result.output), f"privmed {' '.join(path)} --help: {tags.findall(result.output)}"


def test_a_release_directory_is_a_dataset_reference(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PRIVMED_LEDGER", str(tmp_path / "ledger.json"))
    out = tmp_path / "release"
    done = runner.invoke(app, ["privatize", "pixel-ldp", "--data", "phantom-classes:test", "--epsilon", "2", "--out", str(out)])
    assert done.exit_code == 0, done.output
    by_dir = runner.invoke(app, ["data", "info", str(out), "--json"])
    by_file = runner.invoke(app, ["data", "info", str(out / "data.npz"), "--json"])
    assert by_dir.exit_code == 0, by_dir.output
    assert json.loads(by_dir.stdout)["splits"] == json.loads(by_file.stdout)["splits"]
    assert sum(split["records"] for split in json.loads(by_dir.stdout)["splits"].values()) == 256


def test_a_train_command_refuses_a_bad_option_before_drawing_its_progress_bar(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "dpwgan", "--data", "phantom:train", "--out", str(out), "--epsilon", "1", "--batch-size", "100000"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "batch size 100000" in lines[0], result.output
    assert not out.exists()
