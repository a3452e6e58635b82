"""The privacy report: the one record of what a release guarantees, written beside the release.

A :class:`PrivacyReport` states the mechanism, the accountant, the privacy unit (in concrete words:
"patch", "image", "patient"), every parameter an auditor needs to recompute epsilon, and the library
versions that computed it. It is written as ``privacy.json`` in a run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from privmed.errors import PrivacyError
from privmed.fileio import write_json_atomic

DPSGD_MECHANISM = "DP-SGD (subsampled Gaussian)"
LAPLACE_MECHANISM = "Laplace"

_ACCOUNTANT_TITLES = {"rdp": "RDP", "prv": "PRV", "laplace": "basic composition", "analytic-gaussian": "analytic Gaussian"}
_VERSIONED_PACKAGES = ("privmed", "torch", "opacus", "dp-accounting", "numpy")


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that produce and account a release."""
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class PrivacyReport:
    """What a release guarantees and every parameter needed to check it.

    ``epsilon`` and ``delta`` are for one ``unit`` (the concrete word: "patch", "image",
    "patient"); ``n_units`` is how many such units the private data holds. DP-SGD releases fill
    ``sample_rate``, ``noise_multiplier``, ``max_grad_norm`` and ``steps``; Laplace releases fill
    ``laplace_scale`` and ``sensitivity``. ``group_privacy`` states, for a record-level release, what
    a patient with several records gets (see :func:`privmed.privacy.group.group_privacy_report`).
    ``notes`` hold warnings and every way the run differs from the paper it follows. ``reproducible``
    marks a research run whose noise (and batches) follow from ``seed``: no guarantee against anyone
    who knows the seed. ``public_data`` names what the release publishes unprotected (e.g. class labels
    written with ``public_labels``): no mechanism covers it, so it must be public knowledge. ``dataset``
    is the dataset's name only: nothing computed from its content (a hash would be a membership oracle).
    """

    mechanism: str
    accountant: str
    unit: str
    n_units: int
    epsilon: float
    delta: float
    sample_rate: float | None = None
    noise_multiplier: float | None = None
    laplace_scale: float | None = None
    sensitivity: float | None = None
    max_grad_norm: float | None = None
    steps: int | None = None
    seed: int | None = None
    reproducible: bool = False
    notes: list[str] = field(default_factory=list)
    group_privacy: dict[str, Any] | None = None
    dataset: str | None = None
    public_data: list[str] = field(default_factory=list)
    created: str = field(default_factory=_now_iso)
    versions: dict[str, str] = field(default_factory=library_versions)

    def summary_line(self) -> str:
        """One line for logs and tables, e.g. ``(epsilon=8.00, delta=1.0e-05)-DP per patch, DP-SGD, RDP accountant``."""
        mechanism = "DP-SGD" if self.mechanism == DPSGD_MECHANISM else self.mechanism
        accountant = _ACCOUNTANT_TITLES.get(self.accountant, self.accountant)
        if math.isinf(self.epsilon):
            return f"no DP guarantee (epsilon=inf) per {self.unit}, {mechanism}"
        if self.epsilon == 0 and self.n_units == 0:
            return "epsilon=0: made from public data only, no private data read"
        if self.delta == 0:
            guarantee = f"epsilon={self.epsilon:.2f}"
        else:
            guarantee = f"(epsilon={self.epsilon:.2f}, delta={self.delta:.1e})"
        suffix = accountant if accountant == "basic composition" else f"{accountant} accountant"
        return f"{guarantee}-DP per {self.unit}, {mechanism}, {suffix}"

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (infinite epsilon as the string "inf")."""
        payload = dataclasses.asdict(self)
        if isinstance(self.epsilon, float) and math.isinf(self.epsilon):
            payload["epsilon"] = "inf"
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "PrivacyReport":
        """Rebuild a report from :meth:`to_dict` output; unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - names)
        if unknown:
            raise PrivacyError(f"privacy report has unknown fields {unknown}")
        values = dict(payload)
        if values.get("epsilon") == "inf":
            values["epsilon"] = math.inf
        try:
            return cls(**values)
        except TypeError as exc:
            raise PrivacyError(f"privacy report is incomplete: {exc}") from None

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report to ``path`` atomically."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> "PrivacyReport":
        """Read a report written by :meth:`to_json`."""
        source = Path(path)
        try:
            payload = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PrivacyError(f"{source}: no privacy report there") from None
        except json.JSONDecodeError as exc:
            raise PrivacyError(f"{source}: not a valid privacy report ({exc})") from None
        if not isinstance(payload, dict):
            raise PrivacyError(f"{source}: a privacy report must be a JSON object")
        try:
            return cls.from_dict(payload)
        except PrivacyError as exc:
            raise PrivacyError(f"{source}: {exc}") from None
