"""A run directory: everything one training or release writes, crash-safe.

Layout::

    RUN_DIR/config.json       what was asked for (written once, at start)
    RUN_DIR/privacy.json      the PrivacyReport of the release
    RUN_DIR/metrics.csv       one row per epoch (losses, epsilon spent, ...)
    RUN_DIR/checkpoints/      latest.pt (atomic), enough to resume exactly
    RUN_DIR/samples/          sample grids (PNG)
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import torch

from privmed.errors import PrivmedError
from privmed.fileio import atomic_path, write_json_atomic


def run_config(method: str, params: dict[str, Any], data: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """The one config.json schema of a run: the method's name, a fresh run id, its options, its data, then extras.

    ``params`` are the method's constructor options (a resume must match them); ``data`` holds at least
    ``key`` (the ledger key) and ``ref`` (how the data was loaded, so a resume needs not be told again).
    """
    return {"method": method, "run_id": uuid.uuid4().hex, "params": params, "data": data, **extra}


class RunDirectory:
    """Paths and atomic writers for one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def privacy_path(self) -> Path:
        return self.path / "privacy.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "latest.pt"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def create(self, config: dict[str, Any], resume: bool = False) -> None:
        """Start a run: a new directory (refuses to overwrite a run) or, with ``resume``, an existing one."""
        if resume:
            if not self.config_path.exists():
                raise PrivmedError(f"{self.path}: nothing to resume (no config.json)")
            return
        if self.config_path.exists():
            raise PrivmedError(f"{self.path} already holds a run: pass --resume to continue it, or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise PrivmedError(f"{self.path} is not a privmed run directory (no config.json)")
        return json.loads(self.config_path.read_text())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint atomically: a crash leaves the previous one intact."""
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one row to metrics.csv (header from the first row).

        Rows after a resume are appended; rows past the checkpoint's step are dropped first by
        ``truncate_metrics`` so the file never holds an epoch twice.
        """
        new = not self.metrics_path.exists()
        with self.metrics_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def truncate_metrics(self, column: str, last_value: float) -> None:
        """Drop metric rows whose ``column`` exceeds ``last_value`` (rows written after the last checkpoint)."""
        if not self.metrics_path.exists():
            return
        with self.metrics_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        kept = [r for r in rows if float(r[column]) <= last_value]
        with atomic_path(self.metrics_path) as tmp, tmp.open("w", newline="") as handle:
            if kept:
                writer = csv.DictWriter(handle, fieldnames=list(kept[0]))
                writer.writeheader()
                writer.writerows(kept)
