"""DICOM series (pydicom): a folder searched recursively for ``.dcm`` files, or one file.

Files are grouped by SeriesInstanceUID and ordered along the slice normal (ImagePositionPatient
projected on the cross product of ImageOrientationPatient), else by InstanceNumber, else by name.
The modality LUT (rescale slope/intercept) is applied, then each series is min-max scaled to [0, 1];
MONOCHROME1 (inverted grey scale) is flipped so that bright means high everywhere. Every slice is
a record (``record_kind="slice"``); subject = PatientID (``subjects_known=True``); source = the
series, so image-level privacy protects a whole series.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.data.readers.base import ALL_SPLIT, Reader, min_max_scale
from privmed.errors import DataError

if TYPE_CHECKING:
    from pydicom import Dataset


def _dicom_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")


def _slice_position(dataset: "Dataset") -> tuple[int, float]:
    """Sort key of one slice: position along the slice normal if known, else its instance number."""
    position = getattr(dataset, "ImagePositionPatient", None)
    orientation = getattr(dataset, "ImageOrientationPatient", None)
    if position is not None and orientation is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return 0, float(np.dot(normal, np.asarray(position, float)))
    return 1, float(getattr(dataset, "InstanceNumber", 0) or 0)


class DicomReader(Reader):
    """Folders of DICOM files, one record per slice."""

    name = "dicom"

    def can_read(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() == ".dcm"
        return path.is_dir() and next((p for p in path.rglob("*.[dD][cC][mM]") if p.is_file()), None) is not None

    def splits(self, path: Path) -> list[str]:
        return [ALL_SPLIT]

    def read(self, path: Path, split: str) -> ImageDataset:
        import pydicom

        series: dict[str, list[tuple[tuple[int, float], str, Path, Dataset]]] = defaultdict(list)
        for file in _dicom_files(path):
            try:
                dataset = pydicom.dcmread(file)
            except Exception as exc:  # pydicom raises InvalidDicomError, OSError, EOFError, ...
                raise DataError(f"{file}: cannot read the DICOM file ({exc})") from None
            if "PixelData" not in dataset:
                continue
            uid = str(getattr(dataset, "SeriesInstanceUID", "") or file.parent)
            series[uid].append((_slice_position(dataset), file.name, file, dataset))
        if not series:
            raise DataError(f"{path}: no DICOM image files (.dcm with pixel data)")

        images, subjects, sources = [], [], []
        for uid, slices in series.items():
            slices.sort(key=lambda s: (s[0], s[1]))
            planes = [self._pixels(file, dataset) for _, _, file, dataset in slices]
            for (_, _, file, _), plane in zip(slices, planes):
                if plane.shape != planes[0].shape:
                    raise DataError(f"{file}: slice shape {plane.shape} differs from {slices[0][1]} {planes[0].shape} in the same series")
            volume = np.stack(planes)
            scaled = min_max_scale(volume, slices[0][2])
            if str(getattr(slices[0][3], "PhotometricInterpretation", "")) == "MONOCHROME1":
                scaled = 1.0 - scaled
            images.append(scaled[:, None] if scaled.ndim == 3 else np.moveaxis(scaled, -1, 1))
            patient = str(getattr(slices[0][3], "PatientID", "") or "")
            if not patient:
                raise DataError(f"{slices[0][2]}: no PatientID; privmed needs it to group slices by patient")
            subjects += [patient] * len(slices)
            sources += [f"{patient}/{uid}"] * len(slices)
        shapes = {im.shape[1:] for im in images}
        if len(shapes) > 1:
            raise DataError(f"{path}: the series have different slice shapes {sorted(shapes)}; resample them first")
        return ImageDataset(
            images=np.concatenate(images),
            subjects=np.array(subjects),
            sources=np.array(sources),
            name=path.resolve().name if path.is_dir() else path.stem,
            record_kind="slice",
            subjects_known=True,
            metadata={"format": self.name, "split": split, "series": len(series)},
        )

    @staticmethod
    def _pixels(file: Path, dataset: "Dataset") -> np.ndarray:
        from pydicom.pixels import apply_modality_lut

        try:
            pixels = dataset.pixel_array
        except Exception as exc:  # missing decoder, truncated pixel data
            raise DataError(f"{file}: cannot decode the pixel data ({exc})") from None
        if pixels.ndim == 3 and int(getattr(dataset, "SamplesPerPixel", 1)) == 1:
            raise DataError(f"{file}: multi-frame DICOM files are not supported; export one slice per file")
        return np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
