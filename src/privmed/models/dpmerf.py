"""The networks of the mean-embedding release (DP-MERF family): a fixed feature map and a generator.

:class:`FeatureMap` sends an image to a vector of L2 norm at most 1, whatever the image: a weighted
concatenation of parts, each of norm at most 1 by construction, with weights whose squares sum to 1.

- ``pixels``: the image itself divided by sqrt(number of values): pixels in [0, 1] give norm <= 1;
  its mean is the class's mean image (first moment).
- ``rff``: random Fourier features of the pixels (Rahimi & Recht 2007), [cos(Wx), sin(Wx)] / sqrt(D):
  norm exactly 1; their mean embeds the image distribution for a Gaussian kernel of ``bandwidth``
  (the DP-MERF feature).
- ``conv``: a fixed random convolutional network (two layers of random filters with ReLU, average pooling
  between them and down to a coarse grid, then random Fourier features of that code): local texture and layout statistics
  that pixel features miss, like the perceptual features of DP-MEPF without any trained weights.

Everything is drawn from ``seed`` and has no trained parameters, so the map is public: it depends on
no data. :class:`ConditionalGenerator` is a small class-conditional DCGAN-style generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privmed.errors import PrivmedError

FEATURE_PARTS = ("pixels", "rff", "conv")


class FeatureMap(nn.Module):
    """A fixed random feature map with ||phi(x)||_2 <= 1 for every image x with values in [0, 1].

    ``parts`` maps part names (:data:`FEATURE_PARTS`) to weights; the weights are normalized so their
    squares sum to 1. ``rff_features`` and ``conv_features`` are the numbers of random frequencies
    (each gives a cosine and a sine); bandwidths are in units of sqrt(number of input values), so one
    value suits any image size.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        parts: dict[str, float],
        *,
        rff_features: int = 2000,
        rff_bandwidth: float = 0.3,
        conv_channels: int = 16,
        conv_grid: int = 4,
        conv_features: int = 2000,
        conv_bandwidth: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        unknown = sorted(set(parts) - set(FEATURE_PARTS))
        if unknown or not parts:
            raise PrivmedError(f"feature parts must be a non-empty subset of {FEATURE_PARTS}, got {sorted(parts)}")
        if any(not weight > 0 for weight in parts.values()):
            raise PrivmedError(f"feature part weights must be positive, got {parts}")
        total = math.sqrt(sum(w * w for w in parts.values()))
        self.weights = {name: float(parts[name]) / total for name in FEATURE_PARTS if name in parts}
        self.in_channels, self.image_size = in_channels, image_size
        n_values = in_channels * image_size * image_size
        rng = torch.Generator().manual_seed(seed)
        self.register_buffer("rff_w", torch.randn(n_values, rff_features, generator=rng) / (rff_bandwidth * math.sqrt(n_values)))
        self.register_buffer("conv1", torch.randn(conv_channels, in_channels, 5, 5, generator=rng) / math.sqrt(25 * in_channels))
        self.register_buffer("conv1_b", torch.rand(conv_channels, generator=rng) - 0.5)
        self.register_buffer("conv2", torch.randn(conv_channels, conv_channels, 3, 3, generator=rng) / math.sqrt(9 * conv_channels))
        code = conv_channels * conv_grid * conv_grid
        self.register_buffer("conv_w", torch.randn(code, conv_features, generator=rng) / (conv_bandwidth * math.sqrt(code)))
        self.conv_grid = conv_grid
        self.requires_grad_(False)

    @property
    def dim(self) -> int:
        """Length of phi(x)."""
        sizes = {"pixels": self.rff_w.shape[0], "rff": 2 * self.rff_w.shape[1], "conv": 2 * self.conv_w.shape[1]}
        return sum(sizes[name] for name in self.weights)

    @staticmethod
    def _fourier(values: Tensor, frequencies: Tensor) -> Tensor:
        projection = values @ frequencies
        return torch.cat([torch.cos(projection), torch.sin(projection)], dim=1) / math.sqrt(frequencies.shape[1])

    def _conv_code(self, images: Tensor) -> Tensor:
        """A coarse (C * grid * grid) code of random-filter responses."""
        hidden = F.avg_pool2d(F.relu(F.conv2d(images, self.conv1, self.conv1_b, padding=2)), 2)
        hidden = F.relu(F.conv2d(hidden, self.conv2, padding=1))
        return F.adaptive_avg_pool2d(hidden, self.conv_grid).flatten(1)

    def forward(self, images: Tensor) -> Tensor:
        """phi(images): (N, dim) rows of L2 norm <= 1."""
        if images.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise PrivmedError(
                f"the feature map takes images of shape {(self.in_channels, self.image_size, self.image_size)}, got {tuple(images.shape[1:])}"
            )
        flat = images.flatten(1)
        parts = []
        for name, weight in self.weights.items():
            if name == "pixels":
                part = flat / math.sqrt(flat.shape[1])
            elif name == "rff":
                part = self._fourier(flat, self.rff_w)
            else:
                part = self._fourier(self._conv_code(images), self.conv_w)
            parts.append(weight * part)
        return torch.cat(parts, dim=1)


class ConditionalGenerator(nn.Module):
    """A small class-conditional generator: latent + class embedding -> (C, size, size) images in [0, 1].

    A linear layer to a (4w, size/4, size/4) map, two nearest-neighbour upsamplings each followed by a
    3x3 convolution, BatchNorm and ReLU, and a 3x3 convolution with a sigmoid. Sizes not divisible by
    4 are built at the next multiple of 4 and resized down (bilinear, antialiased).
    """

    def __init__(self, n_classes: int, out_channels: int, image_size: int, latent_dim: int = 32, width: int = 32) -> None:
        super().__init__()
        if n_classes < 2 or image_size < 8:
            raise PrivmedError(f"the generator needs >= 2 classes and images of side >= 8, got {n_classes} and {image_size}")
        self.n_classes, self.out_channels, self.image_size, self.latent_dim = n_classes, out_channels, image_size, latent_dim
        self.build_size = 4 * math.ceil(image_size / 4)
        self.start = self.build_size // 4
        self.width = width
        self.embed = nn.Embedding(n_classes, latent_dim)
        self.project = nn.Sequential(nn.Linear(2 * latent_dim, 4 * width * self.start * self.start), nn.BatchNorm1d(4 * width * self.start * self.start), nn.ReLU())
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(4 * width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, out_channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, latent: Tensor, labels: Tensor) -> Tensor:
        hidden = self.project(torch.cat([latent, self.embed(labels)], dim=1))
        images = self.body(hidden.view(len(latent), 4 * self.width, self.start, self.start))
        if self.build_size != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return images
