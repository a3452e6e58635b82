"""The ``privmed`` command: a thin layer over the API, one module per command group."""

from __future__ import annotations

import logging

import typer

from privmed import __version__
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

# Command registrations: each command group or command lives in its own module under privmed/cli/.
