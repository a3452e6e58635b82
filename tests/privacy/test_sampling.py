"""Poisson sampling of whole privacy units."""

from __future__ import annotations

import numpy as np
import pytest

from privmed.errors import PrivacyError
from privmed.privacy.sampling import PoissonUnitSampler

# 6 units of 1 to 4 records, ids not contiguous and records of a unit not adjacent.
UNIT_IDS = np.array([10, 3, 3, 7, 10, 3, 1, 8, 8, 7, 3, 20])


def test_each_unit_is_included_with_probability_q_and_whole() -> None:
    sampler = PoissonUnitSampler(UNIT_IDS, sample_rate=0.3, seed=0)
    draws = 4000
    counts = {int(u): 0 for u in np.unique(UNIT_IDS)}
    sizes = []
    for _ in range(draws):
        batch = sampler.next_batch()
        sizes.append(len(np.unique(UNIT_IDS[batch])))
        for unit in np.unique(UNIT_IDS[batch]):
            assert np.array_equal(np.sort(batch[UNIT_IDS[batch] == unit]), np.flatnonzero(UNIT_IDS == unit))
            counts[int(unit)] += 1
    standard_error = np.sqrt(0.3 * 0.7 / draws)
    for unit, count in counts.items():
        assert abs(count / draws - 0.3) < 4 * standard_error, unit
    assert sampler.n_units == 6
    assert sampler.expected_batch_units == pytest.approx(1.8)
    assert np.mean(sizes) == pytest.approx(1.8, abs=0.1)
    assert min(sizes) == 0  # Poisson batches can be empty


def test_records_per_unit_caps_each_unit_without_replacement() -> None:
    sampler = PoissonUnitSampler(UNIT_IDS, sample_rate=1.0, records_per_unit=2, seed=1)
    seen_from_unit_3 = set()
    for _ in range(50):
        batch = sampler.next_batch()
        assert len(np.unique(batch)) == len(batch)
        for unit in np.unique(UNIT_IDS):
            taken = batch[UNIT_IDS[batch] == unit]
            assert len(taken) == min(2, np.sum(UNIT_IDS == unit))
        seen_from_unit_3.update(batch[UNIT_IDS[batch] == 3].tolist())
    assert seen_from_unit_3 == set(np.flatnonzero(UNIT_IDS == 3).tolist())


def test_reproducible_by_seed_and_iterates_one_expected_epoch() -> None:
    first = [b.tolist() for b in PoissonUnitSampler(UNIT_IDS, 0.25, seed=5)]
    again = [b.tolist() for b in PoissonUnitSampler(UNIT_IDS, 0.25, seed=5)]
    other = [b.tolist() for b in PoissonUnitSampler(UNIT_IDS, 0.25, seed=6)]
    assert len(first) == 4
    assert first == again
    assert first != other


def test_state_round_trip_resumes_the_same_batches() -> None:
    sampler = PoissonUnitSampler(UNIT_IDS, 0.5, records_per_unit=1, seed=2)
    sampler.next_batch()
    state = sampler.state_dict()
    expected = [sampler.next_batch().tolist() for _ in range(5)]
    resumed = PoissonUnitSampler(UNIT_IDS, 0.5, records_per_unit=1, seed=99)
    resumed.load_state_dict(state)
    assert [resumed.next_batch().tolist() for _ in range(5)] == expected


@pytest.mark.parametrize(
    ("unit_ids", "options"),
    [(UNIT_IDS, {"sample_rate": 0.0}), (UNIT_IDS, {"sample_rate": 1.5}), (UNIT_IDS, {"sample_rate": 0.5, "records_per_unit": 0}), (np.array([]), {"sample_rate": 0.5})],
)
def test_invalid_settings_are_refused(unit_ids: np.ndarray, options: dict) -> None:
    with pytest.raises(PrivacyError):
        PoissonUnitSampler(unit_ids, **options)
