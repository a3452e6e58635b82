"""Differential privacy for privmed: units, accounting, calibration, mechanisms, reports, budget ledger."""

from privmed.privacy.accountants import (
    LaplaceAccountant,
    PRVAccountant,
    PrivacyAccountant,
    RDPAccountant,
    make_accountant,
)
from privmed.privacy.calibration import (
    check_delta,
    check_epsilon,
    check_noise_multiplier,
    check_sample_rate,
    check_steps,
    default_delta,
    dpsgd_epsilon,
    dpsgd_noise_multiplier,
    dpsgd_steps_for,
    steps_for_epochs,
)
from privmed.privacy.group import group_privacy, group_privacy_report
from privmed.privacy.ledger import BudgetLedger, dataset_key
from privmed.privacy.mechanisms import LaplaceMechanism, laplace_scale
from privmed.privacy.report import DPSGD_MECHANISM, LAPLACE_MECHANISM, PrivacyReport
from privmed.privacy.units import PrivacyUnit

__all__ = [
    "DPSGD_MECHANISM",
    "LAPLACE_MECHANISM",
    "BudgetLedger",
    "LaplaceAccountant",
    "LaplaceMechanism",
    "PRVAccountant",
    "PrivacyAccountant",
    "PrivacyReport",
    "PrivacyUnit",
    "RDPAccountant",
    "check_delta",
    "check_epsilon",
    "check_noise_multiplier",
    "check_sample_rate",
    "check_steps",
    "dataset_key",
    "default_delta",
    "dpsgd_epsilon",
    "dpsgd_noise_multiplier",
    "dpsgd_steps_for",
    "group_privacy",
    "group_privacy_report",
    "laplace_scale",
    "make_accountant",
    "steps_for_epochs",
]
