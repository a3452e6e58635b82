"""``privmed report``: one self-contained HTML page over release directories, for a privacy officer."""

from __future__ import annotations

from pathlib import Path

import typer

from privmed.cli._common import console
from privmed.errors import PrivmedError


def report(
    dirs: list[Path] = typer.Argument(..., help="Run or release directories, each holding a privacy.json (one section each)."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
    ledger: Path | None = typer.Option(None, "--ledger", help="Budget ledger to read (default: $PRIVMED_LEDGER or ~/.privmed/ledger.json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    omit_private: bool = typer.Option(
        False, "--omit-private", help="Leave out real examples and training curves (computed on the private data without DP)."
    ),
) -> None:
    """Write one HTML page stating, for each release, what was released and the guarantee it carries.

    Each section gives the guarantee in plain words (mechanism, unit, epsilon, delta, what they mean for one patient), the dataset's total in the budget ledger, the warnings that apply, sample grids beside real examples, training curves, and every evaluation found in the directory or one level below with its reference lines. The page needs no network: styles and pictures are embedded.
    """
    from privmed.report.html import write_report

    if ledger is not None and not ledger.is_file():
        raise PrivmedError(f"{ledger}: no such budget ledger")
    if out.exists() and not overwrite:
        raise PrivmedError(f"{out} already exists: pass --overwrite to replace it")
    with console.status(f"reading {len(dirs)} release director{'y' if len(dirs) == 1 else 'ies'}"):
        target = write_report(dirs, out, ledger, overwrite=overwrite, include_private=not omit_private)
    size = target.stat().st_size / 1e6
    console.print(f"wrote {target} ({len(dirs)} release{'s' if len(dirs) != 1 else ''}, {size:.1f} MB): open it in any browser")
