"""Group privacy: what a record-level guarantee still says about a patient with several records.

If a mechanism is (epsilon, delta)-DP for one record, then for two datasets differing in k records
it is (k * epsilon, k * exp((k - 1) * epsilon) * delta)-DP. The proof chains the one-record
guarantee through k neighbouring datasets (Dwork & Roth 2014, Thm 2.2 for pure DP; Vadhan 2017,
"The Complexity of Differential Privacy", Lemma 2.2 for the approximate case); the chain gives
delta * sum_{i<k} exp(i * epsilon), which the stated form bounds from above.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from privmed.errors import PrivacyError
from privmed.privacy.units import PrivacyUnit, plural

GROUP_PRIVACY_SOURCE = "group privacy of (epsilon, delta)-DP: Dwork & Roth 2014 Thm 2.2; Vadhan 2017 Lemma 2.2"


def group_privacy(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """The (epsilon, delta) for a group of ``k`` records; delta is capped at 1 (no guarantee left)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise PrivacyError(f"group size k must be a whole number >= 1, got {k}")
    epsilon, delta = float(epsilon), float(delta)
    if not epsilon >= 0 or not 0 <= delta <= 1:
        raise PrivacyError(f"group privacy needs epsilon >= 0 and delta in [0, 1], got epsilon={epsilon}, delta={delta}")
    if delta == 0:
        return k * epsilon, 0.0
    if math.log(k) + (k - 1) * epsilon + math.log(delta) >= 0:
        return k * epsilon, 1.0
    return k * epsilon, k * math.exp((k - 1) * epsilon) * delta


def group_privacy_report(epsilon: float, delta: float, records_per_unit: int, unit: str = "patient", record: str = "record") -> dict[str, Any]:
    """The ``group_privacy`` entry of a record-level :class:`PrivacyReport`.

    ``records_per_unit`` is the most records one ``unit`` (e.g. patient) contributes; the entry
    says what that unit gets, and whether anything meaningful is left (delta below 1).
    """
    group_epsilon, group_delta = group_privacy(epsilon, delta, records_per_unit)
    return {
        "unit": unit,
        "records_per_unit": int(records_per_unit),
        "epsilon": group_epsilon,
        "delta": group_delta,
        "meaningful": group_delta < 1.0,
        "statement": (
            f"a {unit} with {records_per_unit} {plural(record, records_per_unit)} gets (epsilon={group_epsilon:.3g}, delta={group_delta:.2e})"
            + ("" if group_delta < 1.0 else ": no guarantee, delta reaches 1")
        ),
        "source": GROUP_PRIVACY_SOURCE,
    }


def group_sizes(data: Any, unit: str) -> dict[str, int]:
    """For a release at ``unit`` of ``data`` (an ImageDataset): the most such units one image and one patient hold.

    These are the k of group privacy the budget ledger needs to count the release towards the
    larger units; a unit at or above ``unit`` is left out (the release covers it directly).
    """
    release_unit = PrivacyUnit.parse(unit)
    order = [PrivacyUnit.RECORD, PrivacyUnit.IMAGE, PrivacyUnit.PATIENT]
    release_ids = data.unit_ids(release_unit)
    sizes = {}
    for larger in order[order.index(release_unit) + 1 :]:
        pairs = np.unique(np.stack([data.unit_ids(larger), release_ids]), axis=1)
        sizes[larger.value] = int(np.bincount(pairs[0]).max()) if pairs.size else 1
    return sizes
