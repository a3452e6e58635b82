"""The sweep's driver: every (epsilon, seed) cell as a Ray task, then the table and plot of the finished ones.

On a multi-node Ray cluster, OUT, the budget ledger and the data must live on a filesystem that every
node sees under the same path.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from privmed.errors import PrivmedError
from privmed.fileio import write_json_atomic
from privmed.sweep.cells import run_cell
from privmed.sweep.config import SWEEP_FORMAT, SweepConfig, _epsilon_json, cell_name, parse_epsilons, parse_seeds
from privmed.sweep.output import CellFailure, SweepResult, SweepRow, _write_csv, _write_markdown, plot_privacy_utility

logger = logging.getLogger(__name__)

RAY_MISSING = "privmed sweep runs on Ray, which is not installed: pip install 'privmed[sweep]'"


@dataclass(frozen=True)
class CellEvent:
    """Progress of a sweep: ``done`` of ``total`` cells; ``status`` is "skipped", "done" or "failed"."""

    done: int
    total: int
    epsilon: float
    seed: int
    status: str


class SweepFailed(PrivmedError):
    """Some cells failed; the others' table and plot are written, and ``result`` holds them."""

    def __init__(self, result: SweepResult) -> None:
        details = "; ".join(f"epsilon={f.epsilon:g} seed={f.seed}: {f.message}" for f in result.failures)
        super().__init__(f"{len(result.failures)} sweep cell(s) failed ({details}); run the sweep again to retry them")
        self.result = result


def _check_resume(out: Path, config: SweepConfig) -> None:
    """Refuse an OUT whose sweep.json records another configuration (its cells would not be comparable)."""
    path = out / "sweep.json"
    if not path.exists():
        return
    previous = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    current = json.loads(json.dumps(config.to_dict()))
    if previous != current:
        changed = sorted(key for key in set(current) | set(previous) if previous.get(key) != current.get(key))
        raise PrivmedError(
            f"{out} holds a sweep with another configuration (changed: {', '.join(changed)}); "
            "resume it with the same configuration, or choose another output folder"
        )


def _write_sweep_json(out: Path, config: SweepConfig, epsilons: list[float], seeds: list[int]) -> None:
    write_json_atomic(out / "sweep.json", {
        "format": SWEEP_FORMAT,
        "config": config.to_dict(),
        "epsilons": [_epsilon_json(e) for e in epsilons],
        "seeds": seeds,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    })


def _warn_if_flow_saw_the_data(config: SweepConfig) -> None:
    """Log a warning when the flow of a CADP / DP-GLOW sweep was trained on the very data it privatizes."""
    if "flow" not in config.options:
        return
    from privmed.data import load
    from privmed.methods.flow_training import load_trained_flow
    from privmed.privacy.ledger import dataset_key

    if load_trained_flow(config.options["flow"]).data_key == dataset_key(load(config.data)):
        logger.warning(
            "the flow %s was trained on the data this sweep privatizes (%s): flow training is not private, so these "
            "images are not protected by the releases' epsilon; train the flow on public data", config.options["flow"], config.data,
        )


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PrivmedError(RAY_MISSING) from None
    return ray


def _start_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a local instance; return whether this call started it (and must stop it)."""
    if ray.is_initialized():
        logger.info("using the Ray instance this process already runs")
        return False
    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise PrivmedError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return True


def _cell_task(config: SweepConfig, epsilon: float, seed: int, cell_dir: str, ledger_path: str) -> dict[str, Any]:
    """A Ray task: one cell, booked in the driver's budget ledger."""
    from privmed.privacy.ledger import LEDGER_ENV

    os.environ[LEDGER_ENV] = ledger_path
    return run_cell(config, epsilon, seed, cell_dir)


def _failure_message(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    error = cause if isinstance(cause, BaseException) else exc
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}" if not isinstance(error, PrivmedError) else str(error)


def run_sweep(
    config: SweepConfig,
    epsilons: Sequence[float | str],
    seeds: int | Sequence[int],
    out_dir: str | os.PathLike[str],
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[CellEvent], None] | None = None,
) -> SweepResult:
    """Run every (epsilon, seed) cell as a Ray task and write sweep.csv, sweep.md and privacy_utility.png.

    ``address`` connects to an existing Ray cluster, else a local instance with ``num_cpus`` CPUs is
    started (and shut down at the end; an instance this process already runs is used and left alone).
    Cells whose result.json exists are skipped. Failed cells are listed in :class:`SweepFailed`, raised
    after the finished cells' table and plot are written.
    """
    from privmed.privacy.ledger import default_ledger_path

    grid_epsilons, grid_seeds = parse_epsilons(epsilons), parse_seeds(seeds)
    if address is not None and num_cpus is not None:
        raise PrivmedError("num_cpus sets up a local Ray instance; an existing cluster at an address has its own CPUs")
    out = Path(out_dir).expanduser().resolve()
    _check_resume(out, config)
    cells = [(epsilon, seed, out / "cells" / cell_name(epsilon, seed)) for epsilon in grid_epsilons for seed in grid_seeds]
    todo = [cell for cell in cells if not (cell[2] / "result.json").exists()]
    ray = _require_ray() if todo else None
    _write_sweep_json(out, config, grid_epsilons, grid_seeds)
    done, failures = 0, []
    for epsilon, seed, _ in (cell for cell in cells if cell not in todo):
        done += 1
        if progress is not None:
            progress(CellEvent(done, len(cells), epsilon, seed, "skipped"))
    if ray is not None:
        _warn_if_flow_saw_the_data(config)
        started = _start_ray(ray, address, num_cpus)
        try:
            task = ray.remote(num_cpus=1)(_cell_task)
            ledger = str(default_ledger_path().resolve())
            pending = {task.remote(config, epsilon, seed, str(cell), ledger): (epsilon, seed, cell) for epsilon, seed, cell in todo}
            waiting = list(pending)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                epsilon, seed, cell = pending[ready[0]]
                status = "done"
                try:
                    ray.get(ready[0])
                    if not (cell / "result.json").exists():
                        raise PrivmedError(f"the cell finished but {cell} is not visible here: OUT must be on a filesystem shared by every Ray node")
                except Exception as exc:  # noqa: BLE001 - any failure of one cell is reported; the others go on
                    failures.append(CellFailure(epsilon, seed, _failure_message(exc)))
                    status = "failed"
                done += 1
                if progress is not None:
                    progress(CellEvent(done, len(cells), epsilon, seed, status))
        finally:
            if started:
                ray.shutdown()
    rows = [_row(epsilon, seed, cell, config.metric) for epsilon, seed, cell in cells if (cell / "result.json").exists()]
    result = SweepResult(
        config=config, out_dir=out, rows=rows, skipped=len(cells) - len(todo), failures=failures,
        csv_path=out / "sweep.csv", markdown_path=out / "sweep.md", plot_path=out / "privacy_utility.png",
    )
    _write_csv(result)
    _write_markdown(result)
    plot_privacy_utility(result)
    if failures:
        raise SweepFailed(result)
    return result


def _row(epsilon: float, seed: int, cell: Path, metric: str) -> SweepRow:
    """A finished cell's row: utility from result.json, the guarantee from privacy.json."""
    from privmed.privacy.report import PrivacyReport

    result = json.loads((cell / "result.json").read_text(encoding="utf-8"))
    report = PrivacyReport.from_json(cell / "privacy.json")
    return SweepRow(
        epsilon=epsilon, seed=seed, epsilon_spent=float(report.epsilon), unit=report.unit, delta=float(report.delta),
        metric=metric, utility=float(result["utility"]), wall_seconds=float(result["wall_seconds"]), cell_dir=cell,
    )
