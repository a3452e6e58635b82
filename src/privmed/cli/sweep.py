"""``privmed sweep``: one method and its utility evaluation over an epsilon x seed grid, on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import console, err_console
from privmed.errors import PrivmedError

if TYPE_CHECKING:
    from privmed.sweep import SweepResult


def _print_result(result: SweepResult) -> None:
    from privmed.sweep import format_epsilon

    metric = result.config.metric
    table = Table(title=f"{result.config.method}: {metric} on {result.config.test}")
    for column in ("epsilon", "seed", "epsilon spent", "unit", "delta", metric, "wall s"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for row in result.rows:
        table.add_row(
            format_epsilon(row.epsilon), str(row.seed), format_epsilon(row.epsilon_spent), row.unit, f"{row.delta:.3g}",
            f"{row.utility:.4f}", f"{row.wall_seconds:.1f}",
        )
    console.print(table)
    summary = Table(title="over seeds")
    for column in ("epsilon", "cells", "mean", "sd", "min", "max"):
        summary.add_column(column, justify="right")
    for item in result.summary():
        summary.add_row(
            format_epsilon(item["epsilon"]), str(item["cells"]),
            *(f"{item[key]:.4f}" for key in ("mean", "sd", "min", "max")),
        )
    console.print(summary)
    if result.skipped:
        console.print(f"{result.skipped} cell(s) were already finished and were not run again")
    console.print(f"wrote {result.csv_path}, {result.markdown_path} and {result.plot_path}; cells in {result.out_dir / 'cells'}")


def sweep(
    config: Path = typer.Argument(..., help="Sweep configuration: a JSON file (or TOML, named *.toml)."),
    epsilons: str = typer.Option("1,2,5,10,inf", "--epsilons", help="Comma-separated epsilons; 'inf' is the non-private reference."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per epsilon: 3 means seeds 0, 1 and 2."),
    out: Path = typer.Option(..., "--out", help="Output folder (cells/, sweep.json, sweep.csv, sweep.md, privacy_utility.png); run again to resume."),
    address: str | None = typer.Option(None, "--address", help="An existing Ray cluster (e.g. 'auto' or 'ray://head:10001'); default: a local instance."),
    num_cpus: int | None = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray instance (default: all); one cell runs per CPU."),
) -> None:
    """Run one method over an epsilon x seed grid on Ray and compare utility against privacy.

    Every cell trains or privatizes at its epsilon into its own run directory (OUT/cells/eps-E_seed-S/), is booked in the budget ledger like any release, and is evaluated on the real test data: a U-Net's Dice for dpwgan, a classifier's ROC AUC otherwise. Finished cells are skipped when the command runs again; a different configuration in the same OUT is refused. On a multi-node cluster, OUT, the ledger and the data must be on a shared filesystem.

    \b
    Example configuration (JSON; TOML takes the same keys):
      {"method": "pixel-ldp",
       "data": "phantom-classes:train",
       "test": "phantom-classes:test",
       "options": {},
       "evaluation": {"epochs": 5}}

    method: dpwgan, acgan, cadp, dpglow or pixel-ldp. data: the private training data; test: real test data for the utility (dataset refs). options: the method's arguments except epsilon and seed, which the grid sets (dpwgan and acgan as in the Python API, e.g. {"max_steps": 200}; cadp {"flow": DIR, "clip": 5}; dpglow {"flow": DIR, "alpha": 0.4}; pixel-ldp none). evaluation: for dpwgan samples, unet_steps, patch_size; for the others model, epochs, batch_size, learning_rate, confidence, n_resamples (acgan also samples).
    """
    from privmed.sweep import CellEvent, SweepConfig, SweepFailed, parse_epsilons, run_sweep

    grid = parse_epsilons(item for item in epsilons.split(",") if item.strip())
    sweep_config = SweepConfig.from_file(config)
    with Progress(
        TextColumn("[bold]sweep[/bold] {task.fields[last]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("sweep", total=len(grid) * seeds, last="starting Ray")

        def on_cell(event: CellEvent) -> None:
            progress.update(task, completed=event.done, last=f"epsilon {event.epsilon:g} seed {event.seed}: {event.status}")

        try:
            result = run_sweep(sweep_config, grid, seeds, out, address=address, num_cpus=num_cpus, progress=on_cell)
        except SweepFailed as failed:
            result = failed.result
            progress.stop()
            _print_result(result)
            for failure in result.failures:
                err_console.print(f"[red]failed:[/red] epsilon {failure.epsilon:g} seed {failure.seed}: {failure.message}", highlight=False)
            raise PrivmedError(f"{len(result.failures)} of {len(grid) * seeds} cells failed; run the same command again to retry them") from None
    _print_result(result)
