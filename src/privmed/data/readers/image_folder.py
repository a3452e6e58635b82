"""Folders of 2D image files: the DRIVE layout, and the PNG folders ``save(format="png")`` writes.

Layout: ``ROOT/images/`` (one split, named 'all') or ``ROOT/<split>/images/`` (DRIVE: ``training``,
``test``; ``train`` is accepted for ``training`` and vice versa), or image files directly in ``ROOT``. Beside ``images/`` an optional
segmentation-label folder (the first of ``1st_manual``, ``labels``, ``label``, ``manual``,
``segmentations``, or the one named by ``label_folder=``, e.g. DRIVE's ``2nd_manual``) and an
optional field-of-view mask folder (``mask``/``masks``). Label and mask files are matched to images
by the first number in the file name (``21_training.tif`` <-> ``21_manual1.gif``), else by stem.
Subject and source of a record are that number as written (``"01"``) unless a ``records.csv``
says otherwise; DRIVE has one image per patient, so ``subjects_known`` is True.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.data.manifest import read_manifest
from privmed.data.readers.base import (
    ALL_SPLIT,
    IMAGE_SUFFIXES,
    Reader,
    binarize,
    channels_first,
    file_key,
    first_existing,
    named_subfolder,
    read_image_file,
    record_id,
    split_folders,
    to_unit_range,
)
from privmed.errors import DataError

LABEL_FOLDERS = ("1st_manual", "labels", "label", "manual", "segmentations")
MASK_FOLDERS = ("mask", "masks")


def image_files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files in ``folder`` with one of ``suffixes``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))


def files_by_key(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Files of ``folder`` indexed by their matching key; a DataError if two share one."""
    keyed: dict[str, Path] = {}
    for path in image_files(folder, suffixes):
        key = file_key(path)
        if key in keyed:
            raise DataError(f"{folder}: {keyed[key].name} and {path.name} share the number {key}; cannot match files")
        keyed[key] = path
    return keyed


class ImageFolderReader(Reader):
    """DRIVE-style folders of PNG/TIFF/GIF/JPEG/BMP images with optional labels and masks."""

    name = "image-folder"

    def can_read(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        folders = split_folders(path)
        if folders:
            return any(image_files(folder / "images") for folder in folders.values())
        return bool(image_files(path))

    def splits(self, path: Path) -> list[str]:
        return list(split_folders(path)) or [ALL_SPLIT]

    def read(self, path: Path, split: str, *, label_folder: str | None = None, mask_folder: str | None = None) -> ImageDataset:
        folder = split_folders(path).get(split, path)
        images_dir = folder / "images" if (folder / "images").is_dir() else folder
        files = image_files(images_dir)
        if not files:
            raise DataError(f"{images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        images = self._stack_images(files)
        labels_dir = named_subfolder(folder, label_folder) if label_folder else first_existing(folder, LABEL_FOLDERS)
        masks_dir = named_subfolder(folder, mask_folder) if mask_folder else first_existing(folder, MASK_FOLDERS)
        segmentations = self._matched_binary(files, labels_dir, images.shape, "label") if labels_dir else None
        masks = self._matched_binary(files, masks_dir, images.shape, "mask") if masks_dir else None

        manifest = read_manifest(folder)
        names = [p.name for p in files]
        info = manifest.info if manifest else {}
        if manifest:
            subjects = np.array([manifest.record(n, folder)["subject"] for n in names])
            sources = np.array([manifest.record(n, folder)["source"] for n in names])
            class_labels = manifest.labels(names, folder)
        else:
            subjects = sources = np.array([record_id(p) for p in files])
            class_labels = None
        class_names = info.get("class_names")
        return ImageDataset(
            images=images,
            segmentations=segmentations,
            masks=masks,
            labels=class_labels,
            class_names=tuple(class_names) if class_names else None,
            subjects=subjects,
            sources=sources,
            name=str(info.get("name") or path.resolve().name),
            record_kind=str(info.get("record_kind", "image")),
            subjects_known=bool(info.get("subjects_known", True)),
            metadata={
                "format": self.name,
                "split": split,
                "label_folder": labels_dir.name if labels_dir else None,
                "mask_folder": masks_dir.name if masks_dir else None,
            },
        )

    @staticmethod
    def _stack_images(files: list[Path]) -> np.ndarray:
        first = channels_first(read_image_file(files[0]))
        stacked = np.empty((len(files), *first.shape), dtype=np.float32)
        for i, path in enumerate(files):
            pixels = first if i == 0 else channels_first(read_image_file(path))
            if pixels.shape != first.shape:
                raise DataError(f"{path}: shape {pixels.shape} (channels, height, width) differs from {files[0].name} {first.shape}")
            stacked[i] = to_unit_range(pixels, path)
        return stacked

    @staticmethod
    def _matched_binary(files: list[Path], folder: Path, image_shape: tuple[int, ...], what: str) -> np.ndarray:
        keyed = files_by_key(folder)
        out = np.empty((image_shape[0], 1, *image_shape[2:]), dtype=np.uint8)
        for i, image_path in enumerate(files):
            match = keyed.get(file_key(image_path))
            if match is None:
                raise DataError(f"{folder}: no {what} file for the image {image_path.name}")
            pixels = read_image_file(match, label=True)
            if pixels.shape != tuple(image_shape[2:]):
                raise DataError(f"{match}: {what} size {pixels.shape} does not match the image {image_path.name} {tuple(image_shape[2:])}")
            out[i, 0] = binarize(pixels, match, what)
        return out
