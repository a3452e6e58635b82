"""Folders of 2D image files: the DRIVE layout, and the PNG folders ``save(format="png")`` writes.

Layout: ``ROOT/images/`` (one split, named 'all') or ``ROOT/<split>/images/`` (DRIVE: ``training``,
``test``; ``train`` is accepted for ``training`` and vice versa), or image files directly in ``ROOT``. Beside ``images/`` an optional
segmentation-label folder (the first of ``1st_manual``, ``labels``, ``label``, ``manual``,
``segmentations``, or the one named by ``label_folder=``, e.g. DRIVE's ``2nd_manual``) and an
optional field-of-view mask folder (``mask``/``masks``). Label and mask files are matched to images
by name stem first: the image's stem, alone or followed by a suffix that starts with ``_``, ``-`` or
``.`` (``01_left.tif`` <-> ``01_left_manual1.png``, ``im0001.ppm`` <-> ``im0001.ah.ppm``, ``Image_01L``
<-> ``Image_01L_1stHO``; the longest image stem wins). An image no file matches that way is matched by
the first number in the names (DRIVE: ``21_training.tif`` <-> ``21_manual1.gif``) when that number is
unique among the images and the unmatched files.
Subject and source of a record are that number as written (``"01"``) unless a ``records.csv``
says otherwise (files that share a number keep it as subject, one patient, and their stems as sources); DRIVE has one image per patient, so ``subjects_known`` is True.
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
    strip_suffixes,
    to_unit_range,
)
from privmed.errors import DataError

LABEL_FOLDERS = ("1st_manual", "labels", "label", "manual", "segmentations")
MASK_FOLDERS = ("mask", "masks")


def image_files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files in ``folder`` with one of ``suffixes``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))


_STEM_SEPARATORS = ("_", "-", ".")


def _stem_owner(candidate: str, image_stems: list[str]) -> int | None:
    """Index of the longest image stem that ``candidate`` equals or extends with a separated suffix."""
    best: int | None = None
    for i, stem in enumerate(image_stems):
        extends = candidate == stem or any(candidate.startswith(stem + sep) for sep in _STEM_SEPARATORS)
        if extends and (best is None or len(stem) > len(image_stems[best])):
            best = i
    return best


def match_files(images: list[Path], candidates: list[Path], folder: Path, what: str) -> list[Path]:
    """The file of ``candidates`` that belongs to each image (by stem, else by a unique first number).

    A DataError names the image when no file matches, or when the match is ambiguous.
    """
    image_stems = [strip_suffixes(p.name).lower() for p in images]
    owned: dict[int, list[Path]] = {}
    for candidate in candidates:
        owner = _stem_owner(strip_suffixes(candidate.name).lower(), image_stems)
        if owner is not None:
            owned.setdefault(owner, []).append(candidate)
    unowned = [c for c in candidates if not any(c in files for files in owned.values())]
    matched = []
    for i, image in enumerate(images):
        files = owned.get(i, [])
        if len(files) > 1:
            raise DataError(f"{folder}: several {what} files match the image {image.name}: {', '.join(f.name for f in files)}")
        if files:
            matched.append(files[0])
            continue
        key = file_key(image)
        same_number = [c for c in unowned if file_key(c) == key]
        images_with_key = [p.name for j, p in enumerate(images) if file_key(p) == key and j not in owned]
        if not same_number:
            raise DataError(f"{folder}: no {what} file for the image {image.name}")
        if len(same_number) > 1 or len(images_with_key) > 1:
            files_named = ", ".join(sorted({*images_with_key, *(c.name for c in same_number)}))
            raise DataError(
                f"{folder}: {files_named} share the number {key} and their stems do not match: cannot tell which "
                f"{what} belongs to {image.name} (name it after the image, e.g. {image.stem}_{what}{same_number[0].suffix})"
            )
        matched.append(same_number[0])
    return matched


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
            if len(set(sources)) < len(files):
                # Files that share a number (left and right eye) are separate images of, conservatively, one patient.
                sources = np.array([strip_suffixes(p.name) for p in files])
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
        out = np.empty((image_shape[0], 1, *image_shape[2:]), dtype=np.uint8)
        for i, (image_path, match) in enumerate(zip(files, match_files(files, image_files(folder), folder, what))):
            pixels = read_image_file(match, label=True)
            if pixels.shape != tuple(image_shape[2:]):
                raise DataError(f"{match}: {what} size {pixels.shape} does not match the image {image_path.name} {tuple(image_shape[2:])}")
            out[i, 0] = binarize(pixels, match, what)
        return out
