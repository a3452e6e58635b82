"""The Laplace mechanism, for releases with a bounded L1 sensitivity (CADP, DP-GLOW).

Noise is drawn as the difference of two independent exponential variables, which is exactly
Laplace-distributed and lets a ``torch.Generator`` make a release reproducible (``torch.distributions``
takes no generator). With ``secure_rng=True`` it comes from :class:`privmed.privacy.secure_rng.SecureNoise`
(an AES-256-CTR keystream keyed by the OS) instead: unpredictable, and so not reproducible. Like every
floating-point implementation, it does not defend against the attack on the low-order bits of
floating-point Laplace noise (Mironov 2012).
"""

from __future__ import annotations

import math

import torch

from privmed.errors import PrivacyError
from privmed.privacy.calibration import check_epsilon
from privmed.privacy.report import LAPLACE_MECHANISM
from privmed.privacy.secure_rng import SecureNoise


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """The Laplace scale b = sensitivity / epsilon that makes one release epsilon-DP."""
    return _check_sensitivity(sensitivity) / check_epsilon(epsilon)


class LaplaceMechanism:
    """Adds Laplace(0, sensitivity/epsilon) noise to every element of a tensor: epsilon-DP per release.

    ``sensitivity`` is the L1 distance by which one unit's data can move the released tensor; the
    caller guarantees it (by clipping) and states it in the privacy report. Noise comes from
    ``generator`` (torch's default generator without one) or, with ``secure_rng``, from a
    cryptographically secure source that takes no generator or seed.
    """

    mechanism = LAPLACE_MECHANISM

    def __init__(self, sensitivity: float, epsilon: float, generator: torch.Generator | None = None, *, secure_rng: bool = False) -> None:
        self.sensitivity = _check_sensitivity(sensitivity)
        self.epsilon = check_epsilon(epsilon)
        if secure_rng and generator is not None:
            raise PrivacyError("secure_rng draws noise from the operating system's entropy: it takes no generator or seed")
        self.generator = generator
        self.secure_rng = secure_rng
        self._secure = SecureNoise() if secure_rng else None

    @property
    def scale(self) -> float:
        """The Laplace scale b; the noise's standard deviation is b * sqrt(2)."""
        return laplace_scale(self.sensitivity, self.epsilon)

    def sample_noise(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Independent Laplace(0, scale) draws of ``shape`` on the generator's device (CPU without one)."""
        if self._secure is not None:
            return self._secure.laplace(shape, self.scale, dtype=dtype)
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        positive = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=self.generator)
        negative = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=self.generator)
        return (positive - negative) * self.scale

    def add_noise(self, tensor: torch.Tensor) -> torch.Tensor:
        """A noisy copy of ``tensor`` (same shape, dtype and device); the input is left unchanged."""
        if not torch.is_floating_point(tensor):
            raise PrivacyError(f"the Laplace mechanism needs a floating-point tensor, got {tensor.dtype}")
        return tensor + self.sample_noise(tensor.shape, tensor.dtype).to(tensor.device)

    def __repr__(self) -> str:
        secure = ", secure_rng=True" if self.secure_rng else ""
        return f"LaplaceMechanism(sensitivity={self.sensitivity:g}, epsilon={self.epsilon:g}, scale={self.scale:g}{secure})"


def _check_sensitivity(sensitivity: float) -> float:
    try:
        value = float(sensitivity)
    except (TypeError, ValueError):
        raise PrivacyError(f"sensitivity must be a number, got {sensitivity!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PrivacyError(f"sensitivity must be a finite number > 0, got {sensitivity}")
    return value
