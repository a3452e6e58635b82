"""The seed-000 WGAN: a generator of image + vessel-label pairs and a critic that DP-SGD can train.

Kossen et al. (2022, section 3.3) use a DCGAN-style WGAN at 96x96: the generator maps a 128-d
Gaussian vector through 1 linear layer and 6 upsampling convolutions to 2 channels (image, label);
the critic takes the pair through 6 downsampling convolutions (kernel 4, stride 2, LeakyReLU 0.2).
Here both nets adapt to the patch size: a size ``s * 2**n`` (``3 <= s <= 8``, e.g. 32, 64, 96,
128) starts/ends at ``s x s``, which at 96x96 gives exactly the paper's layer counts:

- :class:`Generator`: linear -> ``s x s`` features, ``n`` transposed convolutions (kernel 4,
  stride 2) with BatchNorm and ReLU, a last 3x3 convolution and a sigmoid, so every channel lies in
  [0, 1] like the real pairs. The generator never sees private data (only the critic's noisy
  gradients), so BatchNorm is allowed in it.
- :class:`Critic`: ``n + 1`` convolutions (kernel 4, stride 2), LeakyReLU 0.2, GroupNorm or
  LayerNorm-style GroupNorm(1, C) (never BatchNorm: it mixes the rows of a batch, which per-sample
  clipping forbids), and a linear score head.

Channels double per level from ``base_channels`` and stop growing at 8x. The label channel of a
sample is a probability; :func:`split_sample` thresholds it at 0.5 (its logit at 0) into a binary mask.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from privmed.errors import PrivmedError

CriticNorm = Literal["group", "layer", "none"]
CRITIC_NORMS = ("group", "layer", "none")
_MAX_WIDTH_FACTOR = 8


def _levels(image_size: int) -> tuple[int, int]:
    """``(s, n)`` with ``image_size = s * 2**n``, ``3 <= s <= 8`` and ``n >= 2`` as large as possible."""
    halvings = 0
    while image_size % 2 ** (halvings + 1) == 0 and image_size // 2 ** (halvings + 1) >= 3:
        halvings += 1
    start = image_size // 2**halvings
    if halvings < 2 or start > 8:
        raise PrivmedError(f"image_size {image_size} is not supported: use s * 2**n with 3 <= s <= 8 and n >= 2 (e.g. 32, 64, 96, 128)")
    return start, halvings


def _width(base_channels: int, level: int) -> int:
    """Feature channels ``level`` halvings below full resolution (level >= 1)."""
    return base_channels * min(2 ** (level - 1), _MAX_WIDTH_FACTOR)


def _init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al.): weights N(0, 0.02), norm scales N(1, 0.02)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.GroupNorm)) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


class Generator(nn.Module):
    """Latent vector (N, latent_dim) -> sample (N, out_channels, image_size, image_size) in [0, 1]."""

    def __init__(self, latent_dim: int = 128, out_channels: int = 2, image_size: int = 64, base_channels: int = 64) -> None:
        super().__init__()
        if latent_dim < 1 or out_channels < 1 or base_channels < 1:
            raise PrivmedError(f"Generator needs positive sizes, got latent_dim={latent_dim}, out_channels={out_channels}, base_channels={base_channels}")
        start, halvings = _levels(image_size)
        self.latent_dim, self.image_size = latent_dim, image_size
        self._start_shape = (_width(base_channels, halvings), start, start)
        self.project = nn.Linear(latent_dim, _width(base_channels, halvings) * start * start, bias=False)
        self.project_norm = nn.Sequential(nn.BatchNorm2d(self._start_shape[0]), nn.ReLU())
        layers: list[nn.Module] = []
        for level in range(halvings, 0, -1):
            channels_in = _width(base_channels, level)
            channels_out = _width(base_channels, level - 1) if level > 1 else max(base_channels // 2, 1)
            layers += [nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU()]
        layers += [nn.Conv2d(max(base_channels // 2, 1), out_channels, 3, padding=1), nn.Sigmoid()]
        self.upsample = nn.Sequential(*layers)
        _init_dcgan(self)

    def forward(self, latent: Tensor) -> Tensor:
        features = self.project(latent).view(latent.shape[0], *self._start_shape)
        return self.upsample(self.project_norm(features))


class Critic(nn.Module):
    """Sample (N, in_channels, image_size, image_size) -> WGAN critic score (N, 1); no BatchNorm."""

    def __init__(self, in_channels: int = 2, image_size: int = 64, base_channels: int = 64, norm: CriticNorm = "group") -> None:
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise PrivmedError(f"unknown critic norm {norm!r}: use one of {', '.join(CRITIC_NORMS)}")
        if in_channels < 1 or base_channels < 1:
            raise PrivmedError(f"Critic needs positive sizes, got in_channels={in_channels}, base_channels={base_channels}")
        start, halvings = _levels(image_size)
        layers: list[nn.Module] = []
        channels_in = in_channels
        for level in range(1, halvings + 2):
            channels_out = _width(base_channels, level)
            layers.append(nn.Conv2d(channels_in, channels_out, 4, stride=2, padding=1))
            if level > 1 and norm != "none":  # DCGAN leaves the first layer unnormalized
                layers.append(nn.GroupNorm(_groups(channels_out) if norm == "group" else 1, channels_out))
            layers.append(nn.LeakyReLU(0.2))
            channels_in = channels_out
        final_size = (start - 2) // 2 + 1  # the last kernel-4, stride-2 convolution of a start x start map
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.score = nn.Linear(channels_in * final_size * final_size, 1)
        _init_dcgan(self)

    def forward(self, samples: Tensor) -> Tensor:
        return self.score(self.features(samples))


def _groups(channels: int, preferred: int = 8) -> int:
    """The largest group count <= ``preferred`` that divides ``channels``."""
    return next(g for g in range(min(preferred, channels), 0, -1) if channels % g == 0)


def split_sample(samples: Tensor, label_channels: int = 1, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Split generated (N, C, H, W) samples into images (N, C - label_channels, H, W) in [0, 1] and binary uint8 labels."""
    if not 0 < label_channels < samples.shape[1]:
        raise PrivmedError(f"label_channels must be in 1..{samples.shape[1] - 1}, got {label_channels}")
    images, labels = samples[:, :-label_channels], samples[:, -label_channels:]
    return images, (labels > threshold).to(torch.uint8)
