"""The base class of the generative methods trained by :class:`privmed.methods.trainer.DPTrainer`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from privmed.errors import PrivmedError
from privmed.methods.base import GenerativeMethod
from privmed.methods.trainer import DPTrainer, LedgerRelease, PrivateTask
from privmed.privacy.calibration import default_delta
from privmed.privacy.plan import TrainingPlan, plan_training
from privmed.privacy.report import PrivacyReport
from privmed.privacy.units import PrivacyUnit
from privmed.runs import RunDirectory

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset


class DPGenerativeMethod(GenerativeMethod):
    """What the GANs trained by :class:`DPTrainer` share: options stored in config.json, resume, loading.

    A subclass names itself (``method_name`` as in config.json, ``method_label`` for messages), lists
    its constructor options in ``_HYPERPARAMETERS``, and restores its generator in ``load`` from
    what :meth:`_finished_run` returns.
    """

    method_name: ClassVar[str]
    method_label: ClassVar[str]
    _HYPERPARAMETERS: ClassVar[tuple[str, ...]]

    def _plan(self, data: ImageDataset) -> tuple[np.ndarray, TrainingPlan]:
        """Each record's privacy-unit id and the training plan for ``data`` from this model's options
        (delta defaults to 1/(N+1) for N units)."""
        unit = PrivacyUnit.parse(self.unit)
        n_units = data.n_units(unit)
        plan = plan_training(
            target_epsilon=float(self.epsilon), delta=default_delta(n_units) if self.delta is None else float(self.delta),
            unit=unit, record_kind=data.record_kind, n_units=n_units, batch_size=self.batch_size, epochs=self.epochs,
            max_steps=self.max_steps, max_grad_norm=self.max_grad_norm, accountant=self.accountant,
        )
        return data.unit_ids(unit), plan

    def _trainer(
        self,
        task: PrivateTask,
        plan: TrainingPlan,
        unit_ids: np.ndarray,
        report_factory: Callable[[int, float], PrivacyReport],
        run: RunDirectory | None,
        data_key: str,
        run_id: str,
    ) -> DPTrainer:
        """The :class:`DPTrainer` for ``task`` with this model's seed, callbacks and options, booked under ``run_id``."""
        return DPTrainer(
            task, plan, unit_ids, report_factory=report_factory, seed=self.seed,
            records_per_unit=None if plan.unit == PrivacyUnit.RECORD.value else self.records_per_unit, run=run,
            release=LedgerRelease(data_key, run_id, f"{self.method_label} {run.path if run else 'in memory'}"),
            on_progress=self.on_progress, on_epoch=self.on_epoch, checkpoint_every=self.checkpoint_every,
            secure_rng=self.secure_rng,
        )

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready values (what config.json stores)."""
        params = {name: getattr(self, name) for name in self._HYPERPARAMETERS}
        params["unit"] = PrivacyUnit.parse(self.unit).value
        params["epsilon"] = "inf" if math.isinf(float(self.epsilon)) else float(self.epsilon)
        return params

    @classmethod
    def _params_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("method") != cls.method_name:
            raise PrivmedError(f"this run was trained by method {config.get('method')!r}, not by {cls.method_name!r} ({cls.method_label})")
        params = dict(config["params"])
        params["epsilon"] = float(params["epsilon"])
        return params

    @classmethod
    def from_run(cls, run_dir: str | Path, **callbacks: Any) -> Self:
        """An unfitted model with the options of the run in ``run_dir`` (to resume it with ``fit(data, resume=True)``)."""
        config = RunDirectory(run_dir).read_config()
        return cls(**cls._params_from_config(config), run_dir=run_dir, **callbacks)

    @classmethod
    def _finished_run(cls, run_dir: str | Path) -> tuple[Self, dict[str, Any], dict[str, Any]]:
        """The model configured as the finished run in ``run_dir``, its config and its final checkpoint.

        The privacy report is restored here; the subclass rebuilds its generator from the checkpoint.
        """
        run = RunDirectory(run_dir)
        config = run.read_config()
        model = cls(**cls._params_from_config(config), run_dir=run_dir)
        state = run.load_checkpoint()
        if state is None or not run.privacy_path.exists():
            raise PrivmedError(f"{run.path} holds no trained generator yet: train it, or resume it with --resume")
        if not state.get("finished", False):
            raise PrivmedError(f"{run.path} did not finish training (step {state.get('step')}): resume it with --resume first")
        model.report_ = PrivacyReport.from_json(run.privacy_path)
        return model, config, state

    def privacy_report(self) -> PrivacyReport:
        """The guarantee of the trained generator (and so of every sample drawn from it)."""
        self._check_fitted("generator_", "report_")
        return self.report_
