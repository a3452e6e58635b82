"""Imports point one way: the import-linter contract in pyproject.toml holds, and it bites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the dev extras")

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``root/src`` with ``root/pyproject.toml``'s contracts."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([command, "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package and its pyproject.toml in a temporary folder, to break without touching the real tree."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "src" / "privmed", root / "src" / "privmed", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_package_keeps_its_layers(copy: Path) -> None:
    result = _lint_imports(copy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize(("low", "high"), [("data", "privmed.privacy.units"), ("methods", "privmed.report.html"), ("report", "privmed.cli")])
def test_a_wrong_way_import_breaks_the_contract(copy: Path, low: str, high: str) -> None:
    wrong = copy / "src" / "privmed" / low / "_wrong_way.py"
    wrong.write_text(f'"""A deliberate wrong-way import."""\n\nimport {high}  # noqa: F401\n', encoding="utf-8")
    try:
        result = _lint_imports(copy)
    finally:
        wrong.unlink()
    assert result.returncode != 0
    assert f"privmed.{low}._wrong_way -> {high}" in result.stdout
