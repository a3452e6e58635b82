"""MedMNIST ``.npz`` files: ``{train,val,test}_images`` and ``{train,val,test}_labels``.

2D files hold gray (N, H, W) or RGB (N, H, W, 3) uint8 images; 3D files (stem ending in ``3d``)
hold (N, D, H, W) volumes. The format carries no patient ids: each image is assumed to be its own
patient (``subjects_known=False``; subject = source = ``"{name}:{split}:{index}"``).

Class names: a ``class_names`` array in the file wins; otherwise the known names for the file stem
(from the MedMNIST v2 dataset descriptions); otherwise none, so classes show as "0", "1", ...
PneumoniaMNIST: 0 = normal, 1 = pneumonia.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.data.readers.base import Reader, to_unit_range
from privmed.data.readers.npz_common import npz_keys, open_npz, read_array
from privmed.errors import DataError

KNOWN_CLASS_NAMES = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal_or_benign"),
}
_SPLIT_ORDER = ("train", "val", "test")


class MedMNISTReader(Reader):
    """MedMNIST-style multi-split ``.npz`` archives."""

    name = "medmnist"

    def can_read(self, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() == ".npz"):
            return False
        keys = npz_keys(path)
        return "images" not in keys and any(k.endswith("_images") for k in keys)

    def splits(self, path: Path) -> list[str]:
        found = [k[: -len("_images")] for k in npz_keys(path) if k.endswith("_images")]
        return sorted(found, key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s))

    def read(self, path: Path, split: str) -> ImageDataset:
        name = path.name[: -len(".npz")]
        with open_npz(path) as archive:
            raw = read_array(archive, f"{split}_images", path)
            labels = read_array(archive, f"{split}_labels", path) if f"{split}_labels" in archive.files else None
            file_names = read_array(archive, "class_names", path) if "class_names" in archive.files else None
        images = self._channels_first(raw, name, path)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 2 and labels.shape[1] != 1:
                raise DataError(f"{path}: {split}_labels has {labels.shape[1]} columns (multi-label); privmed reads one class per image")
            labels = labels.reshape(-1)
            if labels.shape[0] != images.shape[0]:
                raise DataError(f"{path}: {labels.shape[0]} labels for {images.shape[0]} images in split {split!r}")
        class_names = tuple(str(c) for c in file_names) if file_names is not None else KNOWN_CLASS_NAMES.get(name.lower())
        ids = np.array([f"{name}:{split}:{i}" for i in range(images.shape[0])])
        return ImageDataset(
            images=images,
            labels=labels,
            class_names=class_names if labels is not None else None,
            subjects=ids,
            sources=ids,
            name=name,
            record_kind="image",
            subjects_known=False,
            metadata={"format": self.name, "split": split},
        )

    @staticmethod
    def _channels_first(raw: np.ndarray, name: str, path: Path) -> np.ndarray:
        if raw.ndim == 3:
            arranged = raw[:, None]
        elif raw.ndim == 4 and name.lower().endswith("3d"):
            arranged = raw[:, None]
        elif raw.ndim == 4 and raw.shape[-1] in (1, 3):
            arranged = np.moveaxis(raw, -1, 1)
        else:
            raise DataError(f"{path}: images of shape {raw.shape} are neither (N, H, W), (N, H, W, 3) nor a 3D MedMNIST file")
        return to_unit_range(arranged, path)
