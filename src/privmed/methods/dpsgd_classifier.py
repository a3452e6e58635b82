"""A classifier trained with DP-SGD at a target epsilon: seed 002's baseline against CADP.

Instead of releasing privatized images, the hospital trains the classifier itself under DP-SGD and
releases the model. It trains through the same :class:`~privmed.methods.trainer.DPTrainer` as the
GANs: the plan (:func:`~privmed.privacy.plan.plan_training`) calibrates the noise once for the whole
schedule, each step samples privacy units by Poisson sampling, clips each unit's gradient, adds
Gaussian noise and is one accountant step, and the release is booked in the budget ledger.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.methods.base import PrivateMethod
from privmed.methods.trainer import DPTrainer, LedgerRelease, PrivateGradient, start_run
from privmed.models.classifiers import EpochCallback, build_classifier, labelled_tensors, predict_proba
from privmed.privacy.calibration import default_delta
from privmed.privacy.ledger import dataset_key
from privmed.privacy.plan import plan_training, privacy_report
from privmed.privacy.report import PrivacyReport
from privmed.privacy.units import PrivacyUnit
from privmed.runs import RunDirectory

logger = logging.getLogger(__name__)

METHOD_NAME = "dpsgd-classifier"
_HYPERPARAMETERS = (
    "target_epsilon", "delta", "unit", "model", "epochs", "batch_size", "max_grad_norm", "learning_rate", "accountant", "seed", "reproducible",
)


class _ClassifierTask:
    """One private step of the classifier: cross-entropy on the Poisson batch, DP-SGD gradient, Adam."""

    metric_names = ("loss",)

    def __init__(self, network: nn.Module, images: torch.Tensor, labels: torch.Tensor, unit_ids: np.ndarray, learning_rate: float) -> None:
        self.private_module = network
        self.images, self.labels = images, labels
        self.unit_ids = torch.from_numpy(np.asarray(unit_ids, dtype=np.int64))
        self.optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)

    def private_step(self, batch: np.ndarray, step: int, gradient: PrivateGradient) -> dict[str, float]:
        rows = torch.from_numpy(np.asarray(batch, dtype=np.int64))
        self.optimizer.zero_grad(set_to_none=True)
        with gradient.capture():
            logits = self.private_module(self.images[rows])
        losses = F.cross_entropy(logits, self.labels[rows], reduction="none")
        gradient.backward(losses, self.unit_ids[rows])
        self.optimizer.step()
        return {"loss": float(losses.detach().mean())} if rows.numel() else {}

    def end_epoch(self, epoch: int, run: RunDirectory | None) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.private_module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.private_module.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])


class DPSGDClassifier(PrivateMethod):
    """Train an image classifier under (epsilon, delta)-DP per privacy unit with DP-SGD.

    Parameters are stored unchanged; ``fit`` plans ``epochs`` passes at an expected ``batch_size``
    units per step (sample rate q = batch_size / units), calibrates the noise multiplier once, then
    trains with Adam through :class:`~privmed.methods.trainer.DPTrainer` (``run_dir``, if given,
    gets config.json, metrics.csv, checkpoints, privacy.json and model.pt). ``delta`` defaults to
    ``default_delta(units)`` (below 1/units). The noise and the batches are secret unless ``reproducible``
    (then they follow from ``seed``: a research run, flagged in its report). Learned attributes: ``network_``, ``report_``, ``plan_``.

    Why the learning rate is 1e-2 and not the non-private 1e-3: DP-SGD takes few, large-batch steps
    (1/q per epoch: 300 for 30 epochs at q = 0.1) and each carries noise, so at 1e-3 the network
    hardly leaves its initialization (on PneumoniaMNIST it stayed at the majority class at every
    epsilon); at 1e-2 it learns (test AUC 0.85 at epsilon 1, 0.92 at 10; benchmarks/results/pneumonia_cadp.md).
    """

    def __init__(
        self,
        target_epsilon: float,
        *,
        delta: float | None = None,
        unit: PrivacyUnit | str = PrivacyUnit.IMAGE,
        model: str = "cnn",
        epochs: int = 10,
        batch_size: int = 256,
        max_grad_norm: float = 1.0,
        learning_rate: float = 1e-2,
        accountant: str = "rdp",
        seed: int = 0,
        reproducible: bool = False,
        run_dir: str | Path | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.target_epsilon = target_epsilon
        self.delta = delta
        self.unit = unit
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.learning_rate = learning_rate
        self.accountant = accountant
        self.seed = seed
        self.reproducible = reproducible
        self.run_dir = run_dir
        self.on_epoch = on_epoch
        self.network_: nn.Module | None = None

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready values (what config.json stores)."""
        params = {name: getattr(self, name) for name in _HYPERPARAMETERS}
        params["unit"] = PrivacyUnit.parse(self.unit).value
        return params

    def fit(self, data: ImageDataset) -> Self:
        """Plan, calibrate and train on ``data`` (labelled images) under DP-SGD; the release is booked in the ledger."""
        images, labels = labelled_tensors(data)
        unit = PrivacyUnit.parse(self.unit)
        n_units = data.n_units(unit)
        if self.epochs < 1:
            raise PrivmedError(f"epochs must be positive, got {self.epochs}")
        plan = plan_training(
            target_epsilon=float(self.target_epsilon), delta=default_delta(n_units) if self.delta is None else float(self.delta),
            unit=unit, record_kind=data.record_kind, n_units=n_units, batch_size=self.batch_size, epochs=self.epochs,
            max_grad_norm=self.max_grad_norm, accountant=self.accountant,
        )
        if not plan.private:
            raise PrivmedError("the DP-SGD classifier needs a finite epsilon (train_classifier trains without DP)")
        logger.info("DP-SGD classifier: q=%.4f, %d steps, noise multiplier %.4f", plan.sample_rate, plan.steps, plan.noise_multiplier)
        key = dataset_key(data)
        run = RunDirectory(self.run_dir) if self.run_dir is not None else None
        run_id = start_run(
            run, False, method=METHOD_NAME, params=self.get_params(), data_key=key, plan=plan,
            data_info={"name": data.name, "records": len(data), "image_channels": data.n_channels, "n_classes": max(data.n_classes, 2)},
        )
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            network = build_classifier(self.model, data.n_channels, max(data.n_classes, 2))
        network.train()
        task = _ClassifierTask(network, images, labels, data.unit_ids(unit), self.learning_rate)
        notes = [
            "the release is the trained classifier (its weights and predictions); no images are released",
            f"Poisson sampling of {plan.unit_word}s at rate {plan.sample_rate:.4g}: "
            f"{self.epochs} epochs x {plan.steps_per_epoch} steps = {plan.steps} steps",
        ]

        def report_factory(steps: int, epsilon: float) -> PrivacyReport:
            return privacy_report(plan, steps, epsilon, seed=self.seed, dataset=data.name, notes=notes)

        def on_epoch(row: dict[str, Any]) -> None:
            if self.on_epoch is not None:
                self.on_epoch(int(row["epoch"]), plan.epochs, float(row.get("loss", float("nan"))))

        trainer = DPTrainer(
            task, plan, data.unit_ids(unit), report_factory=report_factory, seed=self.seed, run=run,
            release=LedgerRelease(key, run_id, f"DP-SGD classifier {run.path if run else 'in memory'}"), on_epoch=on_epoch,
            reproducible=self.reproducible,
        )
        try:
            self.report_ = trainer.train()
        finally:
            trainer.gradient.close()  # the released network is a plain module again (its parameters require gradients)
        if run is not None:
            torch.save({"network": network.state_dict(), "n_channels": data.n_channels, "n_classes": max(data.n_classes, 2)}, run.path / "model.pt")
        self.network_ = network.eval()
        self.plan_ = plan
        return self

    @classmethod
    def load(cls, run_dir: str | Path) -> Self:
        """The trained classifier of a finished run directory (network and privacy report)."""
        run = RunDirectory(run_dir)
        config = run.read_config()
        if config.get("method") != METHOD_NAME or not (run.path / "model.pt").is_file() or not run.privacy_path.is_file():
            raise PrivmedError(f"{run.path} holds no trained DP-SGD classifier")
        model = cls(**config["params"], run_dir=run_dir)
        saved = torch.load(run.path / "model.pt", weights_only=True)
        network = build_classifier(model.model, saved["n_channels"], saved["n_classes"])
        network.load_state_dict(saved["network"])
        model.network_ = network.eval()
        model.report_ = PrivacyReport.from_json(run.privacy_path)
        return model

    def predict_proba(self, data: ImageDataset) -> np.ndarray:
        """Class probabilities (N, K) of the trained classifier."""
        self._check_fitted("network_")
        return predict_proba(self.network_, data)

    def privacy_report(self) -> PrivacyReport:
        """(epsilon, delta) of the trained classifier per unit, as the trainer's accountant spent it."""
        self._check_fitted("network_", "report_")
        return self.report_
