"""Differential privacy for privmed: units, accounting, calibration, mechanisms, reports, budget ledger.

The public names below are imported on first use (PEP 562), so that ``import privmed.privacy.units`` or the CLI's
``--help`` does not load torch, Opacus and dp-accounting.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

_EXPORTS = {
    "BudgetLedger": "privmed.privacy.ledger",
    "DPSGD_MECHANISM": "privmed.privacy.report",
    "GAUSSIAN_MECHANISM": "privmed.privacy.gaussian",
    "GaussianMechanism": "privmed.privacy.gaussian",
    "LAPLACE_MECHANISM": "privmed.privacy.report",
    "LaplaceAccountant": "privmed.privacy.accountants",
    "LaplaceMechanism": "privmed.privacy.mechanisms",
    "PRVAccountant": "privmed.privacy.accountants",
    "PrivacyAccountant": "privmed.privacy.accountants",
    "PrivacyReport": "privmed.privacy.report",
    "PrivacyUnit": "privmed.privacy.units",
    "RDPAccountant": "privmed.privacy.accountants",
    "check_delta": "privmed.privacy.calibration",
    "check_epsilon": "privmed.privacy.calibration",
    "check_noise_multiplier": "privmed.privacy.calibration",
    "check_sample_rate": "privmed.privacy.calibration",
    "check_steps": "privmed.privacy.calibration",
    "dataset_key": "privmed.privacy.ledger",
    "default_delta": "privmed.privacy.calibration",
    "dpsgd_epsilon": "privmed.privacy.calibration",
    "dpsgd_noise_multiplier": "privmed.privacy.calibration",
    "dpsgd_steps_for": "privmed.privacy.calibration",
    "gaussian_epsilon": "privmed.privacy.gaussian",
    "gaussian_sigma": "privmed.privacy.gaussian",
    "group_privacy": "privmed.privacy.group",
    "group_privacy_report": "privmed.privacy.group",
    "laplace_scale": "privmed.privacy.mechanisms",
    "make_accountant": "privmed.privacy.accountants",
    "steps_for_epochs": "privmed.privacy.calibration",
}

__all__ = sorted(_EXPORTS)


def _submodule(name: str) -> ModuleType:
    """The submodule ``privmed.privacy.<name>``, imported on first use (each by a plain import statement)."""
    match name:
        case "accountants":
            from privmed.privacy import accountants as module
        case "calibration":
            from privmed.privacy import calibration as module
        case "gaussian":
            from privmed.privacy import gaussian as module
        case "group":
            from privmed.privacy import group as module
        case "ledger":
            from privmed.privacy import ledger as module
        case "mechanisms":
            from privmed.privacy import mechanisms as module
        case "report":
            from privmed.privacy import report as module
        case _:
            from privmed.privacy import units as module
    return module


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_submodule(_EXPORTS[name].rpartition(".")[2]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
