"""``privmed budget`` (epsilon from noise, or noise from epsilon) and ``privmed ledger`` (spent budgets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from privmed.cli._common import PrivmedGroup, console, print_json
from privmed.errors import PrivacyError
from privmed.privacy.calibration import (
    check_delta,
    check_epsilon,
    default_delta,
    delta_is_large,
    dpsgd_epsilon,
    dpsgd_noise_multiplier,
    large_delta_warning,
    steps_for_epochs,
)
from privmed.privacy.ledger import BudgetLedger, dataset_name
from privmed.privacy.report import DPSGD_MECHANISM, LAPLACE_MECHANISM, PrivacyReport
from privmed.privacy.units import PrivacyUnit

ledger_app = typer.Typer(cls=PrivmedGroup, no_args_is_help=True, help="Show the budget ledger, or set a dataset's total budget.")


def budget(
    noise_multiplier: float | None = typer.Option(None, "--noise-multiplier", help="DP-SGD noise multiplier sigma: print the epsilon it gives."),
    target_epsilon: float | None = typer.Option(None, "--target-epsilon", help="Epsilon to reach: print the smallest noise multiplier that stays within it."),
    sample_rate: float | None = typer.Option(None, "--sample-rate", help="Probability q that a unit is in a batch (expected batch units / N)."),
    steps: int | None = typer.Option(None, "--steps", help="Number of DP-SGD steps."),
    epochs: float | None = typer.Option(None, "--epochs", help="Training length in epochs instead of --steps (steps = round(1/q) per epoch, as training takes)."),
    delta: float | None = typer.Option(None, "--delta", help="Target delta; must be below 1/N. Default with --n-units: min(1e-5, 1/(10N)); above 1/(10N) is flagged."),
    n_units: int | None = typer.Option(None, "--n-units", help="How many privacy units the private data holds (checks delta < 1/N)."),
    unit: str = typer.Option("record", "--unit", help="What epsilon protects: patch, slice, record, image or patient."),
    accountant: str = typer.Option("rdp", "--accountant", help="DP-SGD accountant: rdp (Rényi DP) or prv (tighter, slower)."),
    laplace_sensitivity: float | None = typer.Option(None, "--laplace-sensitivity", help="L1 sensitivity of a Laplace release: with --epsilon, print its noise scale."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="Epsilon of a Laplace release (with --laplace-sensitivity)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table."),
) -> None:
    """Compute a privacy budget before training: the epsilon that a DP-SGD noise gives, or the noise an epsilon needs.

    Give --noise-multiplier to get epsilon, or --target-epsilon to get the noise multiplier; both need --sample-rate, --steps (or --epochs) and --delta (or --n-units).

    For a Laplace release give --laplace-sensitivity and --epsilon to get the noise scale.
    """
    PrivacyUnit.parse(unit)
    if laplace_sensitivity is not None or epsilon is not None:
        result = _laplace_budget(laplace_sensitivity, epsilon, noise_multiplier, target_epsilon, unit)
    else:
        result = _dpsgd_budget(noise_multiplier, target_epsilon, sample_rate, steps, epochs, delta, n_units, unit, accountant)
    if as_json:
        print_json(result)
        return
    table = Table(title="privmed budget", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, value in result.items():
        if value is not None and name not in ("summary", "warning"):
            table.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(result["summary"], highlight=False)
    if result.get("warning"):
        console.print(f"[yellow]caution:[/yellow] {result['warning']}", highlight=False)


def _dpsgd_budget(
    noise_multiplier: float | None,
    target_epsilon: float | None,
    sample_rate: float | None,
    steps: int | None,
    epochs: float | None,
    delta: float | None,
    n_units: int | None,
    unit: str,
    accountant: str,
) -> dict[str, Any]:
    if (noise_multiplier is None) == (target_epsilon is None):
        raise PrivacyError("give exactly one of --noise-multiplier (to get epsilon) and --target-epsilon (to get the noise)")
    if sample_rate is None:
        raise PrivacyError("--sample-rate is required for DP-SGD accounting")
    if (steps is None) == (epochs is None):
        raise PrivacyError("give exactly one of --steps and --epochs")
    if delta is None and n_units is None:
        raise PrivacyError("give --delta, or --n-units to use the default delta min(1e-5, 1/(10N))")
    delta = check_delta(delta if delta is not None else default_delta(n_units), n_units, unit)
    if epochs is not None:
        steps = steps_for_epochs(epochs, sample_rate)
    if target_epsilon is not None:
        noise_multiplier = dpsgd_noise_multiplier(target_epsilon, sample_rate, steps, delta, accountant)
    epsilon = dpsgd_epsilon(noise_multiplier, sample_rate, steps, delta, accountant)
    report = PrivacyReport(
        mechanism=DPSGD_MECHANISM,
        accountant=accountant.strip().lower(),
        unit=unit,
        n_units=n_units or 0,
        epsilon=epsilon,
        delta=delta,
        sample_rate=sample_rate,
        noise_multiplier=noise_multiplier,
        steps=steps,
    )
    return {
        "mechanism": DPSGD_MECHANISM,
        "accountant": report.accountant,
        "unit": unit,
        "n_units": n_units,
        "noise_multiplier": noise_multiplier,
        "sample_rate": sample_rate,
        "steps": steps,
        "epochs": epochs,
        "delta": delta,
        "target_epsilon": target_epsilon,
        "epsilon": epsilon,
        "warning": large_delta_warning(delta, n_units, unit) if delta_is_large(delta, n_units) else None,
        "summary": report.summary_line(),
    }


def _laplace_budget(
    sensitivity: float | None, epsilon: float | None, noise_multiplier: float | None, target_epsilon: float | None, unit: str
) -> dict[str, Any]:
    if sensitivity is None or epsilon is None:
        raise PrivacyError("a Laplace budget needs both --laplace-sensitivity and --epsilon")
    if noise_multiplier is not None or target_epsilon is not None:
        raise PrivacyError("--laplace-sensitivity/--epsilon (Laplace) cannot be combined with DP-SGD options")
    from privmed.privacy.mechanisms import laplace_scale  # loads torch: only when asked

    epsilon = check_epsilon(epsilon)
    scale = laplace_scale(sensitivity, epsilon)
    report = PrivacyReport(
        mechanism=LAPLACE_MECHANISM, accountant="laplace", unit=unit, n_units=0, epsilon=epsilon, delta=0.0,
        laplace_scale=scale, sensitivity=sensitivity,
    )
    return {
        "mechanism": LAPLACE_MECHANISM,
        "accountant": "laplace",
        "unit": unit,
        "sensitivity": sensitivity,
        "epsilon": epsilon,
        "delta": 0.0,
        "laplace_scale": scale,
        "summary": report.summary_line(),
    }


_LEDGER_OPTION = typer.Option(None, "--ledger", help="Ledger file (default: $PRIVMED_LEDGER or ~/.privmed/ledger.json).")


@ledger_app.command("show")
def show(
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset: its name, or its ledger key (name@tag)."),
    ledger_path: Path | None = _LEDGER_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
) -> None:
    """Show every release booked in the ledger, and per dataset and privacy unit the epsilon spent and left."""
    ledger = BudgetLedger(ledger_path)
    totals = ledger.totals()
    releases = [r for r in ledger.entries() if dataset is None or dataset in (r["dataset_key"], dataset_name(r["dataset_key"]))]
    keys = sorted({r["dataset_key"] for r in releases} | ({dataset} if dataset and not releases else set() if dataset else set(totals)))
    budgets = {key: _dataset_budget(ledger, key, totals.get(key)) for key in keys}
    if as_json:
        print_json({"ledger": str(ledger.path), "datasets": budgets, "releases": releases})
        return
    summary = Table(title=f"privmed ledger: {ledger.path}")
    for column in ("dataset", "unit", "total epsilon", "spent epsilon", "left", "spent delta"):
        summary.add_column(column, justify="left" if column in ("dataset", "unit") else "right")
    for key, entry in budgets.items():
        for unit_name, spent in entry["spent"].items():
            left = entry["remaining"][unit_name]
            total = entry["total"]["epsilon"] if entry["total"] else None
            delta = _number(spent["delta"]) + (" (!)" if entry["large_delta"] else "")
            summary.add_row(key, unit_name, _number(total), _number(spent["epsilon"]), _number(left), delta)
    console.print(summary)
    for key, entry in budgets.items():
        if entry["large_delta"]:
            console.print(
                f"[yellow](!)[/yellow] {key}: {len(entry['large_delta'])} release(s) used a delta above 1/(10N) for their N units "
                f"({', '.join(entry['large_delta'])}): some unit may be revealed in the clear with probability up to N * delta",
                highlight=False,
            )
        for unit_name, ids in entry["uncounted"].items():
            if ids:
                console.print(f"[yellow]note:[/yellow] {key} per {unit_name}: not counted (group size unknown): {', '.join(ids)}", highlight=False)
    if not releases:
        console.print("no releases booked")
        return
    table = Table(title="releases")
    for column in ("release", "dataset", "unit", "reserved", "spent", "delta", "status", "description"):
        table.add_column(column, justify="right" if column in ("reserved", "spent", "delta") else "left")
    for release in releases:
        table.add_row(
            release["release_id"], release["dataset_key"], release["unit"], _number(release["epsilon_reserved"]),
            _number(release["epsilon"]), _number(release["delta"]), release["status"], release["description"],
        )
    console.print(table)


@ledger_app.command("set-total")
def set_total(
    dataset: str = typer.Argument(..., help="The dataset's name (applies to every dataset of that name), or one ledger key (name@tag) as `privmed ledger show` lists it."),
    epsilon: float = typer.Option(..., "--epsilon", help="Total epsilon all releases from this dataset may spend, per privacy unit."),
    delta: float | None = typer.Option(None, "--delta", help="Total delta (optional)."),
    ledger_path: Path | None = _LEDGER_OPTION,
) -> None:
    """Set the total privacy budget of a dataset; later releases that would pass it are refused."""
    ledger = BudgetLedger(ledger_path)
    ledger.set_total(dataset, epsilon, delta)
    delta_text = "" if delta is None else f", delta={delta:g}"
    console.print(f"total budget of {dataset}: epsilon={epsilon:g}{delta_text} per privacy unit ({ledger.path})", highlight=False)


def _dataset_budget(ledger: BudgetLedger, key: str, total: dict[str, Any] | None) -> dict[str, Any]:
    spent = {u.value: dict(zip(("epsilon", "delta"), ledger.spent(key, u))) for u in PrivacyUnit}
    remaining = {u.value: ledger.remaining(key, u) for u in PrivacyUnit}
    large = [r["release_id"] for r in ledger.large_delta_releases(key)]
    uncounted = {u.value: [r["release_id"] for r in ledger.uncounted(key, u)] for u in PrivacyUnit}
    return {"total": total if total is not None else ledger.total(key), "spent": spent, "remaining": remaining,
            "large_delta": large, "uncounted": uncounted}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
