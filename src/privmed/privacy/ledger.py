"""The budget ledger: every release made from a dataset, so its total privacy loss stays bounded.

One JSON file (``$PRIVMED_LEDGER``, else ``~/.privmed/ledger.json``) holds a total budget per dataset
and one entry per release. A release *reserves* its epsilon before it starts, so a crash or a
concurrent run can never spend past the total, and *settles* when it ends. Writes are atomic and
serialized by an ``fcntl`` lock on a side file, so two runs cannot lose each other's entries.

Accounting is basic composition (epsilons add, deltas add): valid for any mix of mechanisms and
accountants, and conservative. Spend is stated per privacy unit. A guarantee for a larger unit
implies it for every smaller one (patient -> image -> record), so ``spent(key, "patch")`` counts the
record-, image- and patient-level releases alike. A release at a smaller unit counts towards a larger
one through group privacy (:mod:`privmed.privacy.group`): a record-level release of (epsilon, delta)
whose largest patient holds k records costs that patient (k epsilon, k e^((k-1) epsilon) delta). A
release booked without its group sizes cannot be counted that way and is listed apart.

Datasets are keyed by their name and a keyed hash of their content (:func:`dataset_key`): HMAC-SHA256
under a secret salt kept beside the ledger (``.NAME.salt``, created on first use, readable by its
owner only). The key stays in the ledger; nothing published carries it, since a plain hash of the
data would let anyone holding candidate datasets test which one was used.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privmed.errors import BudgetExceededError, PrivacyError
from privmed.fileio import write_json_atomic
from privmed.privacy.calibration import check_epsilon, delta_is_large
from privmed.privacy.group import group_privacy
from privmed.privacy.units import PrivacyUnit

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset

LEDGER_ENV = "PRIVMED_LEDGER"
LEDGER_FORMAT = 1
_UNIT_ORDER = {PrivacyUnit.RECORD: 0, PrivacyUnit.IMAGE: 1, PrivacyUnit.PATIENT: 2}
# Room for float rounding when a settled or summed epsilon is compared with a budget.
_SLACK = 1e-9


def default_ledger_path() -> Path:
    """``$PRIVMED_LEDGER`` if set, else ``~/.privmed/ledger.json``."""
    configured = os.environ.get(LEDGER_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".privmed" / "ledger.json"


_SALT_BYTES = 32


def ledger_salt(ledger_path: str | os.PathLike[str] | None = None) -> bytes:
    """The ledger's secret salt (``.NAME.salt`` beside it), created with owner-only access on first use."""
    path = Path(ledger_path).expanduser() if ledger_path is not None else default_ledger_path()
    salt_path = path.with_name(f".{path.name}.salt")
    if not salt_path.exists():
        salt_path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: a concurrent run either sees
        # no salt or the complete one, and the first link wins.
        staging = salt_path.with_name(f"{salt_path.name}.{secrets.token_hex(8)}.tmp")
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(_SALT_BYTES))
        try:
            os.link(staging, salt_path)
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    salt = salt_path.read_bytes()
    if len(salt) < _SALT_BYTES:
        raise PrivacyError(f"{salt_path}: the ledger's salt file is damaged (fewer than {_SALT_BYTES} bytes)")
    return salt


def dataset_key(data: ImageDataset, ledger_path: str | os.PathLike[str] | None = None) -> str:
    """The ledger key of a dataset: its name and 16 hex digits of a keyed hash of its content.

    The hash is keyed by the ledger's secret salt, so only this ledger can tell two datasets apart;
    the key is private to the ledger and must not be published (privacy.json names the dataset only).
    """
    return f"{data.name}@{data.fingerprint(salt=ledger_salt(ledger_path))[:16]}"


def dataset_name(key: str) -> str:
    """The dataset name a ledger key starts with (the part before ``@``)."""
    return key.split("@", 1)[0]


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _covers(release_unit: PrivacyUnit, unit: PrivacyUnit) -> bool:
    """Whether a guarantee for ``release_unit`` is also one for ``unit``."""
    return _UNIT_ORDER[release_unit] >= _UNIT_ORDER[unit]


class BudgetLedger:
    """Total budgets and releases per dataset, in one JSON file shared by every run on this machine."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_ledger_path()

    @property
    def lock_path(self) -> Path:
        """The side file locked while the ledger is read, changed and replaced."""
        return self.path.with_name(f".{self.path.name}.lock")

    def set_total(self, dataset_key: str, epsilon: float, delta: float | None = None) -> None:
        """Set the total budget of a dataset, applied to each privacy unit's spend."""
        epsilon = check_epsilon(epsilon)
        if delta is not None and not 0 <= float(delta) < 1:
            raise PrivacyError(f"total delta must be in [0, 1), got {delta}")
        with self._editing() as state:
            state["totals"][dataset_key] = {"epsilon": epsilon, "delta": None if delta is None else float(delta)}

    def total(self, dataset_key: str) -> dict[str, float | None] | None:
        """The configured total ``{"epsilon", "delta"}`` of a dataset (set by its key or by its name), or None."""
        return _total_of(self._read()["totals"], dataset_key)

    def reserve(
        self,
        dataset_key: str,
        release_id: str,
        epsilon: float,
        delta: float,
        unit: str | PrivacyUnit,
        description: str = "",
        *,
        n_units: int | None = None,
        group_sizes: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Book a release's epsilon and delta before it starts; returns the entry.

        ``n_units`` (how many units the release's data holds) lets the ledger flag a delta above
        1/(10N). ``group_sizes`` maps a larger unit ("image", "patient") to the most of this release's
        units one of them holds, so the release counts towards that unit by group privacy.
        Refuses with :class:`BudgetExceededError`, writing nothing, when the dataset has a total
        and the spend of any unit would pass it. Reserving a ``release_id``
        again (a resumed run) replaces its entry instead of adding a second one.
        """
        epsilon = check_epsilon(epsilon)
        delta = float(delta)
        if not 0 <= delta < 1:
            raise PrivacyError(f"delta must be in [0, 1), got {delta}")
        release_unit = PrivacyUnit.parse(unit)
        if not str(release_id).strip():
            raise PrivacyError("release_id must be a non-empty string")
        with self._editing() as state:
            releases = state["releases"]
            previous = next((r for r in releases if r["release_id"] == release_id), None)
            if previous is not None and previous["dataset_key"] != dataset_key:
                raise PrivacyError(
                    f"release {release_id!r} is booked on dataset {previous['dataset_key']!r}, not {dataset_key!r}"
                )
            others = [r for r in releases if r["release_id"] != release_id]
            sizes = {PrivacyUnit.parse(u).value: int(k) for u, k in (group_sizes or {}).items()}
            if any(k < 1 for k in sizes.values()):
                raise PrivacyError(f"group sizes must be whole numbers >= 1, got {group_sizes}")
            entry = {
                "release_id": str(release_id),
                "dataset_key": dataset_key,
                "unit": str(unit.value if isinstance(unit, PrivacyUnit) else unit),
                "privacy_unit": release_unit.value,
                "epsilon_reserved": epsilon,
                "epsilon": None,
                "delta": delta,
                "status": "reserved",
                "description": description,
                "reserved_at": _now_iso(),
                "settled_at": None,
                "n_units": None if n_units is None else int(n_units),
                "large_delta": delta_is_large(delta, n_units),
                "group_sizes": sizes,
            }
            total = _total_of(state["totals"], dataset_key)
            if total is not None:
                for unit_checked in PrivacyUnit:
                    _refuse_if_over(others, entry, dataset_key, unit_checked, total)
            state["releases"] = others + [entry]
        return dict(entry)

    def settle(self, release_id: str, epsilon: float, delta: float | None = None) -> dict[str, Any]:
        """Record what a release finally spent (at most what it reserved); returns the entry.

        A spend above the reservation is still recorded, because the privacy is lost either way,
        and then :class:`BudgetExceededError` is raised so the caller cannot miss it.
        """
        epsilon = check_epsilon(epsilon)
        with self._editing() as state:
            entry = next((r for r in state["releases"] if r["release_id"] == release_id), None)
            if entry is None:
                raise PrivacyError(f"no release {release_id!r} in the ledger {self.path}: reserve it first")
            entry["epsilon"] = epsilon
            if delta is not None:
                entry["delta"] = float(delta)
            entry["settled_at"] = _now_iso()
            overspent = epsilon > entry["epsilon_reserved"] * (1 + _SLACK)
            entry["status"] = "overspent" if overspent else "settled"
            settled = dict(entry)
        if overspent:
            raise BudgetExceededError(
                f"release {release_id!r} spent epsilon={epsilon:g}, more than the {settled['epsilon_reserved']:g} "
                f"it reserved; the ledger {self.path} records the full spend"
            )
        return settled

    def spent(self, dataset_key: str, unit: str | PrivacyUnit) -> tuple[float, float]:
        """``(epsilon, delta)`` spent on a dataset at ``unit`` by basic composition (reservations count in full).

        Releases at a smaller unit count by group privacy where their group size is booked."""
        return _spent(self._read()["releases"], dataset_key, PrivacyUnit.parse(unit))

    def uncounted(self, dataset_key: str, unit: str | PrivacyUnit) -> list[dict[str, Any]]:
        """Releases of a dataset at a smaller unit whose group size for ``unit`` is not booked (not in ``spent``)."""
        unit = PrivacyUnit.parse(unit)
        return [dict(r) for r in self._read()["releases"] if r["dataset_key"] == dataset_key and _cost(r, unit) is None]

    def large_delta_releases(self, dataset_key: str) -> list[dict[str, Any]]:
        """Releases of a dataset whose delta is above 1/(10N) for their N units (flagged in the totals)."""
        return [dict(r) for r in self._read()["releases"] if r["dataset_key"] == dataset_key and r.get("large_delta")]

    def remaining(self, dataset_key: str, unit: str | PrivacyUnit) -> float | None:
        """Epsilon left at ``unit`` under the dataset's total (never negative), or None without a total."""
        total = self.total(dataset_key)
        if total is None:
            return None
        return max(0.0, total["epsilon"] - self.spent(dataset_key, unit)[0])

    def entries(self, dataset_key: str | None = None) -> list[dict[str, Any]]:
        """The release entries, oldest first, of one dataset or of all."""
        return [dict(r) for r in self._read()["releases"] if dataset_key is None or r["dataset_key"] == dataset_key]

    def totals(self) -> dict[str, dict[str, float | None]]:
        """Every configured total, by dataset key."""
        return dict(self._read()["totals"])

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": LEDGER_FORMAT, "totals": {}, "releases": []}
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PrivacyError(f"{self.path}: cannot read the budget ledger ({exc})") from None
        if not isinstance(state, dict) or not isinstance(state.get("totals"), dict) or not isinstance(state.get("releases"), list):
            raise PrivacyError(f"{self.path}: not a privmed budget ledger (needs 'totals' and 'releases')")
        return state

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        """Hold the lock, yield the current state, and write it back only if the block succeeds."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read()
                yield state
                write_json_atomic(self.path, state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _total_of(totals: dict[str, Any], dataset_key: str) -> dict[str, float | None] | None:
    """The total set for this key, else the one set for its dataset name."""
    return totals.get(dataset_key) or totals.get(dataset_name(dataset_key))


def _cost(release: dict[str, Any], unit: PrivacyUnit) -> tuple[float, float] | None:
    """What a release costs one ``unit``: its own (epsilon, delta) if it covers the unit, its group-privacy
    consequence if its group size for the unit is booked, else None (not countable)."""
    epsilon = release["epsilon"] if release["epsilon"] is not None else release["epsilon_reserved"]
    if _covers(PrivacyUnit(release["privacy_unit"]), unit):
        return epsilon, release["delta"]
    size = (release.get("group_sizes") or {}).get(unit.value)
    return None if size is None else group_privacy(epsilon, release["delta"], int(size))


def _spent(releases: list[dict[str, Any]], dataset_key: str, unit: PrivacyUnit) -> tuple[float, float]:
    costs = [c for c in (_cost(r, unit) for r in releases if r["dataset_key"] == dataset_key) if c is not None]
    return math.fsum(c[0] for c in costs), min(1.0, math.fsum(c[1] for c in costs))


def _refuse_if_over(
    releases: list[dict[str, Any]],
    entry: dict[str, Any],
    dataset_key: str,
    unit: PrivacyUnit,
    total: dict[str, float | None],
) -> None:
    cost = _cost(entry, unit)
    if cost is None:
        return
    epsilon, delta = cost
    spent_epsilon, spent_delta = _spent(releases, dataset_key, unit)
    if spent_epsilon + epsilon > total["epsilon"] * (1 + _SLACK):
        left = max(0.0, total["epsilon"] - spent_epsilon)
        raise BudgetExceededError(
            f"dataset {dataset_key!r}: a release of epsilon={epsilon:g} would pass the total {total['epsilon']:g} "
            f"per {unit.value}; {spent_epsilon:g} is spent, {left:g} is left"
        )
    if total.get("delta") is not None and spent_delta + delta > total["delta"] * (1 + _SLACK):
        left = max(0.0, total["delta"] - spent_delta)
        raise BudgetExceededError(
            f"dataset {dataset_key!r}: a release of delta={delta:g} would pass the total delta {total['delta']:g} "
            f"per {unit.value}; {spent_delta:g} is spent, {left:g} is left"
        )
