"""What the Laplace privatizers (CADP, DP-GLOW, pixel LDP) share: noise, accounting, reports.

Each privatizer perturbs every record once with a Laplace mechanism of pure epsilon, so one call to
``privatize`` is epsilon-DP per record (parallel composition over records); calls compose by basic
composition in a ``"laplace"`` accountant. Noise comes from a secret cryptographically secure stream
(:mod:`privmed.privacy.secure_rng`) unless the release is reproducible: a ``seed`` given to
``privatize`` (or ``reproducible=True``, seed 0 by default) derives the noise from that seed, and the
report then says the release has no guarantee against anyone who knows the seed.

A release carries only what a mechanism covers: the privatized images, and records named by opaque
index ids. Class labels are dropped unless ``public_labels=True`` (written in the clear and named as
public, unprotected data in privacy.json) or ``label_epsilon`` is given (randomized response, its
epsilon added to the image's); patient ids, source names and the input's metadata are never written.
A conditional flow decodes with the label that is released (the public or the randomized one).
A flow trained on the data it privatizes voids the guarantee: :func:`release` refuses it unless
``flow_trained_on_private=True``, and the report then states no guarantee (epsilon = inf).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Self

import numpy as np
import torch
from torch import Tensor

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, NotFittedError, PrivacyError
from privmed.methods.base import PrivatizingMethod
from privmed.models.flows import InvertibleFlow
from privmed.privacy.accountants import make_accountant
from privmed.privacy.calibration import check_epsilon
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
NO_GUARANTEE_FLOW_NOTE = (
    "no guarantee: the flow was trained without differential privacy on the very data this release privatizes "
    "(flow_trained_on_private), so its weights can carry those images; the Laplace epsilon of the latents does not protect them"
)
PUBLIC_LABELS = "class labels (written in the clear with public_labels: public, not protected by any mechanism)"
DROPPED_FIELDS_NOTE = (
    "patient ids, source names and the input's metadata are not released: records carry opaque index ids"
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
        self.public_labels = False
        self.label_epsilon: float | None = None
        self.flow_trained_on_private = False
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

    def set_labels(self, *, public_labels: bool = False, label_epsilon: float | None = None) -> Self:
        """How ``privatize`` treats class labels: dropped (default), written as public, or randomized at ``label_epsilon``."""
        if public_labels and label_epsilon is not None:
            raise PrivacyError("labels are either public (public_labels) or randomized (label_epsilon), not both")
        self.public_labels = bool(public_labels)
        self.label_epsilon = None if label_epsilon is None else check_epsilon(label_epsilon)
        return self

    @property
    def release_epsilon(self) -> float:
        """The epsilon per record of one ``privatize`` call, labels' randomized response included (what the ledger reserves)."""
        accountant = make_accountant("laplace")
        accountant.step(epsilon=self.mechanism_epsilon)
        if self.label_epsilon is not None:
            accountant.step(epsilon=self.label_epsilon)
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
        if flow.conditional and not self.public_labels and self.label_epsilon is None:
            raise PrivacyError(
                "a conditional flow decodes each image with its class label, which the release then reveals: give "
                "public_labels=True (--public-labels, the labels are public knowledge) or label_epsilon (--label-epsilon, randomized response)"
            )
        if self.label_epsilon is not None and (data.labels is None or not data.class_names):
            raise PrivacyError(f"{data.name}: randomized labels need class labels and the public list of class names")

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

    def privatize(
        self,
        data: ImageDataset,
        seed: int | None = None,
        batch_size: int = 256,
        *,
        public_labels: bool | None = None,
        label_epsilon: float | None = None,
    ) -> ImageDataset:
        """The privatized copy of ``data``: privatized images under opaque index ids, and nothing else
        unless asked (``public_labels`` / ``label_epsilon``: see :meth:`set_labels` and the module docstring).

        Segmentations and masks are dropped: they are drawn from the original images and would leak them.
        """
        if public_labels is not None or label_epsilon is not None:
            self.set_labels(public_labels=bool(public_labels), label_epsilon=label_epsilon)
        self.check_data(data)
        released_labels = None
        if self.label_epsilon is not None:
            from privmed.privacy.randomized_response import randomized_response

            released_labels = randomized_response(data.labels, len(data.class_names), self.label_epsilon, seed=seed)
        elif self.public_labels:
            released_labels = data.labels
        labels = None if released_labels is None else torch.from_numpy(released_labels)
        images = self.privatize_records(torch.from_numpy(data.images), labels, seed, batch_size)
        if self.label_epsilon is not None:
            self._accountant.step(epsilon=self.label_epsilon)
        images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
        self._released = data
        report = self.privacy_report()
        ids = np.array([f"record-{i + 1:06d}" for i in range(len(data))])
        return ImageDataset(
            images=images.float().numpy(),
            subjects=ids,
            sources=ids,
            labels=released_labels,
            class_names=data.class_names if released_labels is not None else None,
            name=f"{data.name}-{self.method_name}",
            record_kind=data.record_kind,
            subjects_known=False,
            metadata={
                "parent": data.name,
                **({"ref": data.metadata["ref"]} if "ref" in data.metadata else {}),  # how the user named the input: public
                "privatized_by": self.method_name,
                "privacy": report.summary_line(),
            },
        )

    @property
    def accounted_epsilon(self) -> float:
        """The epsilon per record the mechanisms of every release so far add up to (what the ledger settles)."""
        return self._accountant.get_epsilon(0.0)

    def privacy_report(self) -> PrivacyReport:
        """The guarantee of every release so far, per record of the last privatized dataset."""
        if self._accountant.steps == 0:
            raise NotFittedError(f"{type(self).__name__} has released nothing yet: call privatize(data) first")
        mechanism = self._mechanism()
        epsilon = self._accountant.get_epsilon(0.0)
        notes = self._extra_notes()
        notes.append(SECRET_NOISE_NOTE if self._seed is None else REPRODUCIBLE_NOTE)
        notes += self._label_notes()
        unit, n_units, dataset = "record", 0, None
        if self._released is not None:
            data = self._released
            unit = PrivacyUnit.RECORD.describe(data.record_kind)
            n_units = len(data)
            dataset = data.name
            notes.extend(self._unit_notes(data))
        if self.flow_trained_on_private:
            notes.insert(0, NO_GUARANTEE_FLOW_NOTE)
            epsilon = math.inf
        return PrivacyReport(
            mechanism=LAPLACE_MECHANISM,
            accountant="laplace",
            unit=unit,
            n_units=n_units,
            public_data=[PUBLIC_LABELS] if self.public_labels else [],
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

    def _label_notes(self) -> list[str]:
        if self.public_labels:
            return ["class labels are written in the clear (public_labels): they are treated as public knowledge and NOT protected"]
        if self.label_epsilon is not None:
            return [
                f"class labels privatized by randomized response at epsilon={self.label_epsilon:g} per record "
                "(kept with probability e^eps/(e^eps+k-1)); that epsilon is included in the epsilon above"
            ]
        return ["class labels are not released"]

    @staticmethod
    def _unit_notes(data: ImageDataset) -> list[str]:
        """What the per-record epsilon means for an image or a patient that has several records (no counts: they are private)."""
        notes = [DROPPED_FIELDS_NOTE]
        if data.record_kind != "image":
            notes.append(f"an image with k {data.record_kind} records gets k times the epsilon (basic composition over its records)")
        notes.append(f"a patient with k {data.record_kind} records gets k times the epsilon (basic composition over its records)")
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
