"""A flow for table rows (seed 002's diabetes experiment): dense couplings on (N, D) features."""

from __future__ import annotations

from torch import Tensor, nn

from privmed.errors import PrivmedError
from privmed.models.flows.base import InvertibleFlow
from privmed.models.flows.glow import COUPLINGS
from privmed.models.flows.layers import ActNorm, FlowStep, InvertibleLayer


class TabularFlow(InvertibleFlow):
    """``depth`` flow steps on rows of ``n_features`` (>= 2) values; optionally class-conditional.

    Rows are taken in their own units: the first ActNorm standardises each column on the first
    training batch. With ``coupling="gin"`` that ActNorm is the only volume change (constant in x).
    """

    kind = "tabular"

    def __init__(self, n_features: int, depth: int = 6, hidden_features: int = 64, coupling: str = "glow", n_classes: int = 0, seed: int = 0) -> None:
        super().__init__(n_classes)
        if n_features < 2:
            raise PrivmedError(f"a tabular flow needs at least 2 features, got {n_features}")
        if coupling not in COUPLINGS:
            raise PrivmedError(f"unknown coupling {coupling!r}: use one of {', '.join(COUPLINGS)}")
        self._config = {
            "n_features": n_features,
            "depth": depth,
            "hidden_features": hidden_features,
            "coupling": coupling,
            "n_classes": n_classes,
            "seed": seed,
        }
        self.n_features = n_features
        steps: list[InvertibleLayer] = [ActNorm(n_features)] if coupling == "gin" else []
        steps += [FlowStep(n_features, hidden_features, n_classes, coupling, dense=True, seed=seed * 10007 + k) for k in range(depth)]
        self.steps = nn.ModuleList(steps)

    @property
    def latent_dim(self) -> int:
        return self.n_features

    def _forward(self, x: Tensor, onehot: Tensor | None) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise PrivmedError(f"this flow takes rows of {self.n_features} features, got shape {tuple(x.shape)}")
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, step_log_det = step(x, onehot)
            log_det = log_det + step_log_det
        return x, log_det

    def _inverse(self, z: Tensor, onehot: Tensor | None) -> Tensor:
        for step in reversed(self.steps):
            z = step.inverse(z, onehot)
        return z
