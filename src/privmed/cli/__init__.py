"""The ``privmed`` command: a thin layer over the API, one module per command group."""

from __future__ import annotations

import logging

import typer

from privmed import __version__
from privmed.cli import (
    acgan,
    attacks,
    budget,
    data,
    demo,
    dpmerf,
    dpwgan,
    evaluate_classifier,
    evaluate_flows,
    evaluate_segmentation,
    flows,
    generate,
    report,
    sweep,
    vessel_sim,
)
from privmed.cli._common import PrivmedGroup

app = typer.Typer(
    cls=PrivmedGroup,
    name="privmed",
    help="Release medical images (synthetic or privatized) under a differential-privacy guarantee you can defend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"privmed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


train_app = typer.Typer(cls=PrivmedGroup, no_args_is_help=True, help="Train a generative model or an invertible flow on private data.")
evaluate_app = typer.Typer(cls=PrivmedGroup, no_args_is_help=True, help="Judge a release: utility on real data, fidelity, diversity, leakage.")
privatize_app = typer.Typer(cls=PrivmedGroup, no_args_is_help=True, help="Release a privatized copy of a dataset (local DP per image).")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(privatize_app, name="privatize")

# Each command group or command lives in its own module under privmed/cli/; this is where they are mounted.
app.add_typer(data.app, name="data")
app.command("budget")(budget.budget)
app.add_typer(budget.ledger_app, name="ledger")
app.command("demo")(demo.demo)
app.command("generate")(generate.generate)
app.command("morph")(acgan.morph)
app.command("audit")(attacks.audit)
app.command("report")(report.report)
app.command("sweep")(sweep.sweep)

train_app.command("dpwgan")(dpwgan.train)
train_app.command("acgan")(acgan.train)
train_app.command("dpmerf")(dpmerf.train)
train_app.command("flow")(flows.train)
train_app.command("vessel-sim")(vessel_sim.train)

privatize_app.command("cadp")(flows.cadp)
privatize_app.command("dpglow")(flows.dpglow)
privatize_app.command("pixel-ldp")(flows.pixel_ldp)

evaluate_app.command("segmentation")(evaluate_segmentation.segmentation)
evaluate_app.command("fidelity")(evaluate_segmentation.fidelity)
evaluate_app.command("table")(evaluate_segmentation.table)
evaluate_app.command("classifier")(evaluate_classifier.classifier)
evaluate_app.command("detection")(evaluate_classifier.detection)
evaluate_app.command("obfuscation")(evaluate_flows.obfuscation)
evaluate_app.command("diversity")(attacks.diversity)
evaluate_app.command("attack")(attacks.attack)
