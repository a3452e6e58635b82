"""Tiny real releases shared by the report tests: a DP-WGAN run with a generated set, and a CADP release."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app

runner = CliRunner()
DPWGAN_SMALL = ["--patch-size", "32", "--patches-per-subject", "8", "--batch-size", "8", "--base-channels", "8"]
FLOW_SMALL = ["--coupling", "gin", "--levels", "1", "--depth", "2", "--hidden", "8", "--epochs", "1", "--batch-size", "64"]


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``R`` (DP-WGAN run, epsilon 8 per patch), ``S`` (16 pairs generated from it), ``C`` (CADP, epsilon 5 per image), ``ledger``.

    Made through the CLI with the issue's commands at toy sizes; every release is booked in one ledger.
    """
    root = tmp_path_factory.mktemp("releases")
    ledger = root / "ledger.json"
    commands = [
        ["train", "dpwgan", "--data", "phantom", "--out", str(root / "R"), "--epsilon", "8", "--max-steps", "10", *DPWGAN_SMALL],
        ["generate", str(root / "R"), "--n", "16", "--out", str(root / "S"), "--seed", "0"],
        ["train", "flow", "--data", "phantom-classes:train", "--out", str(root / "F"), "--conditional", *FLOW_SMALL],
        ["privatize", "cadp", str(root / "F"), "--data", "phantom-classes:test", "--epsilon", "5", "--clip", "10", "--out", str(root / "C"), "--public-labels"],
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(ledger))
        for command in commands:
            result = runner.invoke(app, command)
            assert result.exit_code == 0, result.output
    return {"R": root / "R", "S": root / "S", "C": root / "C", "ledger": ledger}
