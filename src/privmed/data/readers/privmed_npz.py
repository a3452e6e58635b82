"""privmed's own ``.npz``: what ``save(format="npz")`` writes, lossless.

Arrays: ``images`` (N, C, *spatial), float32 in [0, 1] or uint8 (divided by 255); optional
``labels``, ``segmentations``, ``masks`` (binarized), ``subjects``, ``sources``; and ``metadata``,
a JSON string with ``name``, ``class_names``, ``record_kind``, ``subjects_known`` and extra fields.
Without ``subjects`` each record is assumed to be its own patient (``subjects_known=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.data.readers.base import ALL_SPLIT, Reader, binarize, to_unit_range
from privmed.data.readers.npz_common import npz_keys, open_npz, read_array
from privmed.errors import DataError


class PrivmedNpzReader(Reader):
    """Single-split ``.npz`` files with an ``images`` array."""

    name = "privmed-npz"

    def can_read(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".npz" and "images" in npz_keys(path)

    def splits(self, path: Path) -> list[str]:
        return [ALL_SPLIT]

    def read(self, path: Path, split: str) -> ImageDataset:
        with open_npz(path) as archive:
            arrays = {key: read_array(archive, key, path) for key in archive.files}
        info = self._metadata(arrays.pop("metadata", None), path)
        images = arrays["images"]
        if images.ndim not in (4, 5):
            raise DataError(f"{path}: images must have shape (N, C, H, W) or (N, C, D, H, W), got {images.shape}")
        n = images.shape[0]
        name = str(info.get("name") or path.name[: -len(".npz")])
        subjects = arrays.get("subjects")
        fallback_ids = np.array([f"{name}:{i}" for i in range(n)])
        binary = {key: binarize(arrays[key], path, key[:-1]) if key in arrays else None for key in ("segmentations", "masks")}
        class_names = info.get("class_names")
        return ImageDataset(
            images=to_unit_range(images, path),
            labels=arrays.get("labels"),
            segmentations=binary["segmentations"],
            masks=binary["masks"],
            subjects=subjects if subjects is not None else fallback_ids,
            sources=arrays.get("sources", subjects if subjects is not None else fallback_ids),
            class_names=tuple(class_names) if class_names else None,
            name=name,
            record_kind=str(info.get("record_kind", "image")),
            subjects_known=bool(info.get("subjects_known", subjects is not None)),
            metadata={**info.get("metadata", {}), "format": self.name, "split": split},
        )

    @staticmethod
    def _metadata(raw: np.ndarray | None, path: Path) -> dict:
        if raw is None:
            return {}
        try:
            info = json.loads(str(raw))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: the metadata entry is not valid JSON ({exc})") from None
        if not isinstance(info, dict):
            raise DataError(f"{path}: the metadata entry must be a JSON object")
        return info
