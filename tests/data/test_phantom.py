"""The embedded phantoms: exact labels, field of view, classes, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from privmed.data import load
from privmed.data.phantom import make_class_phantom, make_vessel_phantom
from privmed.errors import DataError


def test_vessel_phantom_labels_are_darker_vessels_inside_the_field_of_view() -> None:
    data = make_vessel_phantom(4, size=64, seed=3)
    assert data.images.shape == (4, 1, 64, 64) and data.segmentations.shape == (4, 1, 64, 64)
    vessels, fov = data.segmentations.astype(bool), data.masks.astype(bool)
    assert not (vessels & ~fov).any()
    assert (data.images[~fov] == 0).all()
    background = fov & ~vessels
    assert data.images[vessels].mean() < data.images[background].mean() - 0.05
    assert 0.03 < vessels[fov].mean() < 0.3
    assert len(set(data.subjects)) == 4 and (data.subjects == data.sources).all()


def test_phantoms_are_reproducible_and_seed_dependent() -> None:
    first, again, other = (make_vessel_phantom(2, size=32, seed=s) for s in (5, 5, 6))
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()


def test_class_phantom_is_balanced_and_abnormal_is_brighter_in_the_lungs() -> None:
    data = make_class_phantom(200, size=28, seed=1)
    assert data.class_names == ("normal", "abnormal")
    assert np.bincount(data.labels).tolist() == [100, 100]
    centre = data.images[:, 0, 8:20, 4:24].mean(axis=(1, 2))
    assert centre[data.labels == 1].mean() > centre[data.labels == 0].mean()


def test_phantom_refs_have_disjoint_train_and_test_subjects() -> None:
    train, test = load("phantom:train"), load("phantom:test")
    assert (len(train), len(test)) == (16, 8)
    assert not set(train.subjects) & set(test.subjects)
    assert train.fingerprint() != load("phantom:test", n=16).fingerprint()
    assert load("phantom").fingerprint() == train.fingerprint()
    classes = load("phantom-classes:test", n=10, size=16)
    assert classes.images.shape == (10, 1, 16, 16) and classes.labels is not None


def test_phantom_rejects_a_too_small_size() -> None:
    with pytest.raises(DataError, match="size"):
        make_vessel_phantom(2, size=4)
