"""Patch extraction as in Kossen et al. 2022 (seed 000): K patches per patient, half on vessels.

For each subject, candidate centres are pooled over all of the subject's images. ``positive_fraction``
of the K patches are centred on label-positive pixels, the rest on random pixels inside the field of
view (the mask, or the whole image without one); no centre is drawn twice, so the two halves are
disjoint, and every patch lies fully inside its image. The same ``seed`` gives the same patches.

K is a public parameter, never read off the data. By default a subject without K distinct centres is
an error; with ``with_replacement=True`` (what DP-WGAN uses) such a subject's centres are drawn with
replacement instead (and a subject without any label-positive centre takes its label-centred share
from the field of view), so every subject gives exactly K patches whatever its images hold.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError


def _patch_shape(patch_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(int(s) for s in patch_size)
    if len(size) != 2 or min(size) < 1:
        raise DataError(f"patch_size must be a positive int or (height, width), got {patch_size!r}")
    return size  # type: ignore[return-value]


def _valid_centres(height: int, width: int, patch: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels that can centre a patch lying fully inside the image."""
    valid = np.zeros((height, width), dtype=bool)
    ph, pw = patch
    valid[ph // 2 : height - ph + ph // 2 + 1, pw // 2 : width - pw + pw // 2 + 1] = True
    return valid


def sample_patch_centres(
    data: ImageDataset,
    patch_size: int | tuple[int, int],
    patches_per_subject: int,
    seed: int,
    positive_fraction: float = 0.5,
    with_replacement: bool = False,
) -> np.ndarray:
    """Patch centres as an int64 array of (record index, row, column), grouped by subject in order of
    first appearance, each subject's label-centred patches first (``with_replacement``: see the module docstring)."""
    if len(data.spatial_shape) != 2:
        raise DataError(f"{data.name}: patches are cut from 2D images, these records are {len(data.spatial_shape)}D")
    if patches_per_subject < 1:
        raise DataError(f"patches_per_subject must be at least 1, got {patches_per_subject}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise DataError(f"positive_fraction must lie in [0, 1], got {positive_fraction}")
    patch = _patch_shape(patch_size)
    height, width = data.spatial_shape
    if patch[0] > height or patch[1] > width:
        raise DataError(f"{data.name}: patch {patch} is larger than the images {data.spatial_shape}")
    n_positive = int(round(patches_per_subject * positive_fraction))
    if n_positive and data.segmentations is None:
        raise DataError(f"{data.name}: label-centred patches need segmentations; set positive_fraction=0")
    n_random = patches_per_subject - n_positive

    valid = _valid_centres(height, width, patch)
    field = data.masks[:, 0].astype(bool) if data.masks is not None else np.ones((len(data), height, width), bool)
    unit_ids = data.unit_ids("patient")
    chosen = []
    for unit in range(int(unit_ids.max()) + 1 if len(data) else 0):
        # One stream per subject: a subject's patches depend on its own images only, never on how
        # many random draws another subject's images used up.
        rng = np.random.default_rng([seed, unit])
        records = np.flatnonzero(unit_ids == unit)
        subject = data.subjects[records[0]]
        positives = np.empty(0, dtype=np.int64)
        in_field = np.flatnonzero(field[records] & valid)
        if n_positive:
            pool = np.flatnonzero(data.segmentations[records, 0].astype(bool) & valid)
            if pool.size < n_positive and not with_replacement:
                raise DataError(f"subject {subject}: {pool.size} label-positive patch centres, {n_positive} needed")
            pool = pool if pool.size else in_field
            if not pool.size:
                raise DataError(f"subject {subject}: no patch centre lies in the field of view")
            positives = rng.choice(pool, size=n_positive, replace=pool.size < n_positive)
        pool_mask = field[records] & valid
        pool_mask.reshape(-1)[positives] = False
        pool = np.flatnonzero(pool_mask)
        if pool.size < n_random and not with_replacement:
            raise DataError(f"subject {subject}: {pool.size} free patch centres in the field of view, {n_random} needed")
        pool = pool if pool.size else in_field
        if n_random and not pool.size:
            raise DataError(f"subject {subject}: no patch centre lies in the field of view")
        randoms = rng.choice(pool, size=n_random, replace=pool.size < n_random)
        local, rows, cols = np.unravel_index(np.concatenate([positives, randoms]), (records.size, height, width))
        chosen.append(np.stack([records[local], rows, cols], axis=1))
    return np.concatenate(chosen).astype(np.int64) if chosen else np.empty((0, 3), np.int64)


def max_patches_per_subject(data: ImageDataset, patch_size: int | tuple[int, int], positive_fraction: float = 0.5) -> int:
    """The largest K that :func:`extract_patches` can cut from every subject (distinct centres, label share kept)."""
    patch = _patch_shape(patch_size)
    height, width = data.spatial_shape
    valid = _valid_centres(height, width, patch)
    field = data.masks[:, 0].astype(bool) if data.masks is not None else np.ones((len(data), height, width), bool)
    unit_ids = data.unit_ids("patient")
    best = None
    for unit in range(int(unit_ids.max()) + 1 if len(data) else 0):
        records = np.flatnonzero(unit_ids == unit)
        in_field = int((field[records] & valid).sum())
        positives = int((data.segmentations[records, 0].astype(bool) & valid).sum()) if data.segmentations is not None else 0
        k = in_field if positive_fraction == 0 else min(in_field, int((positives + 0.5) / positive_fraction) + 1)
        while k > 0 and int(round(k * positive_fraction)) > positives:
            k -= 1
        best = k if best is None else min(best, k)
    return int(best or 0)


def extract_patches(
    data: ImageDataset,
    patch_size: int | tuple[int, int],
    patches_per_subject: int,
    seed: int,
    positive_fraction: float = 0.5,
    with_replacement: bool = False,
) -> ImageDataset:
    """Cut ``patches_per_subject`` patches per subject (see the module docstring); records are patches.

    Subjects, sources (the parent image), class labels, segmentations and masks follow each patch.
    """
    centres = sample_patch_centres(data, patch_size, patches_per_subject, seed, positive_fraction, with_replacement)
    ph, pw = _patch_shape(patch_size)
    record, top, left = centres[:, 0], centres[:, 1] - ph // 2, centres[:, 2] - pw // 2

    def cut(array: np.ndarray | None) -> np.ndarray | None:
        if array is None:
            return None
        windows = np.lib.stride_tricks.sliding_window_view(array, (ph, pw), axis=(2, 3))
        return np.ascontiguousarray(windows[record, :, top, left])

    return replace(
        data,
        images=cut(data.images),
        segmentations=cut(data.segmentations),
        masks=cut(data.masks),
        labels=None if data.labels is None else data.labels[record],
        subjects=data.subjects[record],
        sources=data.sources[record],
        record_kind="patch",
        metadata={
            **data.metadata,
            "parent": data.name,
            "patch_size": [ph, pw],
            "patches_per_subject": patches_per_subject,
            "positive_fraction": positive_fraction,
            "patch_seed": seed,
            "with_replacement": with_replacement,
        },
    )
