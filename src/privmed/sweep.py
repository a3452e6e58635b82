"""Epsilon x seed grids of one method and its utility evaluation, run as Ray tasks.

A sweep trains (or releases) one method at every epsilon of a grid, once per seed, and measures
each release's utility on real test data: a U-Net's Dice for DP-WGAN pairs, a classifier's ROC AUC
for AC-GAN samples and for CADP / DP-GLOW / pixel-noise copies. Each cell is its own run directory
``OUT/cells/eps-E_seed-S/`` (config.json, privacy.json, ... as the method writes it) and ends with
``result.json``, written last: a cell without it is re-run (a GAN resumes from its checkpoint), a
cell with it is skipped.

Every cell is a real release of the private data and is booked in the user's budget ledger: the
GANs book themselves (``DPTrainer``), the local-DP privatizers are reserved and settled here with
the same ledger calls ``privmed privatize`` makes. Epsilon is never computed here: the table reads
it back from each cell's privacy.json. The ``inf`` cells are non-private references (a GAN trained
without DP; for the privatizers the real data itself) and book nothing.

On a multi-node Ray cluster, OUT, the budget ledger and the data must live on a filesystem that every
node sees under the same path.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import math
import os
import statistics
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privmed.errors import PrivacyError, PrivmedError
from privmed.fileio import write_atomic, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset
    from privmed.methods.local_dp import LaplacePrivatizer

logger = logging.getLogger(__name__)

SWEEP_FORMAT = 1
GENERATIVE_METHODS = ("dpwgan", "acgan")
LOCAL_DP_METHODS = ("cadp", "dpglow", "pixel-ldp")
METHODS = GENERATIVE_METHODS + LOCAL_DP_METHODS
CONFIG_KEYS = ("method", "data", "test", "options", "evaluation")
RAY_MISSING = "privmed sweep runs on Ray, which is not installed: pip install 'privmed[sweep]'"

# The grid sets these; a configuration may not.
_GRID_OPTIONS = frozenset({"epsilon", "seed", "run_dir", "on_progress", "on_epoch"})
# Local-DP options: (required, optional) keys.
_LOCAL_DP_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "cadp": (frozenset({"flow", "clip"}), frozenset({"paper_scale", "secure_rng"})),
    "dpglow": (frozenset({"flow"}), frozenset({"alpha", "secure_rng"})),
    "pixel-ldp": (frozenset(), frozenset({"secure_rng"})),
}
_CLASSIFIER_EVALUATION: dict[str, Any] = {
    "model": "cnn", "epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "confidence": 0.95, "n_resamples": 2000,
}
EVALUATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "dpwgan": {"samples": 256, "unet_steps": 200, "patch_size": 96},
    "acgan": {**_CLASSIFIER_EVALUATION, "samples": None},
    "cadp": dict(_CLASSIFIER_EVALUATION),
    "dpglow": dict(_CLASSIFIER_EVALUATION),
    "pixel-ldp": dict(_CLASSIFIER_EVALUATION),
}
"""Evaluation knobs per method and their defaults (``samples: None`` = as many as the training data)."""
METRICS = {"dpwgan": "dice", "acgan": "roc_auc", "cadp": "roc_auc", "dpglow": "roc_auc", "pixel-ldp": "roc_auc"}
"""The utility each method's cells report (Dice of a U-Net, or ROC AUC of a classifier, on the real test set)."""
_METRIC_LABELS = {"dice": "Dice on real test images (U-Net)", "roc_auc": "ROC AUC on real test images"}


def _absolute_ref(ref: str) -> str:
    """``ref`` with a relative file path made absolute (Ray workers need not share the driver's directory)."""
    from privmed.data.loading import EMBEDDED, parse_ref

    source, split = parse_ref(ref)
    if source in EMBEDDED or not Path(source).exists():
        return ref
    absolute = str(Path(source).resolve())
    return absolute if split is None else f"{absolute}:{split}"


def _method_options(method: str, options: dict[str, Any], source: str) -> dict[str, Any]:
    """Check ``options`` against the method's keyword arguments; return them with paths made absolute."""
    if method in GENERATIVE_METHODS:
        accepted = set(inspect.signature(_generative_class(method)).parameters) - _GRID_OPTIONS
        required: frozenset[str] = frozenset()
    else:
        required, optional = _LOCAL_DP_OPTIONS[method]
        accepted = set(required | optional)
    unknown = sorted(set(options) - accepted)
    if unknown:
        grid = sorted(set(unknown) & _GRID_OPTIONS)
        hint = f" ({', '.join(grid)} come from the grid)" if grid else ""
        raise PrivmedError(
            f"{source}: unknown option {', '.join(unknown)} for {method}{hint}; options: {', '.join(sorted(accepted)) or 'none'}"
        )
    missing = sorted(required - set(options))
    if missing:
        raise PrivmedError(f"{source}: {method} needs the option {', '.join(missing)}")
    checked = dict(options)
    if "flow" in checked:
        flow = Path(str(checked["flow"])).expanduser()
        if not (flow / "config.json").is_file():
            raise PrivmedError(f"{source}: options.flow = {flow} is not a flow directory from 'privmed train flow'")
        checked["flow"] = str(flow.resolve())
    return checked


def _evaluation_settings(method: str, evaluation: dict[str, Any], source: str) -> dict[str, Any]:
    """The method's evaluation defaults updated by ``evaluation``, each value checked against its default's type."""
    defaults = EVALUATION_DEFAULTS[method]
    unknown = sorted(set(evaluation) - set(defaults))
    if unknown:
        raise PrivmedError(f"{source}: unknown evaluation key {', '.join(unknown)} for {method}; keys: {', '.join(sorted(defaults))}")
    settings = dict(defaults)
    for key, value in evaluation.items():
        default = defaults[key]
        if isinstance(default, str):
            valid = isinstance(value, str)
        elif isinstance(default, float):
            valid = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        else:  # counts (None = automatic)
            valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
        if not valid:
            raise PrivmedError(f"{source}: evaluation.{key} = {value!r} is not valid (default: {default!r})")
        settings[key] = value
    return settings


def _generative_class(method: str) -> type:
    if method == "dpwgan":
        from privmed.methods.dpwgan import DPWGAN

        return DPWGAN
    from privmed.methods.acgan import ACGAN

    return ACGAN


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs: a method, its private training data, a real test set, options and evaluation knobs.

    ``options`` are the method's keyword arguments (for the GANs, those of ``DPWGAN`` / ``ACGAN``
    except epsilon and seed, which the grid sets; for CADP ``flow`` and ``clip`` (and ``paper_scale``),
    for DP-GLOW ``flow`` (and ``alpha``); every local-DP method takes ``secure_rng``). ``evaluation`` overrides
    :data:`EVALUATION_DEFAULTS`. Relative paths are made absolute when the configuration is read.
    """

    method: str
    data: str
    test: str
    options: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, payload: Any, source: str = "sweep configuration") -> SweepConfig:
        """Validate a parsed configuration; every mistake is a :class:`PrivmedError` naming the key."""
        if not isinstance(payload, dict):
            raise PrivmedError(f"{source}: a sweep configuration must be a mapping with keys {', '.join(CONFIG_KEYS)}")
        unknown = sorted(set(payload) - set(CONFIG_KEYS))
        if unknown:
            raise PrivmedError(f"{source}: unknown key {', '.join(unknown)}; keys: {', '.join(CONFIG_KEYS)}")
        for key in ("method", "data", "test"):
            if not isinstance(payload.get(key), str) or not payload[key].strip():
                raise PrivmedError(f"{source}: '{key}' is required (a string)")
        method = payload["method"]
        if method not in METHODS:
            raise PrivmedError(f"{source}: unknown method {method!r}; methods: {', '.join(METHODS)}")
        for key in ("options", "evaluation"):
            if not isinstance(payload.get(key, {}), dict):
                raise PrivmedError(f"{source}: '{key}' must be a mapping")
        return cls(
            method=method,
            data=_absolute_ref(payload["data"]),
            test=_absolute_ref(payload["test"]),
            options=_method_options(method, dict(payload.get("options", {})), source),
            evaluation=_evaluation_settings(method, dict(payload.get("evaluation", {})), source),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SweepConfig:
        """Read a configuration from JSON, or from TOML when the file name ends in ``.toml``."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise PrivmedError(f"{source}: cannot read the sweep configuration ({exc.strerror or exc})") from None
        try:
            payload = tomllib.loads(text) if source.suffix.lower() == ".toml" else json.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            kind = "TOML" if source.suffix.lower() == ".toml" else "JSON"
            raise PrivmedError(f"{source}: not valid {kind} ({exc})") from None
        return cls.from_dict(payload, source=str(source))

    @property
    def metric(self) -> str:
        """The utility metric of this method's cells."""
        return METRICS[self.method]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready configuration (what sweep.json stores and a resume must match)."""
        return {"method": self.method, "data": self.data, "test": self.test, "options": dict(self.options), "evaluation": dict(self.evaluation)}


def cell_name(epsilon: float, seed: int) -> str:
    """The directory name of one cell, e.g. ``eps-2_seed-0`` or ``eps-inf_seed-1``."""
    return f"eps-{epsilon:.12g}_seed-{seed}"


def _epsilon_json(epsilon: float) -> float | str:
    return "inf" if math.isinf(epsilon) else float(epsilon)


# ---------------------------------------------------------------------------------------------- one cell


def run_cell(config: SweepConfig, epsilon: float, seed: int, cell_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Release one cell (train or privatize at ``epsilon`` with ``seed``) into ``cell_dir`` and measure its utility.

    Writes the method's run files, ``evaluation/`` for classifier metrics, and ``result.json`` last,
    which is returned. A cell that already holds result.json is not run again (that would be a second
    release); one without it is continued (GANs resume from their checkpoint).
    """
    from privmed.data import load

    cell = Path(cell_dir)
    result_path = cell / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text(encoding="utf-8"))
    epsilon = float(epsilon)
    start = time.monotonic()
    cell.mkdir(parents=True, exist_ok=True)
    test = load(config.test)
    if config.method in GENERATIVE_METHODS:
        metrics = _generative_cell(config, epsilon, seed, cell, test)
    else:
        metrics = _local_dp_cell(config, epsilon, seed, cell, test)
    result = {
        "format": SWEEP_FORMAT,
        "method": config.method,
        "epsilon": _epsilon_json(epsilon),
        "seed": seed,
        "metric": config.metric,
        "utility": float(metrics[config.metric]),
        "metrics": metrics,
        "wall_seconds": round(time.monotonic() - start, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(result_path, result)
    return result


def _generative_cell(config: SweepConfig, epsilon: float, seed: int, cell: Path, test: ImageDataset) -> dict[str, Any]:
    """Train the GAN in ``cell`` (resuming a started run), sample from it and evaluate the samples."""
    from privmed.data import load
    from privmed.runs import RunDirectory

    method_class = _generative_class(config.method)
    data = load(config.data)
    if RunDirectory(cell).config_path.exists():
        model = method_class.from_run(cell)
        model.fit(data, resume=True, data_ref=config.data)
    else:
        model = method_class(epsilon, seed=seed, run_dir=cell, **config.options)
        model.fit(data, data_ref=config.data)
    settings = config.evaluation
    n_samples = settings["samples"] or len(data)
    samples = model.sample(n_samples, seed=seed)
    if config.method == "dpwgan":
        from privmed.evaluate.segmentation import segmentation_utility

        return segmentation_utility(samples, test, settings["unet_steps"], settings["patch_size"], seed)
    return _classifier_utility(samples, test, settings, seed, cell)


def _classifier_utility(train: ImageDataset, test: ImageDataset, settings: dict[str, Any], seed: int, cell: Path) -> dict[str, Any]:
    """ROC AUC (with CI) and accuracy of a classifier trained on ``train`` and tested on real ``test``."""
    from privmed.evaluate.classifier import evaluate_classifier, write_classifier_report

    metrics, probabilities = evaluate_classifier(
        train, test, model=settings["model"], epochs=settings["epochs"], batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"], seed=seed, confidence=settings["confidence"], n_resamples=settings["n_resamples"],
    )
    write_classifier_report(cell / "evaluation", metrics, test.labels, probabilities)
    return {
        "roc_auc": metrics.roc_auc, "roc_auc_low": metrics.roc_auc_low, "roc_auc_high": metrics.roc_auc_high,
        "accuracy": metrics.accuracy, "n_train": metrics.n_train, "n_test": metrics.n_test,
    }


def _privatizer(config: SweepConfig, epsilon: float, data: ImageDataset) -> LaplacePrivatizer:
    """The configured local-DP method at ``epsilon`` (the flow loaded from options.flow)."""
    options = config.options
    secure_rng = bool(options.get("secure_rng", False))
    if config.method == "pixel-ldp":
        from privmed.methods.pixel_ldp import PixelLDP

        return PixelLDP(epsilon, secure_rng=secure_rng).fit(data)
    from privmed.methods.flow_training import flow_trained_on, load_trained_flow

    trained = load_trained_flow(options["flow"])
    if flow_trained_on(trained, data, config.data):
        if not options.get("flow_trained_on_private", False):
            raise PrivacyError(
                f"the flow {options['flow']} was trained on {config.data}, the data this sweep privatizes: its releases would protect "
                "nothing; train the flow on public data (or set options.flow_trained_on_private: releases then state no guarantee)"
            )
    if config.method == "cadp":
        from privmed.methods.cadp import CADP

        return CADP(trained.flow, epsilon, float(options["clip"]), paper_scale=bool(options.get("paper_scale", False)), secure_rng=secure_rng)
    from privmed.methods.dpglow import DPGLOW

    if trained.latent_min is None or trained.latent_max is None:
        raise PrivmedError(f"{options['flow']}: the flow has no training latent range (train it to the last epoch first)")
    return DPGLOW(trained.flow, epsilon, float(options.get("alpha", 0.4)), secure_rng=secure_rng).fit_range(trained.latent_min, trained.latent_max)


def _local_dp_cell(config: SweepConfig, epsilon: float, seed: int, cell: Path, test: ImageDataset) -> dict[str, Any]:
    """Privatize ``config.data`` at ``epsilon`` into ``cell`` (booked in the ledger) and evaluate a classifier on it."""
    from privmed.data import load

    data = load(config.data)
    privacy_path, data_path = cell / "privacy.json", cell / "data.npz"
    if math.isinf(epsilon):
        release = data
        if not privacy_path.exists():
            _non_private_report(data).to_json(privacy_path)
    elif privacy_path.exists() and data_path.exists():
        release = load(str(data_path))
        _settle(cell, privacy_path)
    else:
        release = _privatize(config, epsilon, data, cell, privacy_path, data_path)
    return _classifier_utility(release, test, config.evaluation, seed, cell)


def _release_id(cell: Path, stale_release: bool) -> str:
    """The cell's ledger release id, kept in ``cell/ledger.json`` so a re-run replaces its own entry.

    When a previous attempt left privatized data on disk without finishing (``stale_release``), that
    copy may have been read: its reservation stays in the ledger and the new attempt books a new id.
    """
    path = cell / "ledger.json"
    if path.exists() and not stale_release:
        return str(json.loads(path.read_text(encoding="utf-8"))["release_id"])
    if stale_release:
        logger.warning("%s: an unfinished earlier release left data on disk; it stays booked and a new release is booked", cell)
    release_id = f"sweep-{uuid.uuid4().hex[:16]}"
    write_json_atomic(path, {"release_id": release_id})
    return release_id


def _privatize(config: SweepConfig, epsilon: float, data: ImageDataset, cell: Path, privacy_path: Path, data_path: Path) -> ImageDataset:
    """Reserve, privatize, write data.npz and privacy.json, settle: the steps of ``privmed privatize``."""
    from privmed.methods.local_dp import release

    method = _privatizer(config, epsilon, data)
    # The sweep trains a classifier on each release, which needs its labels: they are written as public
    # (named so in every cell's privacy.json), as a research sweep on data whose labels may be shown.
    method.set_labels(public_labels=True)
    release_id = _release_id(cell, stale_release=data_path.exists())
    on_private = bool(config.options.get("flow_trained_on_private", False))
    privatized, _, _ = release(
        method, data, data_path, privacy_path, release_id=release_id,
        description=f"sweep {config.method} epsilon={epsilon:g} cell={cell}", overwrite=True,
        flow_saw_the_data=on_private, flow_trained_on_private=on_private,
    )
    return privatized


def _settle(cell: Path, privacy_path: Path) -> None:
    """Settle a finished release whose run stopped before its evaluation (settling twice is harmless)."""
    from privmed.privacy.ledger import BudgetLedger
    from privmed.privacy.report import PrivacyReport

    BudgetLedger().settle(_release_id(cell, stale_release=False), PrivacyReport.from_json(privacy_path).epsilon)


def _non_private_report(data: ImageDataset) -> Any:
    """The report of an ``inf`` local-DP cell: the real data itself, no guarantee, nothing booked."""
    from privmed.methods.training import NON_PRIVATE_MECHANISM
    from privmed.privacy.report import PrivacyReport
    from privmed.privacy.units import PrivacyUnit

    return PrivacyReport(
        mechanism=NON_PRIVATE_MECHANISM,
        accountant="none",
        unit=PrivacyUnit.RECORD.describe(data.record_kind),
        n_units=len(data),
        epsilon=math.inf,
        delta=0.0,
        notes=["epsilon = inf: the classifier is trained on the real data itself, a non-private reference; nothing is released or booked"],
        dataset=data.name,
    )


# ---------------------------------------------------------------------------------------------- the grid


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


@dataclass(frozen=True)
class CellEvent:
    """Progress of a sweep: ``done`` of ``total`` cells; ``status`` is "skipped", "done" or "failed"."""

    done: int
    total: int
    epsilon: float
    seed: int
    status: str


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


class SweepFailed(PrivmedError):
    """Some cells failed; the others' table and plot are written, and ``result`` holds them."""

    def __init__(self, result: SweepResult) -> None:
        details = "; ".join(f"epsilon={f.epsilon:g} seed={f.seed}: {f.message}" for f in result.failures)
        super().__init__(f"{len(result.failures)} sweep cell(s) failed ({details}); run the sweep again to retry them")
        self.result = result


def parse_epsilons(epsilons: Iterable[float | str]) -> list[float]:
    """Epsilons as sorted unique floats (``"inf"`` allowed, last); each must be > 0."""
    values = set()
    for item in epsilons:
        try:
            value = float(str(item).strip())
        except ValueError:
            raise PrivmedError(f"epsilon {item!r} is not a number (use 'inf' for the non-private reference)") from None
        if math.isnan(value) or value <= 0:
            raise PrivmedError(f"every epsilon must be > 0 (or inf), got {item!r}")
        values.add(value)
    if not values:
        raise PrivmedError("the sweep needs at least one epsilon")
    return sorted(values)


def parse_seeds(seeds: int | Iterable[int]) -> list[int]:
    """``n`` means seeds 0..n-1; a sequence is used as given (duplicates dropped)."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise PrivmedError(f"the number of seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    values = list(dict.fromkeys(int(seed) for seed in seeds))
    if not values or any(seed < 0 for seed in values):
        raise PrivmedError(f"seeds must be a non-empty list of non-negative integers, got {values}")
    return values


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
