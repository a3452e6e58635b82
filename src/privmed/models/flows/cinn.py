"""Conditional invertible neural network (cINN, Ardizzone et al.) for CADP (seed 002).

A multi-scale flow whose every coupling network also sees the class label, so ``f(x, c)`` maps
each class onto the same standard normal: the latent keeps what varies within a class, and decoding
with the same label keeps the class. CADP's paper uses GIN couplings on MNIST and Glow couplings on
larger images; GIN is the default here.
"""

from __future__ import annotations

from privmed.errors import PrivmedError
from privmed.models.flows.glow import Glow


class ConditionalINN(Glow):
    """A :class:`Glow` conditioned on ``n_classes`` (>= 1) classes; ``c`` is required in every call."""

    kind = "cinn"

    def __init__(
        self,
        image_shape: tuple[int, int, int] | list[int],
        n_classes: int,
        levels: int = 2,
        depth: int = 4,
        hidden_channels: int = 32,
        coupling: str = "gin",
        seed: int = 0,
    ) -> None:
        if n_classes < 1:
            raise PrivmedError(f"a conditional INN needs at least one class, got n_classes={n_classes}")
        super().__init__(image_shape, levels, depth, hidden_channels, coupling, n_classes, seed)
