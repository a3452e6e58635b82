"""What every privmed flow offers: exact encode/decode, exact log-density, sampling.

A flow is a bijection ``z = f(x, c)`` onto a standard normal latent of the same dimension. The
latent is always returned flat, (N, D), because the privatizers (CADP, DP-GLOW) clip and perturb it
as one vector per record. ``c`` is an int64 tensor of class labels (N,) for a conditional flow,
``None`` otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from privmed.errors import DataError

_LOG_2PI = math.log(2 * math.pi)


class InvertibleFlow(nn.Module):
    """Base class: subclasses implement ``_forward(x, onehot)`` and ``_inverse(z, onehot)``."""

    kind: str = ""

    def __init__(self, n_classes: int = 0) -> None:
        super().__init__()
        if n_classes < 0:
            raise DataError(f"n_classes must be >= 0, got {n_classes}")
        self.n_classes = n_classes
        self._config: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments plus ``kind``: enough for :func:`privmed.models.flows.build_flow`."""
        return {"kind": self.kind, **self._config}

    @property
    def conditional(self) -> bool:
        return self.n_classes > 0

    @property
    def latent_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _onehot(self, c: Tensor | None, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        if c is None:
            raise DataError(f"this flow is conditional on {self.n_classes} classes: pass the class labels")
        labels = torch.as_tensor(c, device=self._device()).long().reshape(-1)
        if labels.shape[0] != n:
            raise DataError(f"{labels.shape[0]} class labels for {n} records")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise DataError(f"class labels must lie in 0..{self.n_classes - 1} for this flow, got {int(labels.min())}..{int(labels.max())}")
        return F.one_hot(labels, self.n_classes).to(self._dtype())

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _forward(self, x: Tensor, onehot: Tensor | None) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse(self, z: Tensor, onehot: Tensor | None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z, log_det)``: flat latents (N, D) and log|det dz/dx| per record (N,)."""
        return self._forward(x, self._onehot(c, x.shape[0]))

    def encode(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The latent ``z = f(x, c)``, flat (N, D)."""
        return self.forward(x, c)[0]

    def decode(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """The record ``x = f^-1(z, c)``; exact inverse of :meth:`encode` (no clamping)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise DataError(f"latents must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self._inverse(z, self._onehot(c, z.shape[0]))

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """Exact log-density (nats) of each record under the flow, (N,)."""
        z, log_det = self.forward(x, c)
        return -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * _LOG_2PI) + log_det

    @torch.no_grad()
    def sample(self, n: int, c: Tensor | None = None, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` records by decoding standard normal latents scaled by ``temperature``."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self._dtype()) * temperature
        return self.decode(z.to(self._device()), c)
