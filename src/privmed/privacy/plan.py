"""The privacy plan of a DP-SGD run: what is sampled, how often, and with how much noise.

:func:`plan_training` turns a target epsilon into a :class:`TrainingPlan`: sample rate
``q = batch_size / n_units``, one epoch = ``1/q`` steps, and the noise multiplier calibrated so the
planned steps end at the target epsilon. :func:`privacy_report` states what a run of the plan spent.
``target_epsilon=inf`` plans a non-private reference (no clipping, no noise).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from privmed.errors import PrivacyError, PrivmedError
from privmed.privacy.calibration import check_delta, check_epsilon, dpsgd_noise_multiplier
from privmed.privacy.report import DPSGD_MECHANISM, PrivacyReport
from privmed.privacy.units import PrivacyUnit

NON_PRIVATE_MECHANISM = "none (non-private reference: no privacy guarantee)"


@dataclass(frozen=True)
class TrainingPlan:
    """The privacy plan of a run: what is sampled, how often, and with how much noise.

    ``noise_multiplier`` is None for a non-private run (``target_epsilon`` infinite). ``unit`` is
    the :class:`PrivacyUnit` value; ``unit_word`` the concrete word for reports ("patch", "image").
    """

    target_epsilon: float
    delta: float
    unit: str
    unit_word: str
    n_units: int
    sample_rate: float
    steps_per_epoch: int
    steps: int
    noise_multiplier: float | None
    max_grad_norm: float
    accountant: str

    @property
    def private(self) -> bool:
        return self.noise_multiplier is not None

    @property
    def expected_batch_units(self) -> float:
        """The mean number of units per Poisson batch (DP-SGD divides the gradient sum by it)."""
        return self.sample_rate * self.n_units

    @property
    def epochs(self) -> int:
        """Epochs the plan spans (the last one may be partial)."""
        return math.ceil(self.steps / self.steps_per_epoch)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["target_epsilon"] = "inf" if math.isinf(self.target_epsilon) else self.target_epsilon
        return payload


def plan_training(
    *,
    target_epsilon: float,
    delta: float,
    unit: PrivacyUnit | str,
    record_kind: str,
    n_units: int,
    batch_size: int,
    epochs: int | None = None,
    max_steps: int | None = None,
    max_grad_norm: float = 1.0,
    accountant: str = "rdp",
) -> TrainingPlan:
    """Plan a run: ``max_steps`` private steps if given, else ``epochs`` epochs of ``1/q`` steps each.

    The noise multiplier is the smallest one whose epsilon after all planned steps is at most
    ``target_epsilon`` (``privmed.privacy.calibration.dpsgd_noise_multiplier``).
    """
    unit = PrivacyUnit.parse(unit)
    target_epsilon = float(target_epsilon)
    private = not math.isinf(target_epsilon)
    if private:
        check_epsilon(target_epsilon)
    elif target_epsilon < 0:
        raise PrivacyError(f"epsilon must be positive (or inf for a non-private reference), got {target_epsilon}")
    check_delta(delta, n_units)
    if batch_size < 1:
        raise PrivmedError(f"batch size must be positive, got {batch_size}")
    if batch_size > n_units:
        raise PrivmedError(
            f"batch size {batch_size} exceeds the {n_units} privacy units ({unit.describe(record_kind)}s) in the data: "
            "lower --batch-size or use more data"
        )
    if max_steps is None and (epochs is None or epochs < 1):
        raise PrivmedError(f"give epochs >= 1 or max_steps >= 1, got epochs={epochs}")
    if max_steps is not None and max_steps < 1:
        raise PrivmedError(f"max_steps must be >= 1, got {max_steps}")
    if max_grad_norm <= 0:
        raise PrivacyError(f"the clipping bound max_grad_norm must be positive, got {max_grad_norm}")
    sample_rate = batch_size / n_units
    steps_per_epoch = max(1, round(1.0 / sample_rate))
    steps = int(max_steps) if max_steps is not None else steps_per_epoch * int(epochs)
    noise = dpsgd_noise_multiplier(target_epsilon, sample_rate, steps, delta, accountant=accountant) if private else None
    return TrainingPlan(
        target_epsilon=target_epsilon,
        delta=float(delta),
        unit=unit.value,
        unit_word=unit.describe(record_kind),
        n_units=int(n_units),
        sample_rate=sample_rate,
        steps_per_epoch=steps_per_epoch,
        steps=steps,
        noise_multiplier=noise,
        max_grad_norm=float(max_grad_norm),
        accountant=accountant,
    )


def privacy_report(
    plan: TrainingPlan,
    steps: int,
    epsilon: float,
    *,
    seed: int | None,
    dataset: str | None,
    notes: list[str],
    group_privacy: dict[str, Any] | None = None,
) -> PrivacyReport:
    """The :class:`PrivacyReport` of ``steps`` private steps of ``plan`` that spent ``epsilon``."""
    return PrivacyReport(
        mechanism=DPSGD_MECHANISM if plan.private else NON_PRIVATE_MECHANISM,
        accountant=plan.accountant if plan.private else "none",
        unit=plan.unit_word,
        n_units=plan.n_units,
        epsilon=epsilon if plan.private else math.inf,
        delta=plan.delta,
        sample_rate=plan.sample_rate,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm if plan.private else None,
        steps=steps,
        seed=seed,
        notes=list(notes),
        group_privacy=group_privacy,
        dataset=dataset,
    )
