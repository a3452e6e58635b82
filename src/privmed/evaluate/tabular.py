"""Tabular privatization check (seed 002, Fig. 6): does a privatized table keep each column's distribution?

The data is scikit-learn's diabetes table (442 patients, shipped with scikit-learn). Sex is the
condition of the flow and stays as it is; the other columns are privatized. Per column we compare
original and privatized values with the 1-Wasserstein distance (in units of the original column's
standard deviation, so columns are comparable) and the two-sample Kolmogorov-Smirnov statistic.

:func:`cadp_diabetes` splits the patients in two halves: the flow (and the column scaling) is fitted
on one half, which CADP's guarantee does not cover, and the other half is privatized and compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.datasets import load_diabetes

from privmed.errors import DataError


@dataclass(frozen=True)
class DiabetesTable:
    """The diabetes features in their original units: ``values`` (N, 9) without sex, ``sex`` in {0, 1}."""

    values: np.ndarray
    sex: np.ndarray
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ColumnDistance:
    """Distribution distances between one original and one privatized column."""

    column: str
    wasserstein: float
    wasserstein_in_sd: float
    ks_statistic: float
    ks_pvalue: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_diabetes_table() -> DiabetesTable:
    """The diabetes table in original units; sex (coded 1/2 by scikit-learn) becomes 0/1."""
    bunch = load_diabetes(scaled=False)
    names = list(bunch.feature_names)
    sex_column = names.index("sex")
    sex_codes = np.unique(bunch.data[:, sex_column])
    sex = np.searchsorted(sex_codes, bunch.data[:, sex_column]).astype(np.int64)
    values = np.delete(bunch.data, sex_column, axis=1).astype(np.float64)
    columns = tuple(n for n in names if n != "sex")
    return DiabetesTable(values=values, sex=sex, columns=columns)


def column_distances(original: np.ndarray, privatized: np.ndarray, columns: tuple[str, ...] | list[str]) -> list[ColumnDistance]:
    """Per-column Wasserstein distance (raw and in original standard deviations) and KS statistic."""
    original = np.asarray(original, dtype=np.float64)
    privatized = np.asarray(privatized, dtype=np.float64)
    if original.ndim != 2 or privatized.ndim != 2 or original.shape[1] != privatized.shape[1]:
        raise DataError(f"tables must be 2D with the same columns, got {original.shape} and {privatized.shape}")
    if original.shape[1] != len(columns):
        raise DataError(f"{len(columns)} column names for {original.shape[1]} columns")
    distances = []
    for index, name in enumerate(columns):
        before, after = original[:, index], privatized[:, index]
        wasserstein = float(stats.wasserstein_distance(before, after))
        spread = float(before.std())
        ks = stats.ks_2samp(before, after)
        distances.append(
            ColumnDistance(
                column=str(name),
                wasserstein=wasserstein,
                wasserstein_in_sd=wasserstein / spread if spread > 0 else float("nan"),
                ks_statistic=float(ks.statistic),
                ks_pvalue=float(ks.pvalue),
            )
        )
    return distances

