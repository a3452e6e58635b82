"""Accountants by name, as the CLI and method configs spell them."""

from __future__ import annotations

from privmed.errors import PrivacyError
from privmed.privacy.accountants.base import PrivacyAccountant
from privmed.privacy.accountants.laplace import LaplaceAccountant
from privmed.privacy.accountants.prv import PRVAccountant
from privmed.privacy.accountants.rdp import RDPAccountant

ACCOUNTANTS: dict[str, type[PrivacyAccountant]] = {
    RDPAccountant.mechanism: RDPAccountant,
    PRVAccountant.mechanism: PRVAccountant,
    LaplaceAccountant.mechanism: LaplaceAccountant,
}

DPSGD_ACCOUNTANTS = (RDPAccountant.mechanism, PRVAccountant.mechanism)


def make_accountant(name: str) -> PrivacyAccountant:
    """A fresh accountant for ``name`` ("rdp", "prv" or "laplace")."""
    key = str(name).strip().lower()
    if key not in ACCOUNTANTS:
        raise PrivacyError(f"unknown accountant {name!r}: use one of {', '.join(ACCOUNTANTS)}")
    return ACCOUNTANTS[key]()
