"""Image-domain local DP (seed 003's baseline): Laplace noise on every pixel of every image.

Pixels lie in [0, 1], so two images of D values differ by at most D in L1: the noise scale is
D/epsilon for epsilon-DP per image. Seed 003 states the same mechanism as "epsilon/(H*W) per pixel";
that per-pixel figure is not a guarantee of its own, only the per-image epsilon divided by H*W.
Outputs are clipped back to [0, 1] (post-processing).
"""

from __future__ import annotations

import math
from typing import Self

from torch import Tensor

from privmed.data.dataset import ImageDataset
from privmed.errors import NotFittedError
from privmed.methods.local_dp import LaplacePrivatizer
from privmed.privacy.mechanisms import LaplaceMechanism


class PixelLDP(LaplacePrivatizer):
    """Laplace noise of scale (values per image)/``epsilon`` on each pixel; ``epsilon`` per image."""

    method_name = "pixel-ldp"

    def __init__(self, epsilon: float, *, reproducible: bool = False) -> None:
        super().__init__(epsilon, reproducible=reproducible)
        self._values_per_record: int | None = None

    @property
    def sensitivity(self) -> float:
        """The number of values in one image (each pixel ranges over [0, 1]); known after ``fit`` or ``privatize``."""
        if self._values_per_record is None:
            raise NotFittedError("PixelLDP does not know the image size yet: call fit(data) or privatize(data) first")
        return float(self._values_per_record)

    def fit(self, data: ImageDataset | None = None) -> Self:
        """Read the image size from ``data`` (nothing else is learned)."""
        if data is not None:
            self._values_per_record = int(math.prod(data.images.shape[1:]))
        return self

    def privatize_records(self, records: Tensor, labels: Tensor | None = None, seed: int | None = None, batch_size: int = 256) -> Tensor:
        self._values_per_record = int(math.prod(records.shape[1:]))
        return super().privatize_records(records, labels, seed, batch_size)

    def _privatize_tensor(self, records: Tensor, labels: Tensor | None, mechanism: LaplaceMechanism) -> Tensor:
        return mechanism.add_noise(records.clamp(0.0, 1.0))

    def _extra_notes(self) -> list[str]:
        values = self._values_per_record or 1
        return [
            f"sensitivity = {values} values per image (each in [0, 1]); seed 003 writes this epsilon as "
            f"{self.epsilon / values:.4g} per pixel (epsilon/(H*W)), which is the same mechanism, not a per-pixel guarantee"
        ]
