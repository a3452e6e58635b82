"""Every reader on small generated files, and the errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from privmed.data import load, load_splits, parse_ref
from privmed.errors import DataError
from tests.data.conftest import write_image


def _medmnist(path: Path, rgb: bool = False) -> Path:
    rng = np.random.default_rng(1)
    shape = (5, 8, 8, 3) if rgb else (5, 8, 8)
    arrays = {}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape[1:]), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1))
    np.savez(path, **arrays)
    return path


def test_medmnist_splits_values_and_ids(tmp_path: Path) -> None:
    path = _medmnist(tmp_path / "pneumoniamnist.npz")
    splits = load_splits(str(path))
    assert {k: len(v) for k, v in splits.items()} == {"train": 5, "val": 2, "test": 3}
    raw = np.load(path)
    val = load(f"{path}:val")
    np.testing.assert_allclose(val.images[:, 0], raw["val_images"] / 255.0, atol=1e-7)
    assert val.labels.tolist() == raw["val_labels"].reshape(-1).tolist()
    assert val.class_names == ("normal", "pneumonia")
    assert not val.subjects_known and val.subjects[1] == "pneumoniamnist:val:1"
    assert load(str(path)).metadata["split"] == "train"


def test_medmnist_rgb_is_channels_first_and_unknown_stem_has_generic_classes(tmp_path: Path) -> None:
    data = load(str(_medmnist(tmp_path / "othermnist.npz", rgb=True)))
    assert data.images.shape == (5, 3, 8, 8)
    assert data.class_names is None and set(data.summary()["classes"]) <= {"0", "1"}


def test_unknown_split_lists_the_available_ones(tmp_path: Path) -> None:
    path = _medmnist(tmp_path / "m.npz")
    with pytest.raises(DataError, match="no split 'holdout'.*train, val, test"):
        load(f"{path}:holdout")


def test_ref_parsing_uses_the_last_colon_only_for_existing_paths(tmp_path: Path) -> None:
    path = _medmnist(tmp_path / "m.npz")
    assert parse_ref(f"{path}:test") == (str(path), "test")
    assert parse_ref("phantom-classes:train") == ("phantom-classes", "train")
    assert parse_ref("missing:test") == ("missing:test", None)
    with pytest.raises(DataError, match="no such file or folder: missing:test"):
        load("missing:test")


def test_privmed_npz_with_uint8_images_and_no_subjects(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    images = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    np.savez(path, images=images, segmentations=images > 10, metadata=json.dumps({"class_names": None, "record_kind": "patch"}))
    data = load(str(path))
    np.testing.assert_allclose(data.images, images / 255.0, atol=1e-7)
    assert data.record_kind == "patch" and not data.subjects_known and data.segmentations.sum() == 21


def test_drive_like_folder(drive_like: Path) -> None:
    splits = load_splits(str(drive_like))
    assert list(splits) == ["training", "test"]
    train = load(f"{drive_like}:train")
    assert train.images.shape == (3, 3, 12, 10)
    assert train.subjects.tolist() == ["21", "22", "23"] and train.subjects_known
    raw = np.asarray(Image.open(drive_like / "training" / "images" / "22_training.tif"))
    np.testing.assert_allclose(train.images[1], np.moveaxis(raw, -1, 0) / 255.0, atol=1e-7)
    label = np.asarray(Image.open(drive_like / "training" / "1st_manual" / "22_manual1.gif")) > 0
    assert (train.segmentations[1, 0] == label).all()
    assert train.masks[:, 0, 0].sum() == 0 and train.masks[:, 0, 5, 5].all()


def test_second_observer_reads_as_the_same_binary_label(drive_like: Path) -> None:
    first = load(f"{drive_like}:test")
    second = load(f"{drive_like}:test", label_folder="2nd_manual")
    assert second.metadata["label_folder"] == "2nd_manual"
    assert (first.segmentations == second.segmentations).all() and first.segmentations.any()
    with pytest.raises(DataError, match="3rd_manual: no such folder.*2nd_manual"):
        load(f"{drive_like}:test", label_folder="3rd_manual")
    with pytest.raises(DataError, match="unknown option volumes"):
        load(f"{drive_like}:test", volumes=True)


def test_non_binary_label_names_the_file(drive_like: Path) -> None:
    bad = drive_like / "training" / "1st_manual" / "22_manual1.gif"
    write_image(bad, np.array([[0, 128, 255] * 4] * 12, dtype=np.uint8)[:, :10])
    with pytest.raises(DataError, match=r"22_manual1.gif: a label must be binary"):
        load(f"{drive_like}:training")


def test_label_size_mismatch_names_the_file(drive_like: Path) -> None:
    write_image(drive_like / "training" / "mask" / "23_training_mask.gif", np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match=r"23_training_mask.gif: mask size \(5, 5\) does not match"):
        load(f"{drive_like}:training")


def test_corrupt_and_unknown_files(tmp_path: Path, drive_like: Path) -> None:
    (drive_like / "test" / "images" / "02_test.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="02_test.tif"):
        load(f"{drive_like}:test")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="broken.npz: unknown data format"):
        load(str(broken))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: unknown data format"):
        load(str(tmp_path / "notes.txt"))


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: the folder is empty"):
        load(str(tmp_path / "empty"))
    (tmp_path / "noimages" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="noimages: unknown data format"):
        load(str(tmp_path / "noimages"))


def _nifti(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_nifti_slices_volumes_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    volume = rng.normal(100, 30, (6, 5, 4)).astype(np.float32)
    label = (rng.random((6, 5, 4)) > 0.5).astype(np.uint8)
    _nifti(tmp_path / "study" / "images" / "case7.nii.gz", volume)
    _nifti(tmp_path / "study" / "labels" / "case7.nii.gz", label)
    _nifti(tmp_path / "study" / "images" / "case8.nii.gz", volume * 2)
    _nifti(tmp_path / "study" / "labels" / "case8.nii.gz", label)
    slices = load(str(tmp_path / "study"))
    assert slices.images.shape == (8, 1, 6, 5) and slices.record_kind == "slice"
    scaled = (volume - volume.min()) / (volume.max() - volume.min())
    np.testing.assert_allclose(slices.images[2, 0], scaled[:, :, 2], atol=1e-6)
    assert (slices.segmentations[2, 0] == label[:, :, 2]).all()
    assert slices.subjects.tolist() == ["case7"] * 4 + ["case8"] * 4
    volumes = load(str(tmp_path / "study"), volumes=True)
    assert volumes.images.shape == (2, 1, 4, 6, 5) and volumes.record_kind == "volume"
    np.testing.assert_allclose(volumes.images[0, 0, 2], scaled[:, :, 2], atol=1e-6)


def test_single_nifti_file_with_a_sibling_segmentation(tmp_path: Path) -> None:
    volume = np.arange(3 * 3 * 2, dtype=np.int16).reshape(3, 3, 2)
    image = _nifti(tmp_path / "scan.nii.gz", volume)
    _nifti(tmp_path / "scan_seg.nii.gz", (volume > 8).astype(np.uint8))
    data = load(str(image))
    assert len(data) == 2 and data.segmentations is not None and data.images.max() == 1.0
    _nifti(tmp_path / "scan_seg.nii.gz", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(DataError, match=r"scan_seg.nii.gz: label shape"):
        load(str(image))


def test_corrupt_nifti_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="bad.nii.gz: cannot read the NIfTI file"):
        load(str(tmp_path / "bad.nii.gz"))


def _dicom_slice(path: Path, pixels: np.ndarray, patient: str, series: str, z: float, instance: int) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.SeriesInstanceUID, ds.InstanceNumber = patient, series, instance
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_series_sorted_by_position_and_grouped_by_patient(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.uint16).reshape(3, 4)
    for i, z in enumerate((2.0, 0.0, 1.0)):
        _dicom_slice(tmp_path / "dicom" / "a" / f"s{i}.dcm", base + 100 * int(z), "P1", "1.2.3", z, instance=i)
    _dicom_slice(tmp_path / "dicom" / "b" / "nested" / "x.dcm", base, "P2", "1.2.4", 0.0, instance=1)
    data = load(str(tmp_path / "dicom"))
    assert len(data) == 4 and data.record_kind == "slice" and data.subjects_known
    by_patient = data.subset(data.subjects == "P1")
    assert by_patient.images[:, 0, 0, 0].tolist() == [0.0, pytest.approx(100 / 211), pytest.approx(200 / 211)]
    assert by_patient.images.max() == 1.0 and len(set(by_patient.sources)) == 1
    assert set(data.subjects) == {"P1", "P2"}


def test_corrupt_dicom_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "broken.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(DataError, match="broken.dcm"):
        load(str(tmp_path / "d"))


def test_flat_folder_of_png_files(tmp_path: Path) -> None:
    for name in ("scan_3.png", "scan_10.png"):
        write_image(tmp_path / "flat" / name, np.full((4, 6), 51, np.uint8))
    data = load(str(tmp_path / "flat"))
    assert data.images.shape == (2, 1, 4, 6) and np.allclose(data.images, 0.2)
    assert data.subjects.tolist() == ["10", "3"] and data.segmentations is None


def _labelled_folder(root: Path, images: list[str], labels: list[str], masks: list[str] | None = None) -> list[np.ndarray]:
    """Images whose labels differ (label i has i + 1 foreground pixels), so a wrong match shows."""
    rng = np.random.default_rng(1)
    truth = []
    for i, (image, label) in enumerate(zip(images, labels)):
        write_image(root / "images" / image, rng.integers(0, 256, (6, 5), dtype=np.uint8))
        pixels = np.zeros((6, 5), np.uint8)
        pixels.flat[: i + 1] = 255
        write_image(root / "labels" / label, pixels)
        truth.append(pixels > 0)
    for mask in masks or []:
        write_image(root / "mask" / mask, np.full((6, 5), 255, np.uint8))
    return truth


@pytest.mark.parametrize(
    ("images", "labels"),
    [
        (["01_left.png", "01_right.png", "02_left.png"], ["01_left_manual1.png", "01_right_manual1.png", "02_left_manual1.png"]),
        (["im0001.png", "im0002.png"], ["im0001.ah.png", "im0002.ah.png"]),
        (["Image_01L.png", "Image_01R.png"], ["Image_01L_1stHO.png", "Image_01R_1stHO.png"]),
        (["01_h.png", "01_dr.png", "01_g.png"], ["01_h.tif", "01_dr.tif", "01_g.tif"]),
    ],
)
def test_labels_match_their_image_by_stem_when_numbers_repeat(tmp_path: Path, images: list[str], labels: list[str]) -> None:
    truth = _labelled_folder(tmp_path / "set", images, labels)
    data = load(str(tmp_path / "set"))
    order = np.argsort(images)
    for row, i in enumerate(order):
        np.testing.assert_array_equal(data.segmentations[row, 0].astype(bool), truth[i])
    assert len(set(data.sources)) == len(images)


def test_masks_match_by_stem_and_drive_numbers_still_match(tmp_path: Path, drive_like: Path) -> None:
    _labelled_folder(tmp_path / "set", ["01_left.png", "01_right.png"], ["01_left.png", "01_right.png"], ["01_left_mask.png", "01_right_mask.png"])
    assert load(str(tmp_path / "set")).masks.all()
    assert load(f"{drive_like}:training").segmentations.shape[0] == 3


def test_files_sharing_a_number_without_matching_stems_are_refused(tmp_path: Path) -> None:
    _labelled_folder(tmp_path / "set", ["01_left.png", "01_right.png"], ["01_a.png", "01_b.png"])
    with pytest.raises(DataError, match="share the number 1"):
        load(str(tmp_path / "set"))
