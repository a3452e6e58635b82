"""Multi-scale Glow (Kingma & Dhariwal 2018) for images, optionally class-conditional.

Each of ``levels`` levels squeezes space into channels, applies ``depth`` flow steps and, except
the last, factors half of the channels out as latent. All factored parts and the last level's output
form one flat standard normal latent with as many dimensions as the image has values. Images in
[0, 1] are centred to [-0.5, 0.5] first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from privmed.errors import PrivmedError
from privmed.models.flows.base import InvertibleFlow
from privmed.models.flows.layers import ActNorm, FlowStep, InvertibleLayer, squeeze2d, unsqueeze2d

COUPLINGS = ("glow", "gin")


class Glow(InvertibleFlow):
    """Multi-scale Glow on images of shape ``image_shape`` = (C, H, W); H and W divisible by 2**levels.

    ``coupling="glow"``: ActNorm, LU 1x1 convolution, affine coupling. ``coupling="gin"``: fixed
    permutation and volume-preserving coupling, with one ActNorm per level: its scale is the only
    volume change, the same for every input (a strictly volume-preserving flow could not match the
    data's spread to a standard normal latent, which pins bits/dim near 8 + log2(2 pi)/2 for 8-bit images).
    ``n_classes > 0`` gives the class to every coupling network (a conditional INN).
    """

    kind = "glow"

    def __init__(
        self,
        image_shape: tuple[int, int, int] | list[int],
        levels: int = 2,
        depth: int = 4,
        hidden_channels: int = 32,
        coupling: str = "glow",
        n_classes: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(n_classes)
        channels, height, width = (int(s) for s in image_shape)
        if coupling not in COUPLINGS:
            raise PrivmedError(f"unknown coupling {coupling!r}: use one of {', '.join(COUPLINGS)}")
        if levels < 1 or depth < 1:
            raise PrivmedError(f"levels and depth must be >= 1, got levels={levels}, depth={depth}")
        factor = 2**levels
        if height % factor or width % factor:
            raise PrivmedError(f"images of {height}x{width} cannot be squeezed {levels} times: height and width must be divisible by {factor}")
        self._config = {
            "image_shape": [channels, height, width],
            "levels": levels,
            "depth": depth,
            "hidden_channels": hidden_channels,
            "coupling": coupling,
            "n_classes": n_classes,
            "seed": seed,
        }
        self.image_shape = (channels, height, width)
        self.levels = nn.ModuleList()
        self._factored_shapes: list[tuple[int, int, int]] = []
        for level in range(levels):
            channels, height, width = channels * 4, height // 2, width // 2
            steps: list[InvertibleLayer] = [ActNorm(channels)] if coupling == "gin" else []
            steps += [FlowStep(channels, hidden_channels, n_classes, coupling, seed=seed * 10007 + level * 101 + k) for k in range(depth)]
            self.levels.append(nn.ModuleList(steps))
            if level < levels - 1:
                self._factored_shapes.append((channels // 2, height, width))
                channels -= channels // 2
        self._factored_shapes.append((channels, height, width))
        # oneDNN convolutions on CPU run faster on channels-last tensors (about 1.25x here).
        self.to(memory_format=torch.channels_last)

    @property
    def latent_dim(self) -> int:
        return int(math.prod(self.image_shape))

    def _forward(self, x: Tensor, onehot: Tensor | None) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.image_shape:
            raise PrivmedError(f"this flow takes images of shape {self.image_shape}, got {tuple(x.shape[1:])}")
        h = x - 0.5
        log_det = h.new_zeros(h.shape[0])
        parts = []
        for level, steps in enumerate(self.levels):
            h = squeeze2d(h).contiguous(memory_format=torch.channels_last)
            for step in steps:
                h, step_log_det = step(h, onehot)
                log_det = log_det + step_log_det
            if level < len(self.levels) - 1:
                half = self._factored_shapes[level][0]
                parts.append(h[:, :half].reshape(h.shape[0], -1))
                h = h[:, half:]
        parts.append(h.reshape(h.shape[0], -1))
        return torch.cat(parts, dim=1), log_det

    def _inverse(self, z: Tensor, onehot: Tensor | None) -> Tensor:
        sizes = [math.prod(shape) for shape in self._factored_shapes]
        parts = [p.reshape(p.shape[0], *shape) for p, shape in zip(torch.split(z, sizes, dim=1), self._factored_shapes)]
        h = parts[-1].contiguous(memory_format=torch.channels_last)
        for level in reversed(range(len(self.levels))):
            if level < len(self.levels) - 1:
                h = torch.cat([parts[level], h], dim=1).contiguous(memory_format=torch.channels_last)
            for step in reversed(self.levels[level]):
                h = step.inverse(h, onehot)
            h = unsqueeze2d(h)
        return h + 0.5

    @torch.no_grad()
    def sample(self, n: int, c: Tensor | None = None, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Images drawn from the flow, clamped to [0, 1]."""
        return super().sample(n, c, temperature, generator).clamp(0.0, 1.0)
