"""The seed-001 AC-GAN: a class-conditional generator and a discriminator with a class head.

Seed 001 (section "Implementation details") works at 64x64 with 9 slice channels:

- generator: a 100-d Gaussian latent plus a one-hot class condition, seen as a 1x1 map, through
  five transposed convolutions (kernel 4; the first stride 1 without padding to 4x4, the others
  stride 2, padding 1) with 512, 256, 128, 64 and C channels, ReLU, and tanh on the last;
- discriminator: five convolutions (kernel 4, stride 2, padding 1, the last stride 1 without
  padding) with 64, 128, 256, 512, 64 channels and LeakyReLU 0.2, then two linear heads: real/fake
  and class.

Here both nets adapt to the image size by the number of stride-2 levels: they are built at
``build_size = 4 * 2**n``, the smallest such size at least ``image_size`` (28 -> 32, 64 -> 64,
96 -> 128), which gives exactly the seed's five layers at 64x64. When ``image_size`` is smaller
than ``build_size`` the generator's output is resized (bilinear, antialiased) down to it and the
discriminator resizes its input up to ``build_size``; both resizes are per row and parameter-free.
Channels halve per level from ``8 * base_channels`` (seed: base 64 -> 512) and never go below
``base_channels``.

Differences from the seed, on purpose: the generator ends in a sigmoid (samples in [0, 1] like
privmed's images; the seed's tanh in [-1, 1] is the same up to an affine map); the heads return
logits (the losses apply the sigmoid / softmax themselves, see :mod:`privmed.methods.acgan`); and
the discriminator normalizes with GroupNorm (or LayerNorm-style GroupNorm(1, C)), never BatchNorm,
which mixes the rows of a batch and so cannot be trained with per-sample clipping. The generator,
which never sees private data, keeps DCGAN's BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privmed.errors import PrivmedError
from privmed.models.wgan import CRITIC_NORMS, CriticNorm, _groups, _init_dcgan

MIN_IMAGE_SIZE = 28
MAX_IMAGE_SIZE = 128
LATENT_DIM = 100
_START_SIZE = 4
_WIDTH_FACTOR = 8


def build_size(image_size: int) -> int:
    """The size the networks are built at: the smallest ``4 * 2**n >= image_size`` (n >= 3)."""
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise PrivmedError(f"AC-GAN image_size must be in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {image_size}")
    size = _START_SIZE
    while size < image_size:
        size *= 2
    return size


def _level_widths(image_size: int, base_channels: int) -> list[int]:
    """Feature channels from the 4x4 level up to the level just below full resolution."""
    levels = (build_size(image_size) // _START_SIZE).bit_length() - 1
    return [max(base_channels, base_channels * _WIDTH_FACTOR // 2**i) for i in range(levels)]


def one_hot(labels: Tensor, n_classes: int) -> Tensor:
    """Class labels (N,) -> float one-hot conditions (N, n_classes)."""
    return F.one_hot(labels.long(), n_classes).float()


class ConditionalGenerator(nn.Module):
    """Latent (N, latent_dim) and condition (N, n_classes) -> images (N, out_channels, image_size, image_size) in [0, 1].

    The condition is normally one-hot; any mixture of classes (rows summing to 1) is accepted, which
    is how :func:`privmed.methods.acgan.ACGAN.morph` interpolates between classes.
    """

    def __init__(
        self, n_classes: int, out_channels: int = 1, image_size: int = 64, latent_dim: int = LATENT_DIM, base_channels: int = 64
    ) -> None:
        super().__init__()
        if n_classes < 2 or out_channels < 1 or latent_dim < 1 or base_channels < 1:
            raise PrivmedError(
                f"ConditionalGenerator needs n_classes >= 2 and positive sizes, got n_classes={n_classes}, "
                f"out_channels={out_channels}, latent_dim={latent_dim}, base_channels={base_channels}"
            )
        self.n_classes, self.latent_dim, self.image_size = n_classes, latent_dim, image_size
        widths = _level_widths(image_size, base_channels)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + n_classes, widths[0], _START_SIZE, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        for channels_in, channels_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, stride=2, padding=1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)
        _init_dcgan(self)

    def forward(self, latent: Tensor, condition: Tensor) -> Tensor:
        if condition.shape != (latent.shape[0], self.n_classes):
            raise PrivmedError(f"condition must have shape ({latent.shape[0]}, {self.n_classes}), got {tuple(condition.shape)}")
        images = self.layers(torch.cat([latent, condition.to(latent.dtype)], dim=1)[:, :, None, None])
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return images


class ACDiscriminator(nn.Module):
    """Images (N, in_channels, image_size, image_size) -> (real/fake logit (N,), class logits (N, n_classes)); no BatchNorm."""

    def __init__(
        self, n_classes: int, in_channels: int = 1, image_size: int = 64, base_channels: int = 64, norm: CriticNorm = "group"
    ) -> None:
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise PrivmedError(f"unknown discriminator norm {norm!r}: use one of {', '.join(CRITIC_NORMS)}")
        if n_classes < 2 or in_channels < 1 or base_channels < 1:
            raise PrivmedError(
                f"ACDiscriminator needs n_classes >= 2 and positive sizes, got n_classes={n_classes}, "
                f"in_channels={in_channels}, base_channels={base_channels}"
            )
        self.n_classes, self.image_size, self.build_size = n_classes, image_size, build_size(image_size)
        widths = list(reversed(_level_widths(image_size, base_channels)))
        layers: list[nn.Module] = []
        channels_in = in_channels
        for index, channels_out in enumerate(widths):
            layers.append(nn.Conv2d(channels_in, channels_out, 4, stride=2, padding=1))
            if index > 0 and norm != "none":  # DCGAN leaves the first layer unnormalized
                layers.append(nn.GroupNorm(_groups(channels_out) if norm == "group" else 1, channels_out))
            layers.append(nn.LeakyReLU(0.2))
            channels_in = channels_out
        layers += [nn.Conv2d(channels_in, base_channels, _START_SIZE, stride=1, padding=0), nn.LeakyReLU(0.2), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.real_fake = nn.Linear(base_channels, 1)
        self.classes = nn.Linear(base_channels, n_classes)
        _init_dcgan(self)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.shape[-1] != self.build_size:
            images = F.interpolate(images, size=(self.build_size, self.build_size), mode="bilinear", align_corners=False)
        features = self.features(images)
        return self.real_fake(features).squeeze(1), self.classes(features)
