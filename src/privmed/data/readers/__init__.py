"""One reader per on-disk format, and the registry that picks one for a path."""

from __future__ import annotations

from pathlib import Path

from privmed.data.readers.base import ALL_SPLIT, Reader
from privmed.data.readers.dicom import DicomReader
from privmed.data.readers.image_folder import ImageFolderReader
from privmed.data.readers.medmnist import MedMNISTReader
from privmed.data.readers.nifti import NiftiReader
from privmed.data.readers.privmed_npz import PrivmedNpzReader
from privmed.errors import DataError

READERS: tuple[Reader, ...] = (
    PrivmedNpzReader(),
    MedMNISTReader(),
    NiftiReader(),
    ImageFolderReader(),
    DicomReader(),
)
"""Tried in order; the first whose ``can_read`` accepts the path reads it."""


def reader_for(path: Path) -> Reader:
    """The reader for ``path``; a DataError if the path is missing, empty or of no known format."""
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"{path}: the folder is empty")
    for reader in READERS:
        if reader.can_read(path):
            return reader
    formats = ", ".join(r.name for r in READERS)
    raise DataError(f"{path}: unknown data format (privmed reads {formats})")


__all__ = ["ALL_SPLIT", "READERS", "Reader", "reader_for"]
