"""Tabular distribution distances on scikit-learn's diabetes table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from privmed.errors import DataError
from privmed.evaluate.tabular import cadp_diabetes, column_distances, load_diabetes_table


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


def test_cadp_keeps_sex_and_reports_its_epsilon() -> None:
    release = cadp_diabetes(epsilon=1.0, clip=1.0, epochs=3, depth=2, hidden_features=16)
    table = load_diabetes_table()
    assert release.original.shape == release.privatized.shape == (221, 9)
    assert np.isfinite(release.privatized).all()
    assert release.report.epsilon == pytest.approx(1.0) and release.report.delta == 0.0
    assert release.report.sensitivity == pytest.approx(2.0)  # two rows clipped to the L1 ball of radius 1 differ by <= 2
    rows = {tuple(row) for row in table.values}
    assert all(tuple(row) in rows for row in release.original)  # the compared originals are real patients
    assert len(release.distances) == 9 and all(d.wasserstein > 0 for d in release.distances)
    np.testing.assert_array_equal(np.sort(np.unique(release.sex)), [0, 1])
