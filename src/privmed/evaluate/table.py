"""One table over release directories: the guarantee beside the utility and fidelity it kept.

A release directory holds ``privacy.json`` (a :class:`~privmed.privacy.report.PrivacyReport`; it
is also looked for in the parent directory, so an evaluation folder inside a run directory works)
and the outputs of ``privmed evaluate segmentation`` (``segmentation.json``) and ``privmed
evaluate fidelity`` (``fidelity.json``), in the directory itself or one level below. Whatever
exists fills its columns; the rest stays empty. A directory without ``privacy.json`` is a
non-private reference (e.g. real data) and shows no epsilon.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from privmed.errors import PrivmedError
from privmed.privacy.report import PrivacyReport

__all__ = ["COLUMNS", "format_table", "release_row", "release_table"]

COLUMNS = (
    "release", "epsilon", "delta", "unit", "dsc", "dsc_sd", "bahd", "bahd_sd",
    "fid_train", "fid_test", "kid_train", "ssim", "ms_ssim", "extractor",
)  # fmt: skip


def _find(directory: Path, name: str) -> Path | None:
    if (directory / name).is_file():
        return directory / name
    nested = sorted(directory.glob(f"*/{name}"))
    return nested[0] if nested else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PrivmedError(f"{path}: not a readable privmed evaluation file ({exc})") from None


def release_row(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The table row of one release directory (``None`` where a figure does not exist)."""
    path = Path(directory)
    if not path.is_dir():
        raise PrivmedError(f"{path}: no such release directory")
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["release"] = path.name
    privacy_path = path / "privacy.json" if (path / "privacy.json").is_file() else path.parent / "privacy.json"
    if privacy_path.is_file():
        report = PrivacyReport.from_json(privacy_path)
        row.update(epsilon=report.epsilon, delta=report.delta, unit=report.unit)
    segmentation_path = _find(path, "segmentation.json")
    if segmentation_path is not None:
        segmentation = _read_json(segmentation_path)
        main = next((r for r in segmentation.get("results", []) if r.get("model") == segmentation.get("model")), None)
        if main is not None:
            row.update(dsc=main.get("dice_mean"), dsc_sd=main.get("dice_sd"), bahd=main.get("bahd_mean"), bahd_sd=main.get("bahd_sd"))
    fidelity_path = _find(path, "fidelity.json")
    if fidelity_path is not None:
        fidelity = _read_json(fidelity_path)
        synthetic = fidelity.get("diversity", {}).get("synthetic", {})
        row.update(
            fid_train=fidelity.get("fid_train"),
            fid_test=fidelity.get("fid_test"),
            kid_train=fidelity.get("kid_train_mean"),
            ssim=synthetic.get("ssim_mean"),
            ms_ssim=synthetic.get("ms_ssim_mean"),
            extractor=fidelity.get("extractor", {}).get("name"),
        )
    return row


def release_table(directories: list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """One row per release directory, in the order given."""
    if not directories:
        raise PrivmedError("give at least one release directory")
    return [release_row(d) for d in directories]


def _cell(value: Any, exact: bool = False) -> str:
    """A table cell: empty for a missing figure; floats in full (CSV) or to 3 decimals (Markdown)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if exact:
            return repr(value)
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], fmt: str = "md") -> str:
    """Rows as a Markdown table (``"md"``) or CSV (``"csv"``); columns with no value anywhere are dropped."""
    columns = [c for c in COLUMNS if c == "release" or any(r.get(c) is not None for r in rows)]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(r.get(c), exact=True) for c in columns] for r in rows])
        return buffer.getvalue()
    if fmt != "md":
        raise PrivmedError(f"unknown table format {fmt!r}: use md or csv")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
