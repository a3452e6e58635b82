"""Group privacy: what k records of one patient get from a record-level guarantee."""

from __future__ import annotations

import math

import pytest

from privmed.errors import PrivacyError
from privmed.privacy.group import group_privacy, group_privacy_report


def test_one_record_keeps_the_guarantee() -> None:
    assert group_privacy(2.0, 1e-5, 1) == (2.0, 1e-5)


def test_group_bound_follows_the_formula_and_covers_the_chain_argument() -> None:
    epsilon, delta, k = 0.5, 1e-6, 4
    group_epsilon, group_delta = group_privacy(epsilon, delta, k)
    assert group_epsilon == pytest.approx(2.0)
    assert group_delta == pytest.approx(k * math.exp((k - 1) * epsilon) * delta)
    chain = delta * sum(math.exp(i * epsilon) for i in range(k))
    assert group_delta >= chain


def test_pure_dp_stays_pure_and_large_groups_lose_everything() -> None:
    assert group_privacy(1.0, 0.0, 10) == (10.0, 0.0)
    assert group_privacy(8.0, 1e-5, 200)[1] == 1.0
    report = group_privacy_report(8.0, 1e-5, 50, record="patch")
    assert report["records_per_unit"] == 50 and report["epsilon"] == 400.0
    assert report["meaningful"] is False and "no guarantee" in report["statement"]


@pytest.mark.parametrize(("epsilon", "delta", "k"), [(1.0, 1e-5, 0), (1.0, 1e-5, 2.5), (-1.0, 1e-5, 2), (1.0, 2.0, 2)])
def test_bad_group_parameters_are_refused(epsilon: float, delta: float, k: int) -> None:
    with pytest.raises(PrivacyError):
        group_privacy(epsilon, delta, k)
