"""The Laplace mechanism, for releases with a bounded L1 sensitivity (CADP, DP-GLOW).

Noise comes from :class:`privmed.privacy.secure_rng.RandomStream`: by default a secret AES-256-CTR
keystream keyed by the OS (unpredictable, so not reproducible); with a ``seed`` a stream derived from
it (a reproducible research release: no guarantee against anyone who knows the seed). Either way it
is drawn in float64 with exact tails (a truncated tail would break pure DP) and then cast. Like every
floating-point implementation, it does not defend against the attack on the low-order bits of
floating-point Laplace noise (Mironov 2012).
"""

from __future__ import annotations

import math

import torch

from privmed.errors import PrivacyError
from privmed.privacy.calibration import check_epsilon
from privmed.privacy.report import LAPLACE_MECHANISM
from privmed.privacy.secure_rng import random_stream

LAPLACE_PURPOSE = "laplace-noise"


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """The Laplace scale b = sensitivity / epsilon that makes one release epsilon-DP."""
    return check_positive(sensitivity) / check_epsilon(epsilon)


class LaplaceMechanism:
    """Adds Laplace(0, sensitivity/epsilon) noise to every element of a tensor: epsilon-DP per release.

    ``sensitivity`` is the L1 distance by which one unit's data can move the released tensor; the
    caller guarantees it (by clipping) and states it in the privacy report. Noise comes from a
    secret stream, or from one reproducible from ``seed`` (a research release).
    """

    mechanism = LAPLACE_MECHANISM

    def __init__(self, sensitivity: float, epsilon: float, seed: int | None = None) -> None:
        self.sensitivity = check_positive(sensitivity)
        self.epsilon = check_epsilon(epsilon)
        self.seed = None if seed is None else int(seed)
        self._stream = random_stream(self.seed, LAPLACE_PURPOSE)

    @property
    def scale(self) -> float:
        """The Laplace scale b; the noise's standard deviation is b * sqrt(2)."""
        return laplace_scale(self.sensitivity, self.epsilon)

    @property
    def reproducible(self) -> bool:
        """Whether the noise follows from a seed rather than from a secret stream."""
        return self.seed is not None

    def sample_noise(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Independent Laplace(0, scale) draws of ``shape`` on the CPU (float64, then cast to ``dtype``)."""
        return self._stream.laplace(shape, self.scale, dtype=dtype)

    def add_noise(self, tensor: torch.Tensor) -> torch.Tensor:
        """A noisy copy of ``tensor`` (same shape, dtype and device); the input is left unchanged."""
        if not torch.is_floating_point(tensor):
            raise PrivacyError(f"the Laplace mechanism needs a floating-point tensor, got {tensor.dtype}")
        return tensor + self.sample_noise(tensor.shape, tensor.dtype).to(tensor.device)

    def __repr__(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed} (reproducible)"
        return f"LaplaceMechanism(sensitivity={self.sensitivity:g}, epsilon={self.epsilon:g}, scale={self.scale:g}{seed})"


def check_positive(value: float, name: str = "sensitivity") -> float:
    """``value`` as a float, or a :class:`PrivacyError` naming ``name`` unless it is finite and > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PrivacyError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise PrivacyError(f"{name} must be a finite number > 0, got {value}")
    return number
