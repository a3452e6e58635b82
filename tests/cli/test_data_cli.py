"""``privmed data info``: table and JSON output, and one red line for a bad reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app

runner = CliRunner()


def test_info_json_for_the_class_phantom() -> None:
    result = runner.invoke(app, ["data", "info", "phantom-classes", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ref"] == "phantom-classes"
    assert {k: v["records"] for k, v in payload["splits"].items()} == {"train": 512, "test": 256}
    assert payload["splits"]["test"]["classes"] == {"normal": 128, "abnormal": 128}


def test_info_table_for_one_split() -> None:
    result = runner.invoke(app, ["data", "info", "phantom:test"])
    assert result.exit_code == 0, result.output
    assert "test" in result.stdout and "train" not in result.stdout


@pytest.mark.parametrize("ref", ["does/not/exist", "phantom:validation"])
def test_bad_ref_is_one_line_and_exit_1(ref: str) -> None:
    result = runner.invoke(app, ["data", "info", ref])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and ref.split(":")[-1] in lines[0]


@pytest.mark.shared_data
def test_info_on_shared_pneumoniamnist(shared_data: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(shared_data / "pneumoniamnist.npz"), "--json"])
    assert result.exit_code == 0, result.output
    records = {k: v["records"] for k, v in json.loads(result.stdout)["splits"].items()}
    assert records == {"train": 4708, "val": 524, "test": 624}
