"""What every command shares: consoles, and turning a user's mistake into one red line."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from privmed.errors import PrivmedError

console = Console()
err_console = Console(stderr=True)


class PrivmedGroup(TyperGroup):
    """A command group that reports a :class:`PrivmedError` as one red line and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PrivmedError as exc:
            err_console.print("[bold red]error:[/bold red]", escape(str(exc)), highlight=False, emoji=False, soft_wrap=True)
            raise typer.Exit(code=1) from None


def print_json(payload: Any) -> None:
    """Print machine-readable output on stdout, nothing else on that line."""
    typer.echo(json.dumps(payload, indent=2, default=str))
