"""Writers: each format reads back, and a failed or refused save leaves nothing behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from privmed.data import load, save
from privmed.data.phantom import make_class_phantom, make_vessel_phantom
from privmed.errors import DataError


@pytest.fixture(scope="module")
def vessels():
    return replace(make_vessel_phantom(3, size=24, seed=4), record_kind="patch", subjects_known=False)


@pytest.mark.parametrize(("fmt", "target", "tolerance"), [("npz", "out.npz", 0.0), ("png", "out", 0.5 / 255 + 1e-6), ("nifti", "out", 0.0)])
def test_round_trip(tmp_path: Path, vessels, fmt: str, target: str, tolerance: float) -> None:
    path = save(vessels, tmp_path / target, format=fmt)
    back = load(str(path))
    assert np.abs(back.images - vessels.images).max() <= tolerance
    for attr in ("segmentations", "masks", "subjects", "sources"):
        assert np.array_equal(getattr(back, attr), getattr(vessels, attr)), attr
    assert (back.name, back.record_kind, back.subjects_known) == ("phantom", "patch", False)


@pytest.mark.parametrize("fmt", ["npz", "png", "nifti"])
def test_round_trip_keeps_class_labels_and_names(tmp_path: Path, fmt: str) -> None:
    data = make_class_phantom(6, size=8, seed=1)
    back = load(str(save(data, tmp_path / ("c.npz" if fmt == "npz" else "c"), format=fmt)))
    assert back.labels.tolist() == data.labels.tolist() and back.class_names == ("normal", "abnormal")


def test_png_writes_rgb_files_and_records(tmp_path: Path) -> None:
    rgb = replace(make_vessel_phantom(2, size=16, seed=0), images=np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32))
    folder = save(rgb, tmp_path / "rgb", format="png")
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["0001.png", "0002.png"]
    assert (folder / "records.csv").read_text().splitlines()[0] == "file,subject,source,label"
    assert load(str(folder)).images.shape == (2, 3, 16, 16)


def test_nifti_round_trip_of_3d_records(tmp_path: Path) -> None:
    base = make_vessel_phantom(2, size=16, seed=0)
    volumes = replace(base, images=np.random.default_rng(1).random((2, 1, 3, 16, 16), dtype=np.float32), segmentations=None, masks=None)
    back = load(str(save(volumes, tmp_path / "vol", format="nifti")))
    assert back.images.shape == (2, 1, 3, 16, 16) and np.array_equal(back.images, volumes.images)


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, vessels) -> None:
    target = save(vessels, tmp_path / "out", format="png")
    before = sorted(p.name for p in (target / "images").iterdir())
    with pytest.raises(DataError, match="already exists"):
        save(vessels.subset([0]), target, format="png")
    assert sorted(p.name for p in (target / "images").iterdir()) == before
    save(vessels.subset([0]), target, format="png", overwrite=True)
    assert len(load(str(target))) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_save_leaves_nothing(tmp_path: Path, vessels) -> None:
    volumes = replace(vessels, images=np.zeros((3, 1, 2, 24, 24), np.float32), segmentations=None, masks=None)
    with pytest.raises(DataError, match="PNG holds 2D records"):
        save(volumes, tmp_path / "png", format="png")
    with pytest.raises(DataError, match="unknown format 'jpeg'"):
        save(vessels, tmp_path / "x", format="jpeg")
    four_channels = replace(vessels, images=np.zeros((3, 4, 24, 24), np.float32))
    with pytest.raises(DataError, match="1 or 3 channels"):
        save(four_channels, tmp_path / "four", format="png")
    assert list(tmp_path.iterdir()) == []


def test_error_while_writing_removes_the_staging_folder(tmp_path: Path, vessels, monkeypatch: pytest.MonkeyPatch) -> None:
    import privmed.data.writers as writers

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writers, "records_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        save(vessels, tmp_path / "out", format="png")
    assert list(tmp_path.iterdir()) == []
