"""What the Laplace privatizers (CADP, DP-GLOW, pixel LDP) share: noise, accounting, reports.

Each privatizer perturbs every record once with a Laplace mechanism of pure epsilon, so one call to
``privatize`` is epsilon-DP per record (parallel composition over records); calls compose by basic
composition in a ``"laplace"`` accountant. Noise comes from a secret cryptographically secure stream
(:mod:`privmed.privacy.secure_rng`) unless the release is reproducible: a ``seed`` given to
``privatize`` (or ``reproducible=True``, seed 0 by default) derives the noise from that seed, and the
report then says the release has no guarantee against anyone who knows the seed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import Self

import numpy as np
import torch
from torch import Tensor

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, NotFittedError
from privmed.methods.base import PrivatizingMethod
from privmed.models.flows import InvertibleFlow
from privmed.privacy.accountants import make_accountant
from privmed.privacy.calibration import check_epsilon
from privmed.privacy.ledger import dataset_key
from privmed.privacy.mechanisms import LaplaceMechanism
from privmed.privacy.report import LAPLACE_MECHANISM, PrivacyReport
from privmed.privacy.units import PrivacyUnit

FLOW_DATA_NOTE = (
    "the flow (and any statistics fitted on its latents) was trained without differential privacy: "
    "its training data is not covered by this guarantee and must be public or otherwise authorized"
)

SECRET_NOISE_NOTE = "Laplace noise drawn from a secret cryptographically secure source (AES-256-CTR keyed by os.urandom), never stored"
REPRODUCIBLE_NOTE = (
    "REPRODUCIBLE RELEASE: the Laplace noise follows from the seed; no guarantee against anyone who knows the seed "
    "(a research run, not a release)"
)


def group_epsilon(epsilon_per_record: float, records: int) -> float:
    """Epsilon of ``records`` releases of one individual, each ``epsilon_per_record``-DP (basic composition)."""
    accountant = make_accountant("laplace")
    accountant.step(epsilon=epsilon_per_record, num_steps=records)
    return accountant.get_epsilon(0.0)


class LaplacePrivatizer(PrivatizingMethod):
    """Base of the local-DP privatizers: subclasses build ``_mechanism`` and ``_privatize_tensor``.

    The Laplace noise is secret unless the release is reproducible: ``reproducible=True`` or a seed
    given to ``privatize`` (see the module docstring).
    """

    method_name = "laplace"

    def __init__(self, epsilon: float, *, reproducible: bool = False) -> None:
        check_epsilon(epsilon)
        self.epsilon = epsilon
        self.reproducible = reproducible
        self._accountant = make_accountant("laplace")
        self._released: ImageDataset | None = None
        self._seed: int | None = None

    @property
    @abstractmethod
    def sensitivity(self) -> float:
        """L1 sensitivity of what the mechanism perturbs, for one record."""

    @property
    def mechanism_epsilon(self) -> float:
        """The epsilon the Laplace noise is calibrated to (with ``sensitivity``, it sets the scale)."""
        return self.epsilon

    def _mechanism(self, seed: int | None = None) -> LaplaceMechanism:
        return LaplaceMechanism(self.sensitivity, self.mechanism_epsilon, seed=seed)

    @abstractmethod
    def _privatize_tensor(self, records: Tensor, labels: Tensor | None, mechanism: LaplaceMechanism) -> Tensor:
        """Privatize a batch of records with ``mechanism`` (no accounting)."""

    def _extra_notes(self) -> list[str]:
        return []

    @property
    def release_epsilon(self) -> float:
        """The epsilon per record of one ``privatize`` call (what the budget ledger reserves)."""
        accountant = make_accountant("laplace")
        accountant.step(epsilon=self.mechanism_epsilon)
        return accountant.get_epsilon(0.0)

    @property
    def noise_scale(self) -> float:
        """The Laplace scale b (noise density proportional to exp(-|x|/b))."""
        return float(self._mechanism().scale)

    def fit(self, data: ImageDataset | None = None) -> Self:
        """Nothing to learn from the private data; returns ``self``."""
        return self

    def check_data(self, data: ImageDataset) -> None:
        """Raise a :class:`DataError` if ``data`` cannot be privatized (called before any budget is reserved)."""
        flow: InvertibleFlow | None = getattr(self, "flow", None)
        if flow is None:
            return
        shape = getattr(flow, "image_shape", None)
        if shape is not None and tuple(data.images.shape[1:]) != tuple(shape):
            raise DataError(f"{data.name}: images of shape {tuple(data.images.shape[1:])}, the flow takes {tuple(shape)}")
        if flow.conditional and data.labels is None:
            raise DataError(f"{data.name}: the flow is conditional on the class, and this data has no class labels")

    @torch.inference_mode()
    def privatize_records(self, records: Tensor, labels: Tensor | None = None, seed: int | None = None, batch_size: int = 256) -> Tensor:
        """Privatize a tensor of records (images or table rows) and account the release.

        The noise is secret unless ``seed`` is given or the privatizer is ``reproducible`` (seed 0 by default).
        """
        if seed is None and self.reproducible:
            seed = 0
        mechanism = self._mechanism(seed)
        parts = [
            self._privatize_tensor(records[start : start + batch_size], None if labels is None else labels[start : start + batch_size], mechanism)
            for start in range(0, records.shape[0], batch_size)
        ]
        self._accountant.step(epsilon=self.mechanism_epsilon)
        self._seed = seed
        return torch.cat(parts) if parts else records.clone()

    def privatize(self, data: ImageDataset, seed: int | None = None, batch_size: int = 256) -> ImageDataset:
        """The privatized copy of ``data``: images replaced, labels/subjects/sources kept.

        Segmentations and masks are dropped: they are drawn from the original images and would leak them.
        """
        self.check_data(data)
        labels = None if data.labels is None else torch.from_numpy(data.labels)
        images = self.privatize_records(torch.from_numpy(data.images), labels, seed, batch_size)
        images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
        self._released = data
        report = self.privacy_report()
        return replace(
            data,
            images=images.float().numpy(),
            segmentations=None,
            masks=None,
            name=f"{data.name}-{self.method_name}",
            metadata={**data.metadata, "privatized_by": self.method_name, "privacy": report.summary_line()},
        )

    def privacy_report(self) -> PrivacyReport:
        """The guarantee of every release so far, per record of the last privatized dataset."""
        if self._accountant.steps == 0:
            raise NotFittedError(f"{type(self).__name__} has released nothing yet: call privatize(data) first")
        mechanism = self._mechanism()
        epsilon = self._accountant.get_epsilon(0.0)
        notes = self._extra_notes()
        notes.append(SECRET_NOISE_NOTE if self._seed is None else REPRODUCIBLE_NOTE)
        unit, n_units, dataset = "record", 0, None
        if self._released is not None:
            data = self._released
            unit = PrivacyUnit.RECORD.describe(data.record_kind)
            n_units = len(data)
            dataset = dataset_key(data)
            notes.extend(self._unit_notes(data, epsilon))
        return PrivacyReport(
            mechanism=LAPLACE_MECHANISM,
            accountant="laplace",
            unit=unit,
            n_units=n_units,
            epsilon=epsilon,
            delta=0.0,
            laplace_scale=float(mechanism.scale),
            sensitivity=float(self.sensitivity),
            steps=self._accountant.steps,
            seed=self._seed,
            reproducible=self._seed is not None,
            notes=notes,
            dataset=dataset,
        )

    @staticmethod
    def _unit_notes(data: ImageDataset, epsilon: float) -> list[str]:
        """What the per-record epsilon means for an image or a patient that has several records."""
        notes = []
        for unit, keys in ((PrivacyUnit.IMAGE, data.sources), (PrivacyUnit.PATIENT, data.subjects)):
            if unit is PrivacyUnit.IMAGE and data.record_kind == "image":
                continue
            _, counts = np.unique(keys, return_counts=True)
            most = int(counts.max()) if counts.size else 0
            if most > 1:
                notes.append(
                    f"a {unit.value} with {most} {data.record_kind} records gets epsilon={group_epsilon(epsilon, most):.4g} "
                    f"(basic composition over its records)"
                )
        if not data.subjects_known:
            notes.append("patient ids are not in the data: one patient per image is assumed")
        return notes


@torch.inference_mode()
def privatize_in_latent_space(
    flow: InvertibleFlow,
    records: Tensor,
    labels: Tensor | None,
    perturb: Callable[[Tensor], Tensor],
) -> Tensor:
    """``f^-1(perturb(f(x, c)), c)``: everything after ``perturb`` is post-processing of the noisy latent."""
    was_training = flow.training
    flow.eval()
    try:
        condition = labels if flow.conditional else None
        dtype = next(flow.parameters()).dtype
        return flow.decode(perturb(flow.encode(records.to(dtype), condition)), condition)
    finally:
        flow.train(was_training)
