"""The methods privmed knows, by name, in the manner of Opacus's accountant registry.

Every lookup of a method by its name goes through here: the sweep, the audit, ``privmed generate``,
the HTML report's titles and the model-score attacks. A :class:`MethodSpec` says what a method is
(its class and kind), how to build it from options (``build(epsilon, **options)``), how to load a
trained one from its run directory, how its releases are evaluated and attacked, and its title.

Adding a method is its module plus one :func:`register` call at the end of this file.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.methods.acgan import ACGAN
from privmed.methods.acgan import score_members as acgan_member_scores
from privmed.methods.base import PrivateMethod
from privmed.methods.cadp import CADP
from privmed.methods.dpglow import DPGLOW
from privmed.methods.dpmerf import DPMERF
from privmed.methods.dpsgd_classifier import DPSGDClassifier
from privmed.methods.dpwgan import DPWGAN
from privmed.methods.pixel_ldp import PixelLDP
from privmed.methods.vessel_sim import VesselSimFit

MemberScorer = Callable[[Path, ImageDataset], np.ndarray]
"""A model-score attack: one score per image of ``data`` by the model in a run directory, higher = more likely a member."""


class MethodKind(str, Enum):
    """What a method releases."""

    GENERATIVE = "generative"
    """A generator trained under DP: ``fit(data)``, then ``sample(n)``."""
    PRIVATIZING = "privatizing"
    """A noisy copy of each record (local DP): ``privatize(data)``."""
    MODEL = "model"
    """A model trained under DP (its weights and predictions); no records are released."""


_CLASSIFIER_EVALUATION: dict[str, Any] = {
    "model": "cnn", "epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "confidence": 0.95, "n_resamples": 2000,
}

METRIC_LABELS = {"dice": "Dice on real test images (U-Net)", "roc_auc": "ROC AUC on real test images"}
"""What each utility metric measures (the sweep's plot axis)."""


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    ``build(epsilon, **options)`` makes an unfitted method (default: the class itself); its keyword
    arguments are the options a sweep or an audit configuration may give. ``load(run_dir)`` restores
    a trained method from its run directory (default: ``cls.load``). ``metric`` and ``evaluation``
    are the utility a sweep measures on its releases and that evaluation's knobs with their defaults
    (``samples: None`` = as many as the training data). ``member_scorer`` is the model-score attack
    on a trained run, if the method offers one; ``class_conditional`` marks a generator that samples
    by class (``sample(n, class_label=...)``).
    """

    name: str
    cls: type[PrivateMethod]
    kind: MethodKind
    title: str
    metric: str = "roc_auc"
    evaluation: Mapping[str, Any] = field(default_factory=lambda: dict(_CLASSIFIER_EVALUATION))
    build: Callable[..., PrivateMethod] | None = None
    load: Callable[[Path], PrivateMethod] | None = None
    member_scorer: MemberScorer | None = None
    class_conditional: bool = False

    def make(self, epsilon: float, **options: Any) -> PrivateMethod:
        """An unfitted method at ``epsilon`` with ``options``."""
        return (self.build or self.cls)(epsilon, **options)

    def options(self) -> tuple[frozenset[str], frozenset[str]]:
        """The (required, accepted) keyword options of :meth:`make`, epsilon excluded."""
        parameters = list(inspect.signature(self.build or self.cls).parameters.values())[1:]
        accepted = frozenset(p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        required = frozenset(p.name for p in parameters if p.name in accepted and p.default is inspect.Parameter.empty)
        return required, accepted

    def load_run(self, run_dir: str | Path) -> PrivateMethod:
        """The trained method of a finished run directory."""
        loader = self.load or getattr(self.cls, "load", None)
        if loader is None:
            raise PrivmedError(f"{run_dir}: a {self.name} run cannot be loaded (the method keeps no trained model)")
        return loader(Path(run_dir))


METHODS: dict[str, MethodSpec] = {}
"""Every registered method by name (add to it with :func:`register`)."""


def register(spec: MethodSpec, *, force: bool = False) -> MethodSpec:
    """Add ``spec`` under its name (``force`` replaces an entry of the same name)."""
    if spec.name in METHODS and not force:
        raise ValueError(f"a method named {spec.name!r} is registered already")
    if spec.metric not in METRIC_LABELS:
        raise ValueError(f"{spec.name}: unknown utility metric {spec.metric!r}; metrics: {', '.join(METRIC_LABELS)}")
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The spec registered as ``name``; a :class:`PrivmedError` lists the known names otherwise."""
    spec = METHODS.get(str(name).strip().lower())
    if spec is None:
        raise PrivmedError(f"unknown method {name!r}; methods: {', '.join(METHODS)}")
    return spec


def method_names(*kinds: MethodKind) -> tuple[str, ...]:
    """The registered names, in registration order (of ``kinds`` only, when given)."""
    return tuple(name for name, spec in METHODS.items() if not kinds or spec.kind in kinds)


def method_title(name: str | None) -> str | None:
    """The title of a registered method, None for an unknown name."""
    spec = METHODS.get(str(name))
    return spec.title if spec is not None else None


def method_of_run(run_dir: str | Path) -> MethodSpec:
    """The spec of the method that wrote the run directory (config.json's ``method``)."""
    from privmed.runs import RunDirectory

    config = RunDirectory(run_dir).read_config()
    name = config.get("method") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise PrivmedError(f"{run_dir}/config.json names no method (key 'method')")
    return get_method(name)


# ---------------------------------------------------------------------------------------------- the methods
# One register(...) per method. A new method: write its module, import its class above, add its entry here.

register(MethodSpec(
    name="dpwgan", cls=DPWGAN, kind=MethodKind.GENERATIVE, title="DP-WGAN: synthetic image + vessel-label pairs (Kossen et al. 2022)",
    metric="dice", evaluation={"samples": 256, "unet_steps": 200, "patch_size": 96},
))
register(MethodSpec(
    name="acgan", cls=ACGAN, kind=MethodKind.GENERATIVE, title="AC-GAN: class-conditional synthetic images (Sun, Plawinski et al.)",
    evaluation={**_CLASSIFIER_EVALUATION, "samples": None}, member_scorer=acgan_member_scores, class_conditional=True,
))
register(MethodSpec(
    name="cadp", cls=CADP, kind=MethodKind.PRIVATIZING, build=CADP.from_flow_dir,
    title="CADP: each image privatized in a conditional INN's latent space (Tölle et al.)",
))
register(MethodSpec(
    name="dpglow", cls=DPGLOW, kind=MethodKind.PRIVATIZING, build=DPGLOW.from_flow_dir,
    title="DP-GLOW: each image privatized in a Glow latent space (Shibata et al.)",
))
register(MethodSpec(name="pixel-ldp", cls=PixelLDP, kind=MethodKind.PRIVATIZING, title="Pixel Laplace noise (local DP baseline)"))
register(MethodSpec(
    name="dpsgd-classifier", cls=DPSGDClassifier, kind=MethodKind.MODEL,
    title="DP-SGD classifier: the trained model is the release (seed 002's baseline)",
))
register(MethodSpec(
    name="dpmerf", cls=DPMERF, kind=MethodKind.GENERATIVE, class_conditional=True,
    title="DP-MERF: a generator trained on one Gaussian release of per-class mean embeddings (Harder et al. 2021)",
    evaluation={**_CLASSIFIER_EVALUATION, "samples": None},
))
register(MethodSpec(
    name="vessel-sim", cls=VesselSimFit, kind=MethodKind.GENERATIVE,
    title="Vessel simulator: the public retinal vessel simulator fitted to private pairs by one Gaussian release",
    metric="dice", evaluation={"samples": 256, "unet_steps": 200, "patch_size": 96},
))
