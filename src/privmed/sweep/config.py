"""A sweep's configuration: the method, its data and options, evaluation knobs, and the grid's epsilons and seeds."""

from __future__ import annotations

import inspect
import json
import math
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privmed.errors import PrivmedError

SWEEP_FORMAT = 1
GENERATIVE_METHODS = ("dpwgan", "acgan")
LOCAL_DP_METHODS = ("cadp", "dpglow", "pixel-ldp")
METHODS = GENERATIVE_METHODS + LOCAL_DP_METHODS
CONFIG_KEYS = ("method", "data", "test", "options", "evaluation")

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
