"""The user documentation builds with ``mkdocs build --strict`` and documents every CLI command.

The CLI reference is generated at build time by ``docs/hooks.py``; these tests build the site once
and check the built page against the typer app, so a command or option without docs fails here.
The figures of the "choosing epsilon" page are recomputed from the privacy code.
"""

from __future__ import annotations

import html
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mkdocs", reason="mkdocs is in the dev and docs extras")
pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is in the dev and docs extras")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Build the site once, strictly, into a temporary folder."""
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return site, result


def test_site_builds_strictly_without_warnings(build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    site, result = build
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]
    for page in ("index.html", "getting-started/index.html", "methods/cadp/index.html", "choosing-epsilon/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    assert 'id="privmed.privacy.calibration.dpsgd_epsilon"' in (site / "api" / "index.html").read_text(encoding="utf-8")


def _commands(command: Any, context: Any) -> Iterator[tuple[str, Any, Any]]:
    """Every (path, command, context) registered under the typer app, groups included."""
    for name, child in (getattr(command, "commands", None) or {}).items():
        if getattr(child, "hidden", False):
            continue
        child_context = child.context_class(child, info_name=name, parent=context)
        yield child_context.command_path, child, child_context
        yield from _commands(child, child_context)


def _sections(page: str) -> dict[str, str]:
    """Heading text -> the HTML up to the next heading, for the h2-h4 headings of a built page."""
    parts = re.split(r"<h[2-4] id=\"[^\"]*\">", page)
    sections = {}
    for part in parts[1:]:
        title = html.unescape(re.sub(r"<[^>]+>", "", part.split("</h", 1)[0])).strip().rstrip("¶").strip()
        sections[title] = part
    return sections


def test_cli_reference_lists_every_command_and_option(build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    import typer

    from privmed.cli import app

    site, result = build
    assert result.returncode == 0, result.stderr[-3000:]
    sections = _sections((site / "cli" / "index.html").read_text(encoding="utf-8"))
    root = typer.main.get_command(app)
    commands = list(_commands(root, root.context_class(root, info_name="privmed")))
    assert len(commands) >= 20
    missing = [path for path, _, _ in commands if path not in sections]
    assert not missing, f"commands missing from the CLI reference: {missing}"
    for path, command, context in commands:
        for parameter in command.get_params(context):
            if parameter.param_type_name == "option" and parameter.name != "help" and not getattr(parameter, "hidden", False):
                for name in parameter.opts:
                    assert html.escape(name) in sections[path], f"{path}: option {name} is not documented"


def _table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows of the first Markdown table whose header starts with ``header_start``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _percent(cell: str) -> float:
    return float(cell.rstrip("%").replace(",", "")) / 100


def test_roc_bound_table_matches_the_privacy_code() -> None:
    from privmed.privacy.hypothesis import dp_roc_bound

    rows = _table_rows((DOCS / "choosing-epsilon.md").read_text(encoding="utf-8"), "| ε | TPR at FPR 0.1%")
    assert len(rows) >= 4
    for epsilon_cell, *tpr_cells, auc_cell in rows:
        epsilon = float(epsilon_cell)
        for fpr, cell in zip((0.001, 0.01, 0.1), tpr_cells, strict=True):
            stated, exact = _percent(cell), float(dp_roc_bound(fpr, epsilon, 1e-5))
            assert stated == pytest.approx(exact, rel=0.06, abs=1e-4), (epsilon, fpr, cell, exact)
        best = math.exp(epsilon) / (1 + math.exp(epsilon))
        grid = np.linspace(0.0, 1.0, 20001)
        area = float(np.trapezoid(dp_roc_bound(grid, epsilon, 0.0), grid))
        assert float(auc_cell) == pytest.approx(best, abs=0.006) and area == pytest.approx(best, abs=2e-3)


def test_delta_figures_match_the_accountant() -> None:
    from privmed.privacy import dpsgd_epsilon

    text = " ".join((DOCS / "choosing-epsilon.md").read_text(encoding="utf-8").split())
    figures = re.findall(r"ε = ([\d.]+) at δ = (1e-\d+)|([\d.]+) at (1e-\d+)", text)
    pairs = [(float(a or c), float(b or d)) for a, b, c, d in figures]
    assert len(pairs) == 4
    for epsilon, delta in pairs:
        assert epsilon == pytest.approx(dpsgd_epsilon(1.0, 0.01, 10000, delta), abs=0.006)
