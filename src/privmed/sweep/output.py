"""A sweep's results: its rows, sweep.csv, sweep.md and the privacy-utility plot."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privmed.fileio import write_atomic, write_text_atomic
from privmed.sweep.config import _METRIC_LABELS, SweepConfig, _epsilon_json


@dataclass(frozen=True)
class SweepRow:
    """One finished cell: target and spent epsilon (from its privacy.json), utility and wall time."""

    epsilon: float
    seed: int
    epsilon_spent: float
    unit: str
    delta: float
    metric: str
    utility: float
    wall_seconds: float
    cell_dir: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "epsilon": _epsilon_json(self.epsilon), "seed": self.seed, "epsilon_spent": _epsilon_json(self.epsilon_spent),
            "unit": self.unit, "delta": self.delta, "metric": self.metric, "utility": self.utility,
            "wall_seconds": self.wall_seconds, "cell": str(self.cell_dir),
        }


@dataclass(frozen=True)
class CellFailure:
    """A cell whose task raised; it has no result.json and runs again on the next sweep."""

    epsilon: float
    seed: int
    message: str



@dataclass
class SweepResult:
    """The rows of every finished cell, the files written, and the cells that failed."""

    config: SweepConfig
    out_dir: Path
    rows: list[SweepRow]
    skipped: int
    failures: list[CellFailure]
    csv_path: Path
    markdown_path: Path
    plot_path: Path

    def summary(self) -> list[dict[str, Any]]:
        """Per target epsilon: cells, largest epsilon spent, utility mean, sd (n - 1), min and max over seeds."""
        out = []
        for epsilon in sorted({row.epsilon for row in self.rows}):
            rows = [row for row in self.rows if row.epsilon == epsilon]
            values = [row.utility for row in rows]
            out.append({
                "epsilon": epsilon,
                "epsilon_spent": max(row.epsilon_spent for row in rows),
                "unit": rows[0].unit,
                "cells": len(rows),
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
            })
        return out


def _write_csv(result: SweepResult) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["epsilon", "seed", "epsilon_spent", "unit", "delta", "metric", "utility", "wall_seconds", "cell"])
    writer.writeheader()
    writer.writerows(row.to_dict() for row in result.rows)
    write_text_atomic(result.csv_path, buffer.getvalue())


def format_epsilon(epsilon: float) -> str:
    """``inf`` for the non-private reference, else 4 significant digits."""
    return "inf" if math.isinf(epsilon) else f"{epsilon:.4g}"


def _write_markdown(result: SweepResult) -> None:
    config = result.config
    lines = [
        f"# Sweep: {config.method}",
        "",
        (
            f"Trained on `{config.data}`; utility ({config.metric}) measured on `{config.test}`. "
            "Epsilon spent is read from each cell's privacy.json; epsilon = inf is the non-private reference."
        ),
        "",
        "| epsilon | seed | epsilon spent | unit | delta | " + config.metric + " | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {format_epsilon(r.epsilon)} | {r.seed} | {format_epsilon(r.epsilon_spent)} | {r.unit} | {r.delta:.3g} | {r.utility:.4f} | {r.wall_seconds:.1f} |"
        for r in result.rows
    ]
    lines += ["", "Over seeds:", "", f"| epsilon | cells | {config.metric} mean | sd | min | max |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {format_epsilon(s['epsilon'])} | {s['cells']} | {s['mean']:.4f} | {s['sd']:.4f} | {s['min']:.4f} | {s['max']:.4f} |"
        for s in result.summary()
    ]
    if result.failures:
        lines += ["", "Failed cells (no row; they run again on the next sweep):", ""]
        lines += [f"- epsilon {format_epsilon(f.epsilon)}, seed {f.seed}: {f.message}" for f in result.failures]
    write_text_atomic(result.markdown_path, "\n".join(lines) + "\n")


def plot_privacy_utility(result: SweepResult) -> Path:
    """Utility against epsilon spent (log x): mean over seeds with a min-max band; inf drawn at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    finite = [s for s in summary if math.isfinite(s["epsilon"])]
    reference = [s for s in summary if math.isinf(s["epsilon"])]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    ticks: list[tuple[float, str]] = []
    if finite:
        x = [s["epsilon_spent"] for s in finite]
        axes.plot(x, [s["mean"] for s in finite], marker="o", label="mean over seeds")
        axes.fill_between(x, [s["min"] for s in finite], [s["max"] for s in finite], alpha=0.25, label="min-max over seeds")
        seeds = [r for r in result.rows if math.isfinite(r.epsilon)]
        axes.scatter([r.epsilon_spent for r in seeds], [r.utility for r in seeds], s=10, color="grey", zorder=3)
        ticks += [(value, f"{value:.3g}") for value in x]
    if reference:
        s = reference[0]
        x_inf = max((f["epsilon_spent"] for f in finite), default=1.0) * (4.0 if finite else 1.0)
        axes.errorbar([x_inf], [s["mean"]], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], fmt="s", color="black", capsize=4, label="non-private (epsilon = inf)")
        ticks.append((x_inf, "inf\n(non-private)"))
    axes.set_xscale("log")
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if ticks:
        axes.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
    unit = summary[0]["unit"] if summary else "unit"
    ylabel = _METRIC_LABELS.get(result.config.metric, result.config.metric)
    axes.set(xlabel=f"epsilon spent (per {unit})", ylabel=ylabel, title=f"{result.config.method}: utility vs privacy")
    if summary:
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    try:
        write_atomic(result.plot_path, lambda tmp: figure.savefig(tmp, format="png"))
    finally:
        plt.close(figure)
    return result.plot_path
