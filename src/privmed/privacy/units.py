"""The privacy unit: what one individual contributes, and so what epsilon protects.

A *record* is one row of a dataset (a patch, a slice or a whole image, as the dataset says in
``record_kind``); an *image* is every record cut from one source image; a *patient* is every record
of one subject. A guarantee for a larger unit implies it for the smaller ones, never the reverse.
"""

from __future__ import annotations

from enum import Enum

from privmed.errors import PrivacyError

_ALIASES = {"record": "record", "patch": "record", "slice": "record", "image": "image", "patient": "patient", "subject": "patient"}


class PrivacyUnit(str, Enum):
    """The unit a differential-privacy guarantee is stated for."""

    RECORD = "record"
    IMAGE = "image"
    PATIENT = "patient"

    @classmethod
    def parse(cls, value: "str | PrivacyUnit") -> "PrivacyUnit":
        """Read a unit from user text; ``patch`` and ``slice`` mean one record."""
        if isinstance(value, PrivacyUnit):
            return value
        key = _ALIASES.get(str(value).strip().lower())
        if key is None:
            raise PrivacyError(f"unknown privacy unit {value!r}: use one of patch, slice, record, image, patient")
        return cls(key)

    def describe(self, record_kind: str) -> str:
        """The concrete word for reports: a record unit is named by what a record is (e.g. 'patch')."""
        return record_kind if self is PrivacyUnit.RECORD else self.value


def plural(word: str, count: int = 2) -> str:
    """The English plural of a unit word for reports ("patch" -> "patches", "image" -> "images")."""
    if count == 1:
        return word
    hard_ch = word in ("epoch", "stomach")  # "ch" said as k takes a plain s
    return word + ("es" if word.endswith(("ch", "sh", "s", "x")) and not hard_ch else "s")
