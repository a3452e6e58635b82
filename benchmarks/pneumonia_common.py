"""What the PneumoniaMNIST benchmarks share: data splits, a results file that grows row by row."""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.fileio import write_json_atomic, write_text_atomic
from privmed.methods.flow_training import FlowTrainer, TrainedFlow, load_trained_flow
from privmed.models.flows import InvertibleFlow
from privmed.runs import RunDirectory

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "pneumoniamnist.npz"
RESULTS_DIR = REPO / "benchmarks" / "results"
RUNS_DIR = REPO / "benchmarks" / "runs"


def command_line() -> str:
    """The exact command that is running, for the results file."""
    return shlex.join([Path(sys.executable).name, *sys.argv]).replace(str(REPO) + "/", "")


def load_pneumonia(path: str | Path) -> tuple[ImageDataset, ImageDataset]:
    """PneumoniaMNIST train (4708) and test (624) splits through the data layer; label 1 = pneumonia."""
    return load(f"{path}:train"), load(f"{path}:test")


def public_private_split(train: ImageDataset, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Split the training images in two random halves: a public half for the flows, a private half to release.

    The flows must not be trained on the images they privatize: their training is not covered by the
    Laplace guarantee. The public half stands in for another hospital's (or a public) archive.
    """
    order = np.random.default_rng(seed).permutation(len(train))
    half = len(train) // 2
    public = train.subset(np.sort(order[:half]))
    private = train.subset(np.sort(order[half:]))
    return public, private


FLOW_NAMES = ("cinn", "glow-mixture", "glow-normal")


def flow_training_set(name: str, public: ImageDataset) -> ImageDataset:
    """The public images each benchmark flow learns: all of them, or the normal ones (label 0) only."""
    return public.subset(np.flatnonzero(public.labels == 0)) if name == "glow-normal" else public


def ensure_flow(name: str, flow: InvertibleFlow, data: ImageDataset, epochs: int, seed: int = 0) -> TrainedFlow:
    """Train ``flow`` on ``data`` into benchmarks/runs/NAME (resuming a partial run), or load it if done.

    An existing run is reused only if its architecture, training-set size and seed are the ones asked for.
    """
    run = RunDirectory(RUNS_DIR / name)
    config = json.loads(json.dumps({"flow": flow.config, "data": data.name, "records": len(data), "epochs": epochs, "seed": seed}))
    checkpoint = None
    if run.config_path.exists():
        stored = run.read_config()
        for key in ("flow", "records", "seed"):
            if stored.get(key) != config[key]:
                raise SystemExit(f"{run.path} holds a {name} flow with {key}={stored.get(key)}, not {config[key]}: delete it")
        checkpoint = run.load_checkpoint()
    if checkpoint is not None and int(checkpoint["epoch"]) >= epochs:
        return load_trained_flow(run.path)
    run.create(config, resume=run.config_path.exists())
    FlowTrainer(
        flow, epochs=epochs, batch_size=64, learning_rate=1e-3, seed=seed, run_dir=run.path, resume=checkpoint is not None,
        on_epoch=lambda epoch, row: logging.getLogger("benchmarks").info("%s epoch %d: %s", name, epoch, row),
    ).fit(data)
    return load_trained_flow(run.path)


@dataclass
class ResultsFile:
    """A JSON + Markdown results pair, rewritten (atomically) after every row so a crash loses one row at most."""

    stem: Path
    title: str
    columns: list[tuple[str, str]]
    key: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _own_run: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        path = self.stem.with_suffix(".json")
        if path.exists():
            previous = json.loads(path.read_text())
            self.rows, self.runs = previous.get("rows", []), previous.get("runs", [])
            self.notes = self.notes or previous.get("notes", [])  # a run that brings no notes keeps the file's
        self.runs.append(
            {
                "command": command_line(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU shared with other jobs",
                "load_average": round(os.getloadavg()[0], 2),
                "torch": torch.__version__,
            }
        )

    def put(self, row: dict[str, Any]) -> None:
        """Add a row, replacing an earlier row with the same key, and rewrite both files."""
        path = self.stem.with_suffix(".json")
        if path.exists():  # another process of the same benchmark may have added rows and runs since this one started
            stored = json.loads(path.read_text())
            own = self.runs[-1] if self._own_run is None else self._own_run
            self._own_run = own
            self.rows = stored.get("rows", self.rows)
            runs = stored.get("runs", [])
            self.runs = runs if own in runs else [*runs, own]
        row = {**row, "run": self.runs.index(self._own_run) if self._own_run is not None else len(self.runs) - 1}
        self.rows = [r for r in self.rows if tuple(r.get(k) for k in self.key) != tuple(row.get(k) for k in self.key)]
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        write_json_atomic(self.stem.with_suffix(".json"), {"title": self.title, "runs": self.runs, "notes": self.notes, "rows": self.rows})
        lines = [f"# {self.title}", ""]
        for index, run in enumerate(self.runs):
            load = f"; load average {run['load_average']} at start" if "load_average" in run else ""
            lines.append(f"- run {index}, {run['started']}: `{run['command']}` ({run['machine']}{load}; torch {run['torch']})")
        lines += ["", "| " + " | ".join(header for _, header in self.columns) + " |", "|" + "---|" * len(self.columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(row.get(name)) for name, _ in self.columns) + " |")
        if self.notes:
            lines += ["", "Notes:", ""] + [f"- {note}" for note in self.notes]
        write_text_atomic(self.stem.with_suffix(".md"), "\n".join(lines) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == float("inf"):
            return "inf"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)
