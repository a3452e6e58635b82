"""NIfTI volumes (``.nii``, ``.nii.gz``, read with nibabel): one file, or a folder of them.

Layouts: a single file (a sibling ``<stem>_seg``/``_label``/``_labels`` file is its label, ``<stem>_mask``
its mask); a flat folder (files with those suffixes are labels/masks of the file with the bare stem);
or ``images/`` beside ``labels/`` (or another label folder name) and ``masks/``, also under split
subfolders. Labels are matched to images by stem.

Records: by default 2D axial slices, ``data[:, :, k]`` as stored, no reorientation
(``record_kind="slice"``); with ``volumes=True`` one 3D record (C, Z, X, Y) per file. A 4D file's
last axis is channels. Intensities are min-max scaled to [0, 1] per volume, since MR/CT values have
no fixed range; folders that privmed wrote (``dataset.json`` with ``"intensity": "unit"``) are
already in [0, 1] and kept as stored. Subject = source = the volume's file stem, and
``subjects_known`` is False (a file name is not proof of a distinct patient) unless a
``records.csv`` gives the ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.data.manifest import read_manifest
from privmed.data.readers.base import (
    ALL_SPLIT,
    Reader,
    binarize,
    first_existing,
    min_max_scale,
    named_subfolder,
    split_folders,
    strip_suffixes,
    to_unit_range,
)
from privmed.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
LABEL_SUFFIXES = ("_seg", "_label", "_labels")
MASK_SUFFIXES = ("_mask",)
LABEL_FOLDERS = ("labels", "label", "segmentations")
MASK_FOLDERS = ("masks", "mask")


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_nifti(p))


def _role(path: Path) -> tuple[str, str]:
    """('image' | 'label' | 'mask', the stem of the image it belongs to)."""
    stem = strip_suffixes(path.name)
    for role, suffixes in (("label", LABEL_SUFFIXES), ("mask", MASK_SUFFIXES)):
        for suffix in suffixes:
            if stem.lower().endswith(suffix):
                return role, stem[: -len(suffix)]
    return "image", stem


def _by_image_stem(folder: Path | None) -> dict[str, Path] | None:
    """The NIfTI files of a label or mask folder keyed by the stem of their image (suffix removed)."""
    return {_role(p)[1]: p for p in _nifti_files(folder)} if folder else None


def read_volume(path: Path) -> np.ndarray:
    """The voxel array of a NIfTI file as (X, Y, Z[, C]); 2D files get Z = 1."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors...
        raise DataError(f"{path}: cannot read the NIfTI file ({exc})") from None
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0]
    if data.ndim not in (3, 4):
        raise DataError(f"{path}: expected a 2D, 3D or 4D (channels last) volume, got shape {data.shape}")
    return data


class NiftiReader(Reader):
    """NIfTI files and folders of them."""

    name = "nifti"

    def can_read(self, path: Path) -> bool:
        if is_nifti(path):
            return True
        if not path.is_dir():
            return False
        folders = split_folders(path)
        if folders:
            return any(_nifti_files(folder / "images") for folder in folders.values())
        return bool(_nifti_files(path))

    def splits(self, path: Path) -> list[str]:
        return list(split_folders(path)) if path.is_dir() and split_folders(path) else [ALL_SPLIT]

    def read(self, path: Path, split: str, *, volumes: bool | None = None, label_folder: str | None = None) -> ImageDataset:
        images, labels, masks, folder = self._layout(path, split, label_folder)
        if not images:
            raise DataError(f"{folder}: no NIfTI files (.nii, .nii.gz)")
        manifest = read_manifest(folder) if path.is_dir() else None
        info = manifest.info if manifest else {}
        as_volumes = bool(info.get("volumes", False)) if volumes is None else volumes
        unit_range = info.get("intensity") == "unit"

        records, segmentations, fovs, subjects = [], [], [], []
        for stem, image_path in images.items():
            volume = read_volume(image_path)
            volume = to_unit_range(volume, image_path) if unit_range else min_max_scale(volume, image_path)
            volume = volume if volume.ndim == 4 else volume[..., None]
            spatial = volume.shape[:3]
            if as_volumes:
                records.append(np.moveaxis(volume, (3, 2), (0, 1)))  # (X, Y, Z, C) -> (C, Z, X, Y)
            else:
                records += [np.moveaxis(volume[:, :, k], -1, 0) for k in range(spatial[2])]
            subjects += [stem] * (1 if as_volumes else spatial[2])
            for store, partners, what in ((segmentations, labels, "label"), (fovs, masks, "mask")):
                if partners is None:
                    continue
                partner = partners.get(stem)
                if partner is None:
                    raise DataError(f"{image_path}: no {what} volume for it (expected one named like {stem}_{'seg' if what == 'label' else 'mask'}.nii.gz)")
                binary = self._binary_volume(partner, spatial, what)
                store += [np.moveaxis(binary, 2, 0)[None]] if as_volumes else [binary[None, :, :, k] for k in range(spatial[2])]
        shapes = {r.shape for r in records}
        if len(shapes) > 1:
            raise DataError(f"{folder}: the volumes have different shapes {sorted(shapes)}; resample them to one grid first")

        ids = np.array(subjects)
        sources = ids
        if manifest:
            if len(records) != len(images):
                raise DataError(f"{folder}: records.csv lists one record per file, but the files hold {len(records)} records")
            rows = [manifest.record(p.name, folder) for p in images.values()]
            ids = np.array([r["subject"] for r in rows])
            sources = np.array([r["source"] for r in rows])
        class_labels = manifest.labels([p.name for p in images.values()], folder) if manifest else None
        class_names = info.get("class_names")
        return ImageDataset(
            images=np.stack(records),
            segmentations=np.stack(segmentations) if labels is not None else None,
            masks=np.stack(fovs) if masks is not None else None,
            labels=class_labels,
            class_names=tuple(class_names) if class_names else None,
            subjects=ids,
            sources=sources,
            name=str(info.get("name") or strip_suffixes(path.resolve().name)),
            record_kind=str(info.get("record_kind") or ("volume" if as_volumes else "slice")),
            subjects_known=bool(info.get("subjects_known", False)),
            metadata={"format": self.name, "split": split, "intensity": "as stored" if unit_range else "min-max per volume"},
        )

    @staticmethod
    def _binary_volume(path: Path, spatial: tuple[int, ...], what: str) -> np.ndarray:
        volume = read_volume(path)
        if volume.ndim == 4:
            raise DataError(f"{path}: a {what} volume must have one channel, got shape {volume.shape}")
        if volume.shape != spatial:
            raise DataError(f"{path}: {what} shape {volume.shape} does not match its image {spatial}")
        return binarize(volume, path, what)

    @staticmethod
    def _layout(path: Path, split: str, label_folder: str | None) -> tuple[dict[str, Path], dict[str, Path] | None, dict[str, Path] | None, Path]:
        """(images, labels, masks) keyed by image stem, and the folder they came from."""
        if is_nifti(path):
            files, folder = [path], path.parent
            siblings = {p for p in _nifti_files(folder) if _role(p)[1] == _role(path)[1] and _role(p)[0] != "image"}
            files += sorted(siblings)
        elif split_folders(path):
            folder = split_folders(path)[split]
            images = {strip_suffixes(p.name): p for p in _nifti_files(folder / "images")}
            labels_dir = named_subfolder(folder, label_folder) if label_folder else first_existing(folder, LABEL_FOLDERS)
            masks_dir = first_existing(folder, MASK_FOLDERS)
            return images, _by_image_stem(labels_dir), _by_image_stem(masks_dir), folder
        else:
            files, folder = _nifti_files(path), path
        grouped: dict[str, dict[str, Path]] = {"image": {}, "label": {}, "mask": {}}
        for file in files:
            role, stem = _role(file)
            grouped[role][stem] = file
        return grouped["image"], grouped["label"] or None, grouped["mask"] or None, folder
