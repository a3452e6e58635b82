"""``save(data, path, format)``: write a dataset so that ``load`` reads it back.

- ``npz``: one privmed ``.npz`` file, lossless (float32 images, ids, labels, JSON metadata).
- ``png``: a folder ``images/0001.png`` (8-bit gray or RGB), ``labels/`` and ``masks/`` (0/255),
  ``records.csv`` (file, subject, source, class label) and ``dataset.json``; reads back equal up to
  8-bit quantization of the images. 2D records with 1 or 3 channels only.
- ``nifti``: the same folder layout with one ``.nii.gz`` per record (float32 images in [0, 1],
  uint8 labels/masks), stored (H, W, D[, C]) with D = 1 for 2D records; reads back exactly.

Writes are atomic: a folder is built beside the target and renamed into place, a file goes through
``privmed.fileio``; a failure leaves nothing behind. An existing non-empty target is refused unless
``overwrite=True``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from privmed.data.dataset import ImageDataset
from privmed.data.manifest import DATASET_FILE, RECORDS_FILE, records_csv
from privmed.errors import DataError
from privmed.fileio import atomic_path

FORMATS = ("npz", "png", "nifti")


def save(data: ImageDataset, path: str | Path, format: str = "npz", *, overwrite: bool = False) -> Path:  # noqa: A002
    """Write ``data`` to ``path`` in ``format`` and return the path written."""
    writers: dict[str, Callable[[ImageDataset, Path], None]] = {"png": _write_png, "nifti": _write_nifti}
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    target = Path(path)
    if target.exists() and not overwrite and (target.is_file() or any(target.iterdir())):
        raise DataError(f"{target} already exists; pass overwrite=True to replace it")
    if format == "npz":
        if target.is_dir():
            raise DataError(f"{target} is a folder; the npz format writes a file")
        with atomic_path(target) as tmp, tmp.open("wb") as handle:
            np.savez_compressed(handle, **_npz_arrays(data))
        return target
    _check_folder_format(data, format)
    _write_folder_atomically(target, lambda folder: writers[format](data, folder))
    return target


def _dataset_info(data: ImageDataset, format: str) -> dict:  # noqa: A002
    return {
        "writer": "privmed",
        "format": format,
        "name": data.name,
        "record_kind": data.record_kind,
        "class_names": list(data.class_names) if data.class_names else None,
        "subjects_known": data.subjects_known,
        "records": len(data),
    }


def _npz_arrays(data: ImageDataset) -> dict[str, np.ndarray]:
    info = _dataset_info(data, "npz")
    info["metadata"] = json.loads(json.dumps(data.metadata, default=str))
    arrays = {"images": data.images, "subjects": data.subjects, "sources": data.sources, "metadata": np.array(json.dumps(info))}
    for key in ("labels", "segmentations", "masks"):
        if getattr(data, key) is not None:
            arrays[key] = getattr(data, key)
    return arrays


def _check_folder_format(data: ImageDataset, format: str) -> None:  # noqa: A002
    if len(data) == 0:
        raise DataError(f"{data.name}: nothing to write, the dataset is empty")
    if format == "png":
        if len(data.spatial_shape) != 2:
            raise DataError(f"{data.name}: PNG holds 2D records, these are {len(data.spatial_shape)}D; use format='nifti'")
        if data.n_channels not in (1, 3):
            raise DataError(f"{data.name}: PNG holds 1 or 3 channels, these records have {data.n_channels}; use npz or nifti")


def _write_folder_atomically(target: Path, fill: Callable[[Path], None]) -> None:
    """Build the folder in a temporary sibling, then swap it in; on failure remove it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        fill(staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            retired.rmdir()
            target.rename(retired)
            staging.rename(target)
            if retired.is_dir():
                shutil.rmtree(retired)
            else:
                retired.unlink()
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _record_names(n: int, suffix: str) -> list[str]:
    width = max(4, len(str(n)))
    return [f"{i + 1:0{width}d}{suffix}" for i in range(n)]


def _write_common(data: ImageDataset, folder: Path, names: list[str], format: str, extra: dict | None = None) -> None:  # noqa: A002
    (folder / RECORDS_FILE).write_text(records_csv(names, data.subjects, data.sources, data.labels), encoding="utf-8")
    info = {**_dataset_info(data, format), **(extra or {})}
    (folder / DATASET_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _write_png(data: ImageDataset, folder: Path) -> None:
    names = _record_names(len(data), ".png")
    quantized = np.rint(data.images * 255.0).astype(np.uint8)
    parts = [("images", quantized)]
    parts += [(sub, getattr(data, key) * np.uint8(255)) for sub, key in (("labels", "segmentations"), ("masks", "masks")) if getattr(data, key) is not None]
    for sub, arrays in parts:
        (folder / sub).mkdir()
        for name, record in zip(names, arrays):
            pixels = record[0] if record.shape[0] == 1 else np.moveaxis(record, 0, -1)
            Image.fromarray(np.ascontiguousarray(pixels)).save(folder / sub / name)
    _write_common(data, folder, names, "png")


def _write_nifti(data: ImageDataset, folder: Path) -> None:
    import nibabel as nib

    names = _record_names(len(data), ".nii.gz")
    volumes = len(data.spatial_shape) == 3
    parts = [("images", data.images)]
    parts += [(sub, getattr(data, key)) for sub, key in (("labels", "segmentations"), ("masks", "masks")) if getattr(data, key) is not None]
    for sub, arrays in parts:
        (folder / sub).mkdir()
        for name, record in zip(names, arrays):
            # NIfTI order (H, W, D, C): channels on the 4th axis, a 2D record as one slice (D = 1)
            stored = np.moveaxis(record, (0, 1), (3, 2)) if volumes else np.moveaxis(record, 0, -1)[:, :, None, :]
            stored = stored[..., 0] if stored.shape[-1] == 1 else stored
            nib.save(nib.Nifti1Image(np.ascontiguousarray(stored), affine=np.eye(4)), str(folder / sub / name))
    _write_common(data, folder, names, "nifti", {"intensity": "unit", "volumes": volumes})
