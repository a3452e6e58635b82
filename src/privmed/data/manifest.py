"""The two small files privmed writes beside an image folder so it reads back exactly.

``records.csv`` has one row per record (``file, subject, source, label``) and ``dataset.json`` the
dataset-wide fields (name, class names, record kind, whether subjects are real patient ids).
A folder without them is read with ids taken from the file names.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privmed.errors import DataError

RECORDS_FILE = "records.csv"
DATASET_FILE = "dataset.json"
RECORD_COLUMNS = ("file", "subject", "source", "label")


@dataclass(frozen=True)
class Manifest:
    """What ``records.csv`` and ``dataset.json`` say about a folder."""

    rows: dict[str, dict[str, str]]
    info: dict[str, Any]

    def record(self, file_name: str, folder: Path) -> dict[str, str]:
        """The row of one image file; a DataError if ``records.csv`` does not list it."""
        row = self.rows.get(file_name)
        if row is None:
            raise DataError(f"{folder / RECORDS_FILE}: no row for the image file {file_name!r}")
        return row

    def labels(self, file_names: list[str], folder: Path) -> np.ndarray | None:
        """Class labels of the files in order, or None if the column is empty."""
        values = [self.record(name, folder).get("label", "") for name in file_names]
        if all(v == "" for v in values):
            return None
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except ValueError:
            raise DataError(f"{folder / RECORDS_FILE}: the label column must hold integers for every row") from None


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of ``folder``, or None if it has no ``records.csv``."""
    records_path = folder / RECORDS_FILE
    if not records_path.is_file():
        return None
    try:
        with records_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"file", "subject", "source"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"{records_path}: missing columns {', '.join(sorted(missing))}")
            rows = {row["file"]: row for row in reader}
        info_path = folder / DATASET_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(f"{folder}: cannot read {RECORDS_FILE} / {DATASET_FILE} ({exc})") from None
    if not isinstance(info, dict):
        raise DataError(f"{folder / DATASET_FILE}: expected a JSON object")
    return Manifest(rows=rows, info=info)


def records_csv(file_names: list[str], subjects: np.ndarray, sources: np.ndarray, labels: np.ndarray | None) -> str:
    """The text of ``records.csv`` for the given records."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_COLUMNS)
    for i, name in enumerate(file_names):
        writer.writerow([name, subjects[i], sources[i], "" if labels is None else int(labels[i])])
    return buffer.getvalue()
