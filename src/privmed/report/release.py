"""What a release directory holds, read once for the report: guarantee, config, metrics, samples, data, evaluations.

A release directory is any folder with a ``privacy.json``: a training run (``privmed train ...``:
config.json, metrics.csv, samples/), a generated set (``privmed generate``: data.npz or data/) or a
privatized copy (``privmed privatize ...``: data.npz or images/). Evaluation outputs are looked for in
the directory itself and one level below, the way ``privmed evaluate table`` finds them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privmed.errors import PrivmedError
from privmed.privacy.report import PrivacyReport

EVALUATION_FILES = ("segmentation.json", "fidelity.json", "metrics.json", "attack.json", "diversity.json", "audit.json")
"""The files ``privmed evaluate ...`` and ``privmed audit`` write, in the order the report shows them."""

_DATA_CANDIDATES = ("data.npz", "data", "images")
_SKIPPED_FOLDERS = {"checkpoints", "samples", "overlays", "data", "images"}


@dataclass
class ReleaseDir:
    """The files of one release directory that the report reads; missing ones are None or empty."""

    path: Path
    privacy: PrivacyReport
    config: dict[str, Any] | None = None
    metrics: list[dict[str, float]] = field(default_factory=list)
    metric_columns: list[str] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    data_path: Path | None = None
    evaluations: list[Path] = field(default_factory=list)

    @property
    def method(self) -> str | None:
        """The method name recorded in config.json (e.g. ``dpwgan``), if any."""
        if self.config is None:
            return None
        method = self.config.get("method")
        return str(method) if method else None

    @property
    def data_ref(self) -> str | None:
        """The private data's reference as config.json records it (training runs), if any."""
        data = (self.config or {}).get("data")
        if isinstance(data, dict) and data.get("ref"):
            return str(data["ref"])
        if isinstance(data, str):
            return data
        return None


def read_release(path: str | Path) -> ReleaseDir:
    """Read a release directory; a :class:`PrivmedError` if it is not one (no readable privacy.json)."""
    folder = Path(path)
    if not folder.is_dir():
        raise PrivmedError(f"{folder}: no such directory (give a privmed run or release directory)")
    privacy_path = folder / "privacy.json"
    if not privacy_path.is_file():
        raise PrivmedError(f"{folder}: not a privmed run or release directory (no privacy.json)")
    release = ReleaseDir(path=folder, privacy=PrivacyReport.from_json(privacy_path))
    release.config = _read_config(folder / "config.json")
    release.metrics, release.metric_columns = read_metrics(folder / "metrics.csv")
    release.samples = sorted((folder / "samples").glob("*.png")) if (folder / "samples").is_dir() else []
    release.data_path = next((folder / name for name in _DATA_CANDIDATES if (folder / name).exists()), None)
    release.evaluations = find_evaluations(folder)
    return release


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PrivmedError(f"{path}: not a readable run configuration ({exc})") from None
    return config if isinstance(config, dict) else None


def read_metrics(path: Path) -> tuple[list[dict[str, float]], list[str]]:
    """The numeric rows of a metrics.csv and its column names; empty when there is no file.

    A cell that is not a number becomes NaN, so a partly written or hand-edited file still plots.
    """
    if not path.is_file():
        return [], []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = [{column: _number(row.get(column)) for column in columns} for row in reader]
    return rows, columns


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def find_evaluations(folder: Path) -> list[Path]:
    """Evaluation files in ``folder`` and its direct subfolders, grouped by kind in report order."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in _SKIPPED_FOLDERS)
    found = []
    for name in EVALUATION_FILES:
        found += [place / name for place in (folder, *subfolders) if (place / name).is_file()]
    return found


def read_json(path: Path) -> dict[str, Any]:
    """An evaluation file as a dict; a :class:`PrivmedError` naming the file if it cannot be read."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PrivmedError(f"{path}: not a readable privmed evaluation file ({exc})") from None
    if not isinstance(payload, dict):
        raise PrivmedError(f"{path}: an evaluation file must hold a JSON object")
    return payload
