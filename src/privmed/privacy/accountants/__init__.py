"""Privacy accountants: one class per file, looked up by name with :func:`make_accountant`."""

from privmed.privacy.accountants.base import PrivacyAccountant, SubsampledGaussianAccountant
from privmed.privacy.accountants.laplace import LaplaceAccountant
from privmed.privacy.accountants.prv import PRVAccountant
from privmed.privacy.accountants.rdp import RDPAccountant
from privmed.privacy.accountants.registry import ACCOUNTANTS, DPSGD_ACCOUNTANTS, make_accountant

__all__ = [
    "ACCOUNTANTS",
    "DPSGD_ACCOUNTANTS",
    "LaplaceAccountant",
    "PRVAccountant",
    "PrivacyAccountant",
    "RDPAccountant",
    "SubsampledGaussianAccountant",
    "make_accountant",
]
