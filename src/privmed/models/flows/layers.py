"""Invertible layers with exact log-determinants: the building blocks of every privmed flow.

Each layer maps ``x`` of shape (N, C, *spatial) (or (N, D) for tables, D playing the role of C)
and an optional condition to ``(y, log_det)``, where ``log_det`` (N,) is log|det dy/dx| per sample,
and ``inverse(y, condition)`` gives ``x`` back. We write these few layers ourselves rather than use
FrEIA: FrEIA 0.2 (unmaintained since 2022) has no learnable LU 1x1 convolution, which Glow needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _channel_view(x: Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector over ``x`` (N, C, *spatial)."""
    return (1, -1) + (1,) * (x.dim() - 2)


def _positions(x: Tensor) -> int:
    """Number of spatial positions per channel (1 for tables)."""
    return int(math.prod(x.shape[2:]))


def _sum_per_sample(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


class InvertibleLayer(nn.Module):
    """An invertible map with a tractable log-determinant."""

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ActNorm(InvertibleLayer):
    """Per-channel affine normalisation (Glow), initialised from the first training batch.

    The first forward pass in training mode sets bias and scale so that each channel of that batch
    has zero mean and unit variance; afterwards they are ordinary trainable parameters.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        values = x.transpose(0, 1).reshape(x.shape[1], -1)
        self.bias.copy_(-values.mean(dim=1))
        self.log_scale.copy_(-torch.log(values.std(dim=1).clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        view = _channel_view(x)
        y = (x + self.bias.view(view)) * torch.exp(self.log_scale.view(view))
        log_det = self.log_scale.sum() * _positions(x)
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        view = _channel_view(y)
        return y * torch.exp(-self.log_scale.view(view)) - self.bias.view(view)


def _mix_channels(x: Tensor, weight: Tensor) -> Tensor:
    """Apply a (C, C) matrix to the channel axis of ``x`` at every position (a 1x1 convolution)."""
    return torch.movedim(torch.movedim(x, 1, -1) @ weight.T, -1, 1)


class InvertibleConv1x1(InvertibleLayer):
    """Learnable channel mixing ``W = P L (U + diag(s))`` in LU form (Glow), so log|det W| = sum log|s|."""

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign_s", torch.sign(diagonal))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), diagonal=-1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, diagonal=1))
        self.log_s = nn.Parameter(torch.log(diagonal.abs()))

    def weight(self) -> Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_det = self.log_s.sum() * _positions(x)
        return _mix_channels(x, self.weight()), log_det.expand(x.shape[0])

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        return _mix_channels(y, torch.linalg.inv(self.weight()))


class ChannelPermutation(InvertibleLayer):
    """A fixed random permutation of channels (volume preserving; GIN's mixing layer)."""

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(channels, generator=generator)
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x[:, self.order], x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        return y[:, self.inverse_order]


class CouplingNetwork(nn.Module):
    """The network inside a coupling: input layer, ReLU, hidden layer, ReLU, zero-initialised output layer.

    Convolutional (Glow: 3x3, 1x1, 3x3) for images, dense for table rows. A class condition (one-hot,
    (N, K)) enters as a learned per-class bias on the first hidden layer, which is what concatenating
    constant class maps to the input amounts to away from the border, without building those maps at
    every step. The zero output layer makes each coupling start as the identity.
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, condition_channels: int = 0, dense: bool = False) -> None:
        super().__init__()
        if dense:
            self.first: nn.Module = nn.Linear(in_channels, hidden_channels)
            middle: nn.Module = nn.Linear(hidden_channels, hidden_channels)
            last: nn.Module = nn.Linear(hidden_channels, out_channels)
        else:
            self.first = nn.Conv2d(in_channels, hidden_channels, 3, padding=1)
            middle = nn.Conv2d(hidden_channels, hidden_channels, 1)
            last = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.condition = nn.Linear(condition_channels, hidden_channels, bias=False) if condition_channels else None
        self.rest = nn.Sequential(nn.ReLU(inplace=True), middle, nn.ReLU(inplace=True), last)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        hidden = self.first(x)
        if self.condition is not None:
            if condition is None:
                raise ValueError("this coupling is conditional: pass the one-hot class condition")
            bias = self.condition(condition).view(condition.shape[0], -1, *(1,) * (hidden.dim() - 2))
            hidden = hidden.add_(bias) if not hidden.requires_grad else hidden + bias
        return self.rest(hidden)


class AffineCoupling(InvertibleLayer):
    """Affine coupling: the second channel half is scaled and shifted by a network of the first half.

    ``volume_preserving=False`` is Glow's coupling; ``True`` is GIN's: the log-scales of each sample
    are centred to sum to zero, so the Jacobian determinant is exactly one. The condition is a one-hot
    class vector (N, K) given to the coupling network. Log-scales pass through ``clamp * tanh(. / clamp)``
    so no scale exceeds exp(clamp) and inversion stays stable.
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        condition_channels: int = 0,
        volume_preserving: bool = False,
        dense: bool = False,
        clamp: float = 2.0,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels, got {channels}")
        self.split = channels // 2
        self.volume_preserving = volume_preserving
        self.clamp = clamp
        self.subnet = CouplingNetwork(self.split, hidden, 2 * (channels - self.split), condition_channels, dense)

    def _log_scale_and_shift(self, xa: Tensor, condition: Tensor | None) -> tuple[Tensor, Tensor]:
        raw_scale, shift = self.subnet(xa, condition).chunk(2, dim=1)
        if raw_scale.requires_grad:
            log_scale = self.clamp * torch.tanh(raw_scale / self.clamp)
        else:  # privatizing large batches: the same arithmetic without temporaries, on dense memory
            log_scale = raw_scale.contiguous().div_(self.clamp).tanh_().mul_(self.clamp)
        if self.volume_preserving:
            per_sample_mean = log_scale.reshape(log_scale.shape[0], -1).mean(dim=1)
            log_scale = log_scale - per_sample_mean.view((-1,) + (1,) * (log_scale.dim() - 1))
        return log_scale, shift

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.split], x[:, self.split :]
        log_scale, shift = self._log_scale_and_shift(xa, condition)
        yb = torch.addcmul(shift, xb, torch.exp(log_scale))
        log_det = x.new_zeros(x.shape[0]) if self.volume_preserving else _sum_per_sample(log_scale)
        return torch.cat([xa, yb], dim=1), log_det

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        ya, yb = y[:, : self.split], y[:, self.split :]
        log_scale, shift = self._log_scale_and_shift(ya, condition)
        return torch.cat([ya, (yb - shift) * torch.exp(-log_scale)], dim=1)


def squeeze2d(x: Tensor) -> Tensor:
    """Space to depth: (N, C, H, W) -> (N, 4C, H/2, W/2); a permutation, so log|det| = 0."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze2d(x: Tensor) -> Tensor:
    """Depth to space, the inverse of :func:`squeeze2d`."""
    return F.pixel_shuffle(x, 2)


class FlowStep(InvertibleLayer):
    """One step of flow: ActNorm, LU 1x1 convolution, affine coupling (Glow), or permutation and
    volume-preserving coupling (GIN, every layer with determinant one)."""

    def __init__(self, channels: int, hidden: int, condition_channels: int = 0, coupling: str = "glow", dense: bool = False, seed: int = 0) -> None:
        super().__init__()
        if coupling == "glow":
            layers: list[InvertibleLayer] = [ActNorm(channels), InvertibleConv1x1(channels, seed=seed)]
        elif coupling == "gin":
            layers = [ChannelPermutation(channels, seed=seed)]
        else:
            raise ValueError(f"unknown coupling {coupling!r}: use 'glow' or 'gin'")
        layers.append(AffineCoupling(channels, hidden, condition_channels, volume_preserving=coupling == "gin", dense=dense))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, layer_log_det = layer(x, condition)
            log_det = log_det + layer_log_det
        return x, log_det

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y, condition)
        return y
