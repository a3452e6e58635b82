"""Opening ``.npz`` archives safely: no pickles, and one clear error for a broken file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from privmed.errors import DataError


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """The archive at ``path`` (object arrays refused: loading them would run pickled code)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None


def npz_keys(path: Path) -> list[str]:
    """The array names in an ``.npz`` file, or [] if it is not one (used for format detection)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return []


def read_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of the archive; a DataError naming the file if it is damaged."""
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: the array {key!r} cannot be read ({exc})") from None
