"""The budget ledger refuses over-budget releases, replaces resumed ones, and settles spends."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from privmed.data.dataset import ImageDataset
from privmed.errors import BudgetExceededError, PrivacyError
from privmed.privacy.ledger import BudgetLedger, dataset_key

KEY = "drive@0123456789abcdef"


@pytest.fixture
def ledger(isolated_ledger: Path) -> BudgetLedger:
    return BudgetLedger()


def test_default_path_comes_from_the_environment(isolated_ledger: Path) -> None:
    assert BudgetLedger().path == isolated_ledger


def test_dataset_key_is_a_keyed_hash_under_the_ledgers_secret_salt(tmp_path: Path, isolated_ledger: Path) -> None:
    """Finding 2: a plain content hash is a membership oracle; the key must need the ledger's secret salt."""
    images = np.zeros((2, 1, 4, 4), dtype=np.float32)
    data = ImageDataset(images=images, subjects=["a", "b"], sources=["a", "b"], name="tiny")
    other = ImageDataset(images=images + 0.5, subjects=["a", "b"], sources=["a", "b"], name="tiny")
    key = dataset_key(data)
    name, tag = key.split("@")
    assert name == "tiny" and len(tag) == 16
    # Anyone holding the data can compute the unsalted hash: it must not be the key.
    plain = hashlib.sha256()
    for array in (data.images, data.labels, data.subjects):
        if array is not None:
            plain.update(str(array.shape).encode())
            plain.update(np.ascontiguousarray(array).tobytes())
    assert tag != plain.hexdigest()[:16]
    assert dataset_key(data) == key and dataset_key(other) != key
    salt = isolated_ledger.with_name(f".{isolated_ledger.name}.salt")
    assert salt.exists() and (salt.stat().st_mode & 0o077) == 0
    assert dataset_key(data, tmp_path / "other-ledger.json") != key


def test_over_budget_release_is_refused_and_nothing_is_written(ledger: BudgetLedger) -> None:
    ledger.set_total(KEY, 10.0)
    ledger.reserve(KEY, "first", epsilon=6.0, delta=1e-6, unit="patch")
    before = ledger.path.read_bytes()
    with pytest.raises(BudgetExceededError, match=r"4 is left"):
        ledger.reserve(KEY, "second", epsilon=5.0, delta=1e-6, unit="patch")
    assert ledger.path.read_bytes() == before
    assert ledger.remaining(KEY, "patch") == pytest.approx(4.0)
    ledger.reserve(KEY, "second", epsilon=4.0, delta=1e-6, unit="patch")
    assert ledger.spent(KEY, "record") == pytest.approx((10.0, 2e-6))


def test_total_delta_is_enforced_too(ledger: BudgetLedger) -> None:
    ledger.set_total(KEY, 100.0, delta=1e-5)
    ledger.reserve(KEY, "a", epsilon=1.0, delta=8e-6, unit="image")
    with pytest.raises(BudgetExceededError, match="delta"):
        ledger.reserve(KEY, "b", epsilon=1.0, delta=8e-6, unit="image")


def test_resume_replaces_the_entry_instead_of_adding_one(ledger: BudgetLedger) -> None:
    ledger.set_total(KEY, 10.0)
    ledger.reserve(KEY, "run-1", epsilon=8.0, delta=1e-5, unit="patient", description="first try")
    ledger.reserve(KEY, "run-1", epsilon=8.0, delta=1e-5, unit="patient", description="resumed")
    entries = ledger.entries(KEY)
    assert len(entries) == 1 and entries[0]["description"] == "resumed"
    assert ledger.spent(KEY, "patient") == pytest.approx((8.0, 1e-5))
    with pytest.raises(PrivacyError, match="booked on dataset"):
        ledger.reserve("other@0000000000000000", "run-1", epsilon=1.0, delta=1e-5, unit="patient")


def test_settle_records_the_final_spend(ledger: BudgetLedger) -> None:
    ledger.set_total(KEY, 10.0)
    ledger.reserve(KEY, "run", epsilon=8.0, delta=1e-5, unit="patch")
    entry = ledger.settle("run", 6.5)
    assert entry["status"] == "settled" and entry["epsilon"] == 6.5 and entry["epsilon_reserved"] == 8.0
    assert ledger.spent(KEY, "patch")[0] == pytest.approx(6.5)
    assert ledger.remaining(KEY, "patch") == pytest.approx(3.5)


def test_settling_more_than_reserved_is_recorded_and_raised(ledger: BudgetLedger) -> None:
    ledger.reserve(KEY, "run", epsilon=2.0, delta=1e-5, unit="patch")
    with pytest.raises(BudgetExceededError, match="more than"):
        ledger.settle("run", 3.0)
    (entry,) = ledger.entries()
    assert entry["status"] == "overspent" and entry["epsilon"] == 3.0
    with pytest.raises(PrivacyError, match="reserve it first"):
        ledger.settle("never-reserved", 1.0)


def test_larger_units_count_towards_smaller_ones_but_not_back(ledger: BudgetLedger) -> None:
    ledger.set_total(KEY, 10.0)
    ledger.reserve(KEY, "per-patient", epsilon=6.0, delta=1e-6, unit="patient")
    ledger.reserve(KEY, "per-patch", epsilon=3.0, delta=1e-6, unit="patch")
    assert ledger.spent(KEY, "patch")[0] == pytest.approx(9.0)  # a patient guarantee is one per patch too
    assert ledger.spent(KEY, "patient")[0] == pytest.approx(6.0)  # a patch guarantee says nothing per patient
    assert ledger.spent(KEY, "image")[0] == pytest.approx(6.0)
    # A new patient-level release also spends per patch, where only 1 is left.
    with pytest.raises(BudgetExceededError, match="per record"):
        ledger.reserve(KEY, "another-patient", epsilon=2.0, delta=1e-6, unit="patient")


def test_no_total_means_no_refusal_and_no_remaining(ledger: BudgetLedger) -> None:
    ledger.reserve(KEY, "big", epsilon=50.0, delta=1e-5, unit="image")
    assert ledger.remaining(KEY, "image") is None and ledger.total(KEY) is None
    assert ledger.entries("someone-else") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"epsilon": 0.0, "delta": 1e-5, "unit": "patch"}, "epsilon"),
        ({"epsilon": 1.0, "delta": 1.0, "unit": "patch"}, "delta"),
        ({"epsilon": 1.0, "delta": 1e-5, "unit": "organ"}, "unit"),
    ],
)
def test_bad_reservations_are_refused(ledger: BudgetLedger, arguments: dict, message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        ledger.reserve(KEY, "run", **arguments)
    assert not ledger.path.exists()


def test_a_corrupt_ledger_file_is_named(ledger: BudgetLedger) -> None:
    ledger.path.write_text("[1, 2")
    with pytest.raises(PrivacyError, match=ledger.path.name):
        ledger.entries()
    ledger.path.write_text(json.dumps({"releases": []}))
    with pytest.raises(PrivacyError, match="not a privmed budget ledger"):
        ledger.spent(KEY, "patch")


def _reserve_many(path: str, prefix: str) -> None:
    ledger = BudgetLedger(path)
    for i in range(10):
        ledger.reserve(KEY, f"{prefix}-{i}", epsilon=0.1, delta=0.0, unit="patch")


def test_concurrent_writers_lose_no_entry(ledger: BudgetLedger) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_reserve_many, args=(str(ledger.path), name)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    assert len(ledger.entries(KEY)) == 20


def test_patient_total_counts_record_and_image_releases_by_group_privacy(ledger: BudgetLedger) -> None:
    """Finding 9: a record-level release costs a patient with k records (k eps, k e^((k-1) eps) delta)."""
    ledger.reserve(KEY, "patches", epsilon=1.0, delta=1e-6, unit="patch", group_sizes={"image": 4, "patient": 8})
    ledger.reserve(KEY, "images", epsilon=0.5, delta=0.0, unit="image", group_sizes={"patient": 2})
    ledger.reserve(KEY, "patients", epsilon=2.0, delta=1e-7, unit="patient")
    epsilon, delta = ledger.spent(KEY, "patient")
    assert epsilon == pytest.approx(8 * 1.0 + 2 * 0.5 + 2.0)
    assert delta == pytest.approx(8 * np.exp(7 * 1.0) * 1e-6 + 0.0 + 1e-7)
    assert ledger.spent(KEY, "image") == pytest.approx((4 * 1.0 + 0.5 + 2.0, 4 * np.exp(3.0) * 1e-6 + 1e-7))
    ledger.set_total(KEY, 12.0)
    with pytest.raises(BudgetExceededError, match="per patient"):
        ledger.reserve(KEY, "more", epsilon=0.2, delta=0.0, unit="record", group_sizes={"patient": 8})


def test_a_release_without_group_sizes_is_listed_as_uncounted(ledger: BudgetLedger) -> None:
    ledger.reserve(KEY, "patches", epsilon=1.0, delta=1e-6, unit="patch")
    assert ledger.spent(KEY, "patient") == (0.0, 0.0)
    assert [r["release_id"] for r in ledger.uncounted(KEY, "patient")] == ["patches"]


def test_a_delta_above_one_over_ten_n_is_flagged_in_the_ledger(ledger: BudgetLedger) -> None:
    """Finding 3: the ledger total flags any delta above 1/(10N)."""
    ledger.reserve(KEY, "small", epsilon=1.0, delta=1e-5, unit="image", n_units=1000)
    ledger.reserve(KEY, "large", epsilon=1.0, delta=1.0 / 21, unit="image", n_units=20)
    assert [r["release_id"] for r in ledger.large_delta_releases(KEY)] == ["large"]


def test_a_total_set_by_name_applies_to_the_datasets_keys(ledger: BudgetLedger) -> None:
    ledger.set_total("drive", 3.0)
    ledger.reserve(KEY, "a", epsilon=2.0, delta=0.0, unit="image")
    with pytest.raises(BudgetExceededError):
        ledger.reserve(KEY, "b", epsilon=2.0, delta=0.0, unit="image")
