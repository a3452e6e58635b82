"""Poisson sampling of privacy units, the batch sampling that DP-SGD's accounting assumes.

The subsampled-Gaussian accountants (``"rdp"``, ``"prv"``) assume each unit joins each batch
independently with probability ``sample_rate``; fixed-size batches or shuffled epochs would need a
different analysis. So batch sizes vary and a batch may be empty. A unit is sampled as a whole: all
its records, or ``records_per_unit`` of them drawn without replacement (DP-SGD clips each unit's
summed gradient, so which of its records are used costs no privacy).

Which units are in which batch must stay secret, or the amplification by subsampling is lost: by
default the draws come from a secret AES-CTR stream (:mod:`privmed.privacy.secure_rng`) that has no
state to save. A ``seed`` makes the batches reproducible (a research run, no guarantee against anyone
who knows the seed); ``key`` shares one secret stream between the ranks of a data-parallel job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from privmed.errors import PrivacyError
from privmed.privacy.secure_rng import RandomStream, random_stream

SAMPLING_PURPOSE = "poisson-sampling"


class PoissonUnitSampler:
    """Batches of record indices in which each unit is included independently with probability ``sample_rate``.

    ``unit_ids`` gives the unit of each record (e.g. ``ImageDataset.unit_ids(unit)``). Iterating
    yields ``len(self)`` = round(1 / sample_rate) batches, one epoch in expectation; ``next_batch()``
    draws one batch at a time. Secret by default; with ``seed`` the batches are reproducible and the
    stream's position round-trips through ``state_dict`` for exact resume; ``key`` (a secret key the
    caller drew, e.g. broadcast by rank 0) makes several samplers draw the same secret batches.
    """

    def __init__(
        self,
        unit_ids: np.ndarray,
        sample_rate: float,
        records_per_unit: int | None = None,
        seed: int | None = None,
        *,
        key: bytes | None = None,
    ) -> None:
        unit_ids = np.asarray(unit_ids)
        if unit_ids.ndim != 1 or unit_ids.size == 0:
            raise PrivacyError(f"unit_ids must be a non-empty 1-D array, got shape {unit_ids.shape}")
        if not 0 < sample_rate <= 1:
            raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if records_per_unit is not None and records_per_unit < 1:
            raise PrivacyError(f"records_per_unit must be >= 1 or None (all records), got {records_per_unit}")
        self.sample_rate = float(sample_rate)
        self.records_per_unit = records_per_unit
        _, unit_of_record = np.unique(unit_ids, return_inverse=True)
        order = np.argsort(unit_of_record, kind="stable")
        boundaries = np.flatnonzero(np.diff(unit_of_record[order])) + 1
        self._records_by_unit = np.split(order.astype(np.int64), boundaries)
        if key is not None and seed is not None:
            raise PrivacyError("a sampler is either reproducible (seed) or secret (key), not both")
        self._stream: RandomStream = RandomStream.from_key(key) if key is not None else random_stream(seed, SAMPLING_PURPOSE)

    @property
    def reproducible(self) -> bool:
        """Whether the batches follow from a seed (a research run) rather than from a secret stream."""
        return not self._stream.secret

    @property
    def n_units(self) -> int:
        """How many units the records belong to."""
        return len(self._records_by_unit)

    @property
    def expected_batch_units(self) -> float:
        """The mean number of units per batch, ``sample_rate * n_units`` (DP-SGD's gradient divisor)."""
        return self.sample_rate * self.n_units

    def next_batch(self) -> np.ndarray:
        """The record indices of one Poisson-sampled batch (int64, possibly empty), grouped by unit."""
        included = np.flatnonzero(self._stream.uniform(self.n_units) < self.sample_rate)
        batch = []
        for unit in included:
            records = self._records_by_unit[unit]
            if self.records_per_unit is not None and len(records) > self.records_per_unit:
                # The records of the k smallest of fresh uniforms: k drawn without replacement.
                chosen = np.argpartition(self._stream.uniform(len(records)), self.records_per_unit)[: self.records_per_unit]
                records = np.sort(records[chosen])
            batch.append(records)
        return np.concatenate(batch) if batch else np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return max(1, round(1 / self.sample_rate))

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(len(self)):
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """A seeded sampler's stream position (plain values); a secret sampler saves only that it is secret."""
        return self._stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state saved by :meth:`state_dict` (a secret sampler draws fresh secret batches)."""
        self._stream.load_state_dict(state)
