"""Tabular distribution distances on scikit-learn's diabetes table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from privmed.errors import DataError
from privmed.evaluate.tabular import column_distances, load_diabetes_table


def test_diabetes_table_has_sex_split_out() -> None:
    table = load_diabetes_table()
    assert table.values.shape == (442, 9)
    assert "sex" not in table.columns and len(table.columns) == 9
    assert set(np.unique(table.sex)) == {0, 1}
    assert table.values[:, table.columns.index("age")].max() > 1.0  # original units, not scikit-learn's scaled copy


def test_distances_are_zero_for_identical_tables() -> None:
    table = load_diabetes_table()
    for distance in column_distances(table.values, table.values.copy(), table.columns):
        assert distance.wasserstein == 0.0
        assert distance.ks_statistic == 0.0


def test_distances_grow_with_noise() -> None:
    table = load_diabetes_table()
    rng = np.random.default_rng(0)
    spread = table.values.std(axis=0)
    results = []
    for noise in (0.1, 1.0, 5.0):
        noisy = table.values + rng.laplace(scale=noise * spread, size=table.values.shape)
        results.append(column_distances(table.values, noisy, table.columns))
    for column in range(len(table.columns)):
        wasserstein = [r[column].wasserstein_in_sd for r in results]
        ks = [r[column].ks_statistic for r in results]
        assert wasserstein[0] < wasserstein[1] < wasserstein[2]
        assert ks[0] < ks[2]


def test_distance_matches_scipy_on_a_known_shift() -> None:
    original = np.arange(100, dtype=float).reshape(-1, 1)
    shifted = original + 3.0
    (distance,) = column_distances(original, shifted, ["x"])
    assert distance.wasserstein == pytest.approx(3.0)
    assert distance.wasserstein_in_sd == pytest.approx(3.0 / original.std())
    assert distance.ks_statistic == pytest.approx(stats.ks_2samp(original[:, 0], shifted[:, 0]).statistic)


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(DataError, match="same columns"):
        column_distances(np.zeros((5, 2)), np.zeros((5, 3)), ["a", "b"])
