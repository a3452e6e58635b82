"""What every command shares: consoles, and turning a user's mistake into one red line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperArgument, TyperGroup, TyperOption

from privmed.errors import PrivmedError
from privmed.privacy.units import plural

if TYPE_CHECKING:
    from privmed.methods.generative import DPGenerativeMethod
    from privmed.methods.trainer import TrainingProgress
    from privmed.privacy.report import PrivacyReport

console = Console()
err_console = Console(stderr=True)

DISTRIBUTED_HELP = (
    "Train data-parallel over the processes torchrun starts: torchrun --standalone --nproc_per_node 2 $(which privmed) "
    "train ... --distributed (gloo on CPU). Every process draws the same global Poisson batch and clips its own whole "
    "units; the clipped sums are all-reduced and noised once, so epsilon is that of one process with the same batch and "
    "noise, accounted once. Process 0 alone writes the run directory and books the ledger; all read it on --resume."
)
REPRODUCIBLE_HELP = (
    "A reproducible research run: derive the DP noise{batches} from --seed instead of a secret cryptographically "
    "secure source. The report then says the release has NO guarantee against anyone who knows the seed. Never for a real release."
)


_METAVARS = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}


def _plain_label(param: TyperOption | TyperArgument) -> str:
    """Click's name for a parameter's value: TEXT, INTEGER, FLOAT, PATH, or the choices as a|b."""
    described = param.type_descriptor
    if described.is_choice and described.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in described.choices)
    if described.is_path:
        return "PATH"
    return _METAVARS.get(described.annotation, param.bare_type().upper())


def _plain_metavars(params: list[Any]) -> None:
    """Name parameter values as click does (TEXT, INTEGER, PATH, a|b), and flags not at all.

    Typer's help would tag every parameter with its Python type (``<str>``, ``<bool>``), which reads as noise.
    """
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_flag else _plain_label(param)
        elif isinstance(param, TyperArgument):
            label = _plain_label(param)
            param.display_type_rich = lambda ctx, label=label: label  # the name column keeps the argument's own name


class PrivmedGroup(TyperGroup):
    """A command group that reports a :class:`PrivmedError` as one red line and exit code 1, with plain option help."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_metavars(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, TyperGroup):
            _plain_metavars([*command.params, command.get_help_option(ctx)])
        return command

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PrivmedError as exc:
            err_console.print("[bold red]error:[/bold red]", escape(str(exc)), highlight=False, emoji=False, soft_wrap=True)
            raise typer.Exit(code=1) from None


def print_json(payload: Any) -> None:
    """Print machine-readable output on stdout, nothing else on that line."""
    typer.echo(json.dumps(payload, indent=2, default=str))


@contextmanager
def training_progress(label: str, losses: dict[str, str], *, enabled: bool = True) -> Iterator[Callable[["TrainingProgress"], None]]:
    """A rich progress bar over private steps showing ``losses`` (metric key -> column name) and epsilon.

    Yields the ``on_progress`` callback to hand to a method trained by ``privmed.methods.trainer``; with
    ``enabled=False`` (a data-parallel process other than rank 0) it draws nothing.
    """
    if not enabled:
        yield lambda event: None
        return
    loss_columns = " | ".join(f"{name} {{task.fields[{key}]}}" for key, name in losses.items())
    progress = Progress(
        TextColumn(f"[bold]{label}[/bold] epoch {{task.fields[epoch]}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{loss_columns} | epsilon {{task.fields[epsilon]}}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task(label, total=None, epoch="-", epsilon="-", **{key: "-" for key in losses})

    def on_progress(event: "TrainingProgress") -> None:
        # The bar appears with the first private step: a bad option is refused (one red line) before any bar is drawn.
        if not progress.live.is_started:
            progress.start()
        fields: dict[str, Any] = {"epoch": f"{event.epoch}/{event.total_epochs}", "epsilon": f"{event.epsilon:.3g}"}
        fields.update({key: f"{event.metrics[key]:+.4f}" for key in losses if key in event.metrics})
        progress.update(task, completed=event.step, total=event.total_steps, **fields)

    try:
        yield on_progress
    finally:
        if progress.live.is_started:
            progress.stop()


def print_privacy_report(report: "PrivacyReport", run_dir: Path | None = None, steps_name: str = "steps") -> None:
    """A trained run's guarantee as a table, then its notes (how it differs from the paper, warnings)."""
    table = Table(title="privacy guarantee", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("guarantee", report.summary_line())
    table.add_row("epsilon", f"{report.epsilon:.4g} per {report.unit}")
    table.add_row("delta", f"{report.delta:.3g}")
    table.add_row("private units", f"{report.n_units} {plural(report.unit, report.n_units)}")
    if report.noise_multiplier is not None and report.sample_rate is None:
        table.add_row("Gaussian", f"noise std {report.noise_multiplier * report.sensitivity:.4g} for L2 sensitivity {report.sensitivity:.4g}, one release")
    elif report.noise_multiplier is not None:
        table.add_row("DP-SGD", f"noise multiplier {report.noise_multiplier:.4g}, sample rate {report.sample_rate:.4g}, "
                      f"clipping bound {report.max_grad_norm:g}, {report.steps} {steps_name}")
    if report.group_privacy:
        table.add_row("per patient", report.group_privacy["statement"])
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]-[/yellow] {note}", highlight=False)
    if run_dir is not None:
        console.print(f"run directory: {run_dir} (privacy.json, metrics.csv, checkpoints/latest.pt, samples/)")


def training_data_ref(out: Path, data: str | None, *, resume: bool, epsilon: float | None) -> str:
    """The data ref a training command trains on: ``--data``, or on ``--resume`` the one the run recorded.

    A new run needs both ``--data`` and ``--epsilon``; a resumed one takes its options from the run.
    """
    if resume:
        from privmed.runs import RunDirectory

        data = data or RunDirectory(out).read_config().get("data", {}).get("ref")
        if data is None:
            raise PrivmedError(f"{out}: the run does not record its data: pass --data again")
        return data
    if epsilon is None:
        raise PrivmedError("--epsilon is required (use 'inf' for a non-private reference)")
    if data is None:
        raise PrivmedError("--data is required to start a run")
    return data


def model_for_run(
    method: type[DPGenerativeMethod], out: Path, *, resume: bool, reproducible: bool, create: Callable[[], DPGenerativeMethod]
) -> DPGenerativeMethod:
    """The model a train command fits: with ``resume``, the run's stored options (its noise source included), else ``create()``."""
    if not resume:
        return create()
    model = method.from_run(out)
    if reproducible and not model.reproducible:
        raise PrivmedError(f"{out} was started without --reproducible, and a resumed run keeps its options")
    return model


def fit_with_progress(
    model: DPGenerativeMethod, data_ref: str, *, label: str, losses: dict[str, str], distributed: bool = False,
    **fit_options: Any,
) -> PrivacyReport | None:
    """Load ``data_ref`` and fit ``model`` behind a progress bar (``losses`` as in :func:`training_progress`).

    With ``distributed``, this process is one rank of a torchrun job; the bar and the returned report
    belong to rank 0, and the other ranks get None. ``fit_options`` go to ``fit`` (e.g. public data).
    """
    from privmed.data import load
    from privmed.privacy.distributed import process_group

    dataset = load(data_ref)
    with process_group(enabled=distributed) as group:
        with training_progress(label, losses, enabled=group.is_main) as on_progress:
            model.on_progress = on_progress
            model.fit(dataset, **fit_options)
        return model.privacy_report() if group.is_main else None


def print_training_done(report: PrivacyReport, out: Path, steps_name: str) -> None:
    """The line that ends a train command, then the run's privacy report."""
    if report.noise_multiplier is None:
        console.print(f"training done: {report.steps} {steps_name} without differential privacy (a reference, no guarantee)")
    else:
        console.print(f"training done: {report.steps} {steps_name}; the privacy budget of this run is spent")
    print_privacy_report(report, out, steps_name=steps_name)
