"""The public data in ../shared/data reads as its README describes (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privmed.data import load, load_splits

pytestmark = pytest.mark.shared_data


def test_pneumoniamnist_counts_and_classes(shared_data: Path) -> None:
    splits = load_splits(str(shared_data / "pneumoniamnist.npz"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 4708, "val": 524, "test": 624}
    train = splits["train"]
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == np.float32
    assert train.summary()["classes"] == {"normal": 1214, "pneumonia": 3494}


def test_drive_training_and_test_with_labels_masks_and_second_observer(shared_data: Path) -> None:
    splits = load_splits(str(shared_data / "drive"))
    assert {k: len(v) for k, v in splits.items()} == {"training": 20, "test": 20}
    for data in splits.values():
        assert data.images.shape[1:] == (3, 584, 565)
        assert data.segmentations is not None and data.masks is not None
        assert 0.08 < data.summary()["label_fraction"] < 0.2
    second = load(str(shared_data / "drive") + ":test", label_folder="2nd_manual")
    agreement = (second.segmentations == splits["test"].segmentations)[splits["test"].masks.astype(bool)].mean()
    assert 0.9 < agreement < 1.0
