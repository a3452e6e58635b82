"""One dataset type for every reader, writer, method and evaluation."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from privmed.errors import DataError

GROUPINGS = ("record", "image", "patient")
"""How records group into privacy units (the values of :class:`privmed.privacy.units.PrivacyUnit`)."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images with optional segmentation labels, class labels and field-of-view masks.

    Arrays are indexed by record along the first axis:

    - ``images``: float32, shape (N, C, *spatial) with 2 or 3 spatial axes, values in [0, 1].
    - ``segmentations``: uint8 in {0, 1}, shape (N, 1, *spatial), or None.
    - ``labels``: int64 class indices, shape (N,), or None; ``class_names`` names them.
    - ``masks``: uint8 in {0, 1} field-of-view masks, shape (N, 1, *spatial), or None.
    - ``subjects``: str, shape (N,): the patient each record belongs to (the unit of patient-level DP).
    - ``sources``: str, shape (N,): the source image each record comes from (the unit of image-level DP).

    ``record_kind`` says what one record is ("image", "patch", "slice", "volume"); it names the record
    unit in privacy reports. ``subjects_known`` is False when the format carries no patient id and one
    patient per image is assumed (reports then warn that patient-level claims rest on that assumption).
    """

    images: np.ndarray
    subjects: np.ndarray
    sources: np.ndarray
    segmentations: np.ndarray | None = None
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    name: str = "dataset"
    record_kind: str = "image"
    subjects_known: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim not in (4, 5):
            raise DataError(f"{self.name}: images must have shape (N, C, H, W) or (N, C, D, H, W), got {images.shape}")
        if images.dtype != np.float32:
            images = images.astype(np.float32)
        if images.size and (not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0):
            raise DataError(f"{self.name}: image values must be finite and in [0, 1]")
        object.__setattr__(self, "images", images)
        n = images.shape[0]
        object.__setattr__(self, "subjects", self._strings(self.subjects, "subjects", n))
        object.__setattr__(self, "sources", self._strings(self.sources, "sources", n))
        for attr in ("segmentations", "masks"):
            object.__setattr__(self, attr, self._binary(getattr(self, attr), attr, images.shape))
        if self.labels is not None:
            labels = np.asarray(self.labels).reshape(-1)
            if labels.shape[0] != n:
                raise DataError(f"{self.name}: {labels.shape[0]} class labels for {n} images")
            if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
                raise DataError(f"{self.name}: class labels must be non-negative integers")
            object.__setattr__(self, "labels", labels.astype(np.int64))
            if self.class_names is not None and labels.size and labels.max() >= len(self.class_names):
                raise DataError(f"{self.name}: class label {labels.max()} has no name in {self.class_names}")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def _strings(self, values: Any, attr: str, n: int) -> np.ndarray:
        array = np.asarray(values).astype(str).reshape(-1)
        if array.shape[0] != n:
            raise DataError(f"{self.name}: {array.shape[0]} {attr} for {n} images")
        return array

    def _binary(self, values: np.ndarray | None, attr: str, image_shape: tuple[int, ...]) -> np.ndarray | None:
        if values is None:
            return None
        array = np.asarray(values)
        expected = (image_shape[0], 1, *image_shape[2:])
        if array.shape != expected:
            raise DataError(f"{self.name}: {attr} have shape {array.shape}, images need {expected}")
        if array.size and not ((array == 0) | (array == 1)).all():  # cheaper than np.unique on many patches
            raise DataError(f"{self.name}: {attr} must be binary (0/1); binarize with > 0 before loading")
        return array.astype(np.uint8)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.images.shape[2:])

    @property
    def n_classes(self) -> int:
        """Number of classes (from ``class_names`` if given, else the largest label + 1; 0 if unlabelled)."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if self.labels is not None and self.labels.size else 0

    def unit_ids(self, unit: str) -> np.ndarray:
        """Integer group id per record for the privacy unit (0..U-1, in order of first appearance).

        ``unit`` is "record", "image" or "patient" (a :class:`privmed.privacy.units.PrivacyUnit` is one of these strings).
        """
        grouping = str(getattr(unit, "value", unit))
        if grouping not in GROUPINGS:
            raise DataError(f"unknown privacy unit {unit!r}: use one of {', '.join(GROUPINGS)}")
        if grouping == "record":
            return np.arange(len(self), dtype=np.int64)
        keys = self.sources if grouping == "image" else self.subjects
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))
        return order[inverse].astype(np.int64)

    def n_units(self, unit: str) -> int:
        """How many distinct privacy units the dataset holds."""
        ids = self.unit_ids(unit)
        return int(ids.max()) + 1 if ids.size else 0

    def subset(self, indices: Any) -> "ImageDataset":
        """The records at ``indices`` (an index array or boolean mask), metadata kept."""
        idx = np.asarray(indices)

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[idx]

        return replace(
            self,
            images=self.images[idx],
            subjects=self.subjects[idx],
            sources=self.sources[idx],
            segmentations=take(self.segmentations),
            labels=take(self.labels),
            masks=take(self.masks),
        )

    def fingerprint(self, salt: bytes = b"") -> str:
        """A content hash (images, labels, subjects): HMAC-SHA256 keyed by ``salt`` when one is given.

        The budget ledger keys datasets by the salted form (its salt is secret), so the hash cannot
        serve as a membership oracle; an unsalted fingerprint must never be published.
        """
        digest = hmac.new(salt, digestmod=hashlib.sha256) if salt else hashlib.sha256()
        for array in (self.images, self.segmentations, self.labels, self.subjects):
            if array is not None:
                digest.update(str(array.shape).encode())
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Counts and shapes for ``privmed data info``."""
        info: dict[str, Any] = {
            "name": self.name,
            "records": len(self),
            "record_kind": self.record_kind,
            "channels": self.n_channels,
            "spatial_shape": list(self.spatial_shape),
            "subjects": int(np.unique(self.subjects).size),
            "subjects_known": self.subjects_known,
            "source_images": int(np.unique(self.sources).size),
            "has_segmentations": self.segmentations is not None,
            "has_masks": self.masks is not None,
            "has_labels": self.labels is not None,
        }
        if self.segmentations is not None:
            inside = self.masks.astype(bool) if self.masks is not None else np.ones_like(self.segmentations, bool)
            info["label_fraction"] = float(self.segmentations[inside].mean()) if inside.any() else 0.0
        if self.labels is not None:
            counts = np.bincount(self.labels, minlength=self.n_classes)
            names = self.class_names or tuple(str(i) for i in range(len(counts)))
            info["classes"] = {name: int(c) for name, c in zip(names, counts)}
        return info
