"""Patch extraction: counts, label-centred half, field of view, no reused centre, reproducibility."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from privmed.data import extract_patches, load
from privmed.data.patches import max_patches_per_subject, sample_patch_centres
from privmed.data.phantom import make_vessel_phantom
from privmed.errors import DataError


@pytest.fixture(scope="module")
def two_images_per_subject():
    data = make_vessel_phantom(6, size=48, seed=2)
    subjects = np.array(["a", "a", "b", "b", "c", "c"])
    return replace(data, subjects=subjects)


def test_patch_properties(two_images_per_subject) -> None:
    data, k, size = two_images_per_subject, 40, 9
    centres = sample_patch_centres(data, size, k, seed=0)
    patches = extract_patches(data, size, k, seed=0)
    assert len(patches) == 3 * k and patches.images.shape == (3 * k, 1, size, size)
    assert patches.record_kind == "patch"
    assert [int((patches.subjects == s).sum()) for s in "abc"] == [k, k, k]
    assert (data.subjects[centres[:, 0]] == patches.subjects).all()
    assert (data.sources[centres[:, 0]] == patches.sources).all()
    on_label = data.segmentations[centres[:, 0], 0, centres[:, 1], centres[:, 2]].reshape(3, k)
    assert on_label[:, : k // 2].all()
    assert data.masks[centres[:, 0], 0, centres[:, 1], centres[:, 2]].all()
    assert len({tuple(c) for c in centres}) == len(centres)
    half = size // 2
    assert centres[:, 1:].min() >= half and centres[:, 1:].max() <= 48 - size + half
    for i, (record, row, col) in enumerate(centres[:5]):
        window = np.s_[row - half : row - half + size, col - half : col - half + size]
        assert np.array_equal(patches.images[i, 0], data.images[record, 0][window])
        assert np.array_equal(patches.segmentations[i, 0], data.segmentations[record, 0][window])


def test_reproducible_by_seed(two_images_per_subject) -> None:
    first = extract_patches(two_images_per_subject, 8, 10, seed=7)
    assert first.fingerprint() == extract_patches(two_images_per_subject, 8, 10, seed=7).fingerprint()
    assert first.fingerprint() != extract_patches(two_images_per_subject, 8, 10, seed=8).fingerprint()


def test_too_few_candidates_names_the_subject(two_images_per_subject) -> None:
    with pytest.raises(DataError, match="subject a: .* free patch centres"):
        extract_patches(two_images_per_subject, 40, 500, seed=0, positive_fraction=0.0)
    empty_labels = replace(two_images_per_subject, segmentations=np.zeros_like(two_images_per_subject.segmentations))
    with pytest.raises(DataError, match="subject a: 0 label-positive"):
        extract_patches(empty_labels, 8, 4, seed=0)


def test_unlabelled_data_needs_positive_fraction_zero() -> None:
    data = replace(make_vessel_phantom(2, size=32, seed=0), segmentations=None)
    with pytest.raises(DataError, match="positive_fraction=0"):
        extract_patches(data, 8, 4, seed=0)
    assert len(extract_patches(data, 8, 4, seed=0, positive_fraction=0.0)) == 8


def test_max_patches_per_subject_is_exactly_what_every_subject_can_supply() -> None:
    data = load("phantom:train", n=4, size=64)
    k = max_patches_per_subject(data, 32)
    assert len(extract_patches(data, 32, k, seed=0)) == 4 * k
    with pytest.raises(DataError, match="needed"):
        extract_patches(data, 32, k + 1, seed=0)


def test_with_replacement_every_subject_gives_exactly_k_patches() -> None:
    """Finding 4: the count per subject is public; a short subject is sampled with replacement, not shrinking K for all."""
    data = load("phantom:train", n=4, size=64)
    k = max_patches_per_subject(data, 32) + 50
    patches = extract_patches(data, 32, k, seed=0, with_replacement=True)
    _, counts = np.unique(patches.subjects, return_counts=True)
    assert counts.tolist() == [k] * 4
    no_vessels = replace(data, segmentations=np.zeros_like(data.segmentations))
    assert len(extract_patches(no_vessels, 32, 10, seed=0, with_replacement=True)) == 40
