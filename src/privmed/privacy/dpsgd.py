"""DP-SGD gradients with per-unit clipping from one forward and one backward pass.

:class:`DPGradient` takes over a module's trainable parameters and, for the forwards run inside
:meth:`DPGradient.capture`, turns one backward of the summed per-row losses into the DP-SGD gradient

    p.grad = (sum_u clip_C(g_u) + N(0, (sigma C)^2 I)) / expected_batch_units + g_public

where ``g_u`` is the gradient of the summed losses of all rows of privacy unit ``u`` (a record, an
image or a patient) and ``g_public`` the plain gradient of the public rows (e.g. a GAN's generated
samples, which depend on no private record).

Why our own engine: Opacus 1.6's per-sample modes (hooks, expanded weights, ghost clipping) cost 3-4x
a non-private critic step on CPU, because they keep weight gradients in autograd and (ghost) run a
second backward; this "book-keeping" engine (the idea of Bu et al., 2022/2023) runs one backward.

How: forward hooks keep each trainable layer's input ``A``; tensor hooks on the layer outputs keep
the output gradients ``G``. The engine sets ``requires_grad=False`` on the parameters it owns, so
autograd computes input gradients only (a layer output that would not need a gradient, e.g. of the
first layer, is made a leaf that does). A layer's weight gradient for row ``i`` is ``G_i^T A_i``; per
layer the engine either materializes these per-row gradients or, when cheaper, gets their norms from
the Gram matrices, ``||G_i^T A_i||^2 = <A_i A_i^T, G_i G_i^T>`` (the rows of one unit are stacked),
then forms the clipped sum directly as ``sum_i w_i G_i^T A_i``.

Each row's loss must depend on that row only: layers that mix the rows of a batch (BatchNorm) are
refused by :func:`validate_module`. The per-unit norms in :class:`ClippingStats` are computed from
private data: log them for diagnosis, never release them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from privmed.errors import PrivacyError
from privmed.privacy.secure_rng import random_stream

if TYPE_CHECKING:
    from privmed.privacy.distributed import ReplicaGroup

logger = logging.getLogger(__name__)

NormStrategy = Literal["auto", "ghost", "materialize"]
NORM_STRATEGIES: tuple[str, ...] = ("auto", "ghost", "materialize")

# Per-row weight gradients larger than this (all rows of one layer together) are never materialized.
MAX_MATERIALIZED_BYTES = 512 * 2**20

NOISE_PURPOSE = "dpsgd-noise"
_noise_worker: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    """The one thread that draws the next step's noise while the current step computes its gradients."""
    global _noise_worker
    if _noise_worker is None:
        _noise_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privmed-noise")
    return _noise_worker

_SUPPORTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm, _InstanceNorm, nn.Embedding)


@dataclass
class ClippingStats:
    """What clipping did to one batch (computed from private data: for logs, not for release)."""

    n_units: int
    clipped_fraction: float
    mean_norm: float


def _layer_label(name: str, layer: nn.Module) -> str:
    return f"layer '{name}' ({type(layer).__name__})" if name else f"the module ({type(layer).__name__})"


def validate_module(module: nn.Module) -> None:
    """Raise :class:`PrivacyError` naming the first layer that DP-SGD with per-unit clipping cannot train.

    Refused: BatchNorm (it mixes the rows of a batch, so one row's loss depends on the others),
    InstanceNorm with running statistics (they store batch averages of private data), Embedding with
    ``max_norm`` or ``scale_grad_by_freq``, parameters shared between layers, and any other layer type
    with trainable parameters.
    """
    owners: dict[int, str] = {}
    for name, layer in module.named_modules():
        label = _layer_label(name, layer)
        if isinstance(layer, _BatchNorm):
            raise PrivacyError(
                f"{label} mixes the rows of a batch, so per-sample gradients and DP-SGD clipping are undefined; "
                "use GroupNorm or LayerNorm instead"
            )
        if isinstance(layer, _InstanceNorm) and layer.track_running_stats:
            raise PrivacyError(f"{label} keeps running statistics of private data; set track_running_stats=False")
        trainable = [p for p in layer.parameters(recurse=False) if p.requires_grad]
        if not trainable:
            continue
        if not isinstance(layer, _SUPPORTED_LAYERS):
            supported = ", ".join(t.__name__.lstrip("_") for t in _SUPPORTED_LAYERS)
            raise PrivacyError(f"{label} has trainable parameters that DP-SGD here cannot clip per unit; supported: {supported}")
        if isinstance(layer, nn.Embedding) and (layer.max_norm is not None or layer.scale_grad_by_freq):
            raise PrivacyError(f"{label} uses max_norm or scale_grad_by_freq, which DP-SGD here does not support")
        for parameter in trainable:
            if id(parameter) in owners:
                raise PrivacyError(f"{label} shares a parameter with layer '{owners[id(parameter)]}'; shared weights are not supported")
            owners[id(parameter)] = name


class _Rows:
    """A subset of a batch's rows, taken by a slice (no copy) when the rows form one block."""

    def __init__(self, mask: Tensor) -> None:
        self.index = mask.nonzero().flatten()
        self.count = self.index.numel()
        first = int(self.index[0]) if self.count else 0
        one_block = self.count == 0 or int(self.index[-1]) - first + 1 == self.count
        self._block = slice(first, first + self.count) if one_block else None

    def take(self, per_row: Tensor) -> Tensor:
        return per_row[self.index] if self._block is None else per_row[self._block]


class _UnitLayout:
    """Which rows of a batch are private, which are public, and which privacy unit each private row is in.

    Per-unit quantities are indexed 0..U-1; per-private-row quantities follow ``private`` row order.
    """

    def __init__(self, unit_ids: Tensor) -> None:
        self.n_rows = unit_ids.shape[0]
        self.private, self.public = _Rows(unit_ids >= 0), _Rows(unit_ids < 0)
        unique_ids, self.unit_of_row, sizes = torch.unique(self.private.take(unit_ids), return_inverse=True, return_counts=True)
        self.n_units = unique_ids.numel()
        self.single_row_units = bool((sizes <= 1).all())
        self.squared_unit_sizes = int((sizes * sizes).sum())
        order = torch.argsort(self.unit_of_row, stable=True)
        starts = torch.cumsum(sizes, 0) - sizes
        position = torch.arange(order.numel(), device=unit_ids.device) - starts[self.unit_of_row[order]]
        # (U, largest unit) private-row positions; the padding position n_private is an appended zero row.
        longest = int(sizes.max()) if self.n_units else 0
        self.rows_by_unit = torch.full((self.n_units, longest), self.private.count, dtype=torch.long, device=unit_ids.device)
        self.rows_by_unit[self.unit_of_row[order], position] = order

    def rows_to_units(self, private_values: Tensor) -> Tensor:
        """Sum values given per private row into one entry per unit."""
        out = private_values.new_zeros((self.n_units, *private_values.shape[1:]))
        return out.index_add_(0, self.unit_of_row, private_values)

    def stack(self, private_values: Tensor) -> Tensor:
        """(U, largest unit, ...) values of the private rows by unit, padded with zero rows."""
        padded = torch.cat([private_values, private_values.new_zeros((1, *private_values.shape[1:]))])
        return padded[self.rows_by_unit]


def _squared_norm(x: Tensor) -> Tensor:
    return x.flatten(1).pow(2).sum(1)


def _unit_squared_norms(private_per_row: Tensor, layout: _UnitLayout) -> Tensor:
    """Squared norm of each unit's summed gradient, from the private rows' gradients (n_private, ...)."""
    if layout.single_row_units:
        return layout.rows_to_units(_squared_norm(private_per_row))
    return _squared_norm(layout.rows_to_units(private_per_row))


def _gram_product(a: Tensor, g: Tensor) -> Tensor:
    """<A A^T, G G^T> per leading index for a (N, k, d, T) and g (N, k, p, T), summed over k."""
    gram_a = torch.matmul(a.transpose(-1, -2), a)
    gram_g = torch.matmul(g.transpose(-1, -2), g)
    return (gram_a * gram_g).flatten(1).sum(1)


class _LayerGradient:
    """Per-unit squared gradient norms of one layer's parameters, then their clipped weighted sum."""

    squared_norms: Tensor

    def gradients(self, row_weights: Tensor) -> dict[str, Tensor]:
        """Each owned parameter's ``sum_i row_weights[i] * (gradient of row i)``."""
        raise NotImplementedError


class _PerRowGradient(_LayerGradient):
    """Small parameters (normalization affines): per-row gradients are always materialized."""

    def __init__(self, per_row: dict[str, Tensor], layout: _UnitLayout) -> None:
        self.per_row = per_row
        self.squared_norms = torch.stack([_unit_squared_norms(layout.private.take(g), layout) for g in per_row.values()]).sum(0)

    def gradients(self, row_weights: Tensor) -> dict[str, Tensor]:
        return {name: torch.tensordot(row_weights, g, dims=1) for name, g in self.per_row.items()}


# weighted_sum(rows, weighted output gradients of those rows) -> the layer's weight gradient over them
WeightedSum = Callable[["_Rows | None", Tensor], Tensor]


class _MatmulGradient(_LayerGradient):
    """Linear and convolution layers: row i's weight gradient is G_i^T A_i, per group.

    ``private_a`` (n_private, groups, d, T) holds the private rows' inputs as matrices and ``g``
    (B, groups, p, T) every row's output gradients, T being the positions (sequence or output
    pixels) the weight is applied at. ``weighted_sum`` forms a weight gradient without per-row
    gradients (the convolution's own backward kernel, or one matmul).
    """

    def __init__(
        self,
        private_a: Tensor,
        g: Tensor,
        weight: nn.Parameter | None,
        bias: nn.Parameter | None,
        layout: _UnitLayout,
        strategy: str,
        weighted_sum: WeightedSum,
    ) -> None:
        self.layout, self.g, self.weighted_sum = layout, g, weighted_sum
        self.weight_shape = None if weight is None else weight.shape
        self.bias_rows = g.sum(-1).flatten(1) if bias is not None else None
        self.private_per_row: Tensor | None = None
        self.strategy = strategy
        squared = torch.zeros(layout.n_units, dtype=g.dtype, device=g.device)
        if weight is not None and layout.n_units:
            private_g = layout.private.take(g)
            rows, groups, d, positions = private_a.shape
            p = g.shape[2]
            if strategy == "auto":
                ghost_cost = layout.squared_unit_sizes * positions**2 * (d + p)
                materialize_cost = rows * positions * d * p
                too_big = rows * groups * d * p * private_a.element_size() > MAX_MATERIALIZED_BYTES
                self.strategy = "ghost" if too_big or ghost_cost < materialize_cost else "materialize"
            if self.strategy == "materialize":
                self.private_per_row = torch.matmul(private_g, private_a.transpose(-1, -2))
                squared = squared + _unit_squared_norms(self.private_per_row, layout)
            else:
                squared = squared + self._ghost_squared_norms(private_a, private_g)
        if self.bias_rows is not None:
            squared = squared + _unit_squared_norms(layout.private.take(self.bias_rows), layout)
        self.squared_norms = squared

    def _ghost_squared_norms(self, a: Tensor, g: Tensor) -> Tensor:
        if self.layout.single_row_units:
            return self.layout.rows_to_units(_gram_product(a, g))
        # Stack each unit's rows along the position axis: (U, k, groups, d, T) -> (U, groups, d, k*T).
        a, g = self.layout.stack(a), self.layout.stack(g)
        units, k, groups, d, positions = a.shape
        a = a.permute(0, 2, 3, 1, 4).reshape(units, groups, d, k * positions)
        g = g.permute(0, 2, 3, 1, 4).reshape(units, groups, g.shape[3], k * positions)
        return _gram_product(a, g)

    def gradients(self, row_weights: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.weight_shape is not None:
            as_rows = (-1, 1, 1, 1)
            if self.private_per_row is None:
                weight = self.weighted_sum(None, self.g * row_weights.view(as_rows)).reshape(self.weight_shape)
            else:
                private, public = self.layout.private, self.layout.public
                weight = torch.tensordot(private.take(row_weights), self.private_per_row, dims=1).reshape(self.weight_shape)
                if public.count:
                    weighted = public.take(self.g) * public.take(row_weights).view(as_rows)
                    weight = weight + self.weighted_sum(public, weighted).reshape(self.weight_shape)
            out["weight"] = weight
        if self.bias_rows is not None:
            out["bias"] = torch.tensordot(row_weights, self.bias_rows, dims=1)
        return out


class _EmbeddingGradient(_LayerGradient):
    """Embedding: row i's gradient scatters its output gradients to the looked-up table rows."""

    def __init__(self, layer: nn.Embedding, indices: Tensor, g: Tensor, layout: _UnitLayout) -> None:
        rows = indices.shape[0]
        self.indices = indices.reshape(rows, -1)
        self.g = g.reshape(rows, -1, g.shape[-1])
        if layer.padding_idx is not None:
            self.g = self.g * (self.indices != layer.padding_idx).unsqueeze(-1)
        self.num_embeddings = layer.num_embeddings
        indices, g = layout.private.take(self.indices), layout.private.take(self.g)
        if not layout.single_row_units:
            indices, g = layout.stack(indices).flatten(1, 2), layout.stack(g).flatten(1, 2)
        same_entry = (indices.unsqueeze(-1) == indices.unsqueeze(-2)).to(g.dtype)
        squared = (same_entry * torch.matmul(g, g.transpose(-1, -2))).flatten(1).sum(1)
        self.squared_norms = layout.rows_to_units(squared) if layout.single_row_units else squared

    def gradients(self, row_weights: Tensor) -> dict[str, Tensor]:
        weighted = (self.g * row_weights.view(-1, 1, 1)).reshape(-1, self.g.shape[-1])
        table = weighted.new_zeros((self.num_embeddings, weighted.shape[-1]))
        return {"weight": table.index_add_(0, self.indices.flatten(), weighted)}


_CONV_WEIGHT_GRADIENTS = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight, 3: torch.nn.grad.conv3d_weight}


def _explicit_padding(layer: nn.modules.conv._ConvNd, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """``(input, padding)`` such that a zero-padded convolution of ``input`` equals the layer's."""
    if layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
        return x, tuple(layer.padding)
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    return F.pad(x, layer._reversed_padding_repeated_twice, mode=mode), (0,) * (x.dim() - 2)


def _unfold(layer: nn.modules.conv._ConvNd, x: Tensor, padding: tuple[int, ...]) -> Tensor:
    """The convolution's input patches as (B, groups, in_channels/groups * kernel volume, positions)."""
    spatial = x.dim() - 2
    if spatial == 2:
        patches = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride)
    else:
        # Tensor.unfold windows each spatial axis in turn (torch has no 1D/3D F.unfold).
        x = F.pad(x, [p for p in reversed(padding) for _ in range(2)])
        for axis, (k, stride, dilation) in enumerate(zip(layer.kernel_size, layer.stride, layer.dilation)):
            x = x.unfold(2 + axis, dilation * (k - 1) + 1, stride)
        x = x[(Ellipsis, *(slice(None, None, d) for d in layer.dilation))]
        order = (0, 1, *range(2 + spatial, 2 + 2 * spatial), *range(2, 2 + spatial))
        kernel_volume = x.shape[-spatial:].numel()
        patches = x.permute(order).reshape(x.shape[0], x.shape[1] * kernel_volume, -1)
    return patches.view(patches.shape[0], layer.groups, patches.shape[1] // layer.groups, patches.shape[-1])


def _layer_gradient(layer: nn.Module, owned: dict[str, nn.Parameter], a: Tensor, g: Tensor, layout: _UnitLayout, strategy: str) -> _LayerGradient:
    """The gradient book-keeping for one supported layer from its inputs ``a`` and output gradients ``g``."""
    rows = a.shape[0]
    if isinstance(layer, nn.Linear):
        a_rows = a.reshape(rows, -1, a.shape[-1]).transpose(1, 2).unsqueeze(1)
        g_rows = g.reshape(rows, -1, g.shape[-1]).transpose(1, 2).unsqueeze(1)

        def linear_sum(selected: _Rows | None, weighted_g: Tensor) -> Tensor:
            inputs = a_rows if selected is None else selected.take(a_rows)
            return torch.einsum("bgpt,bgdt->gpd", weighted_g, inputs)

        return _MatmulGradient(layout.private.take(a_rows), g_rows, owned.get("weight"), owned.get("bias"), layout, strategy, linear_sum)
    if isinstance(layer, nn.modules.conv._ConvNd):
        padded, padding = _explicit_padding(layer, a)
        conv_weight = _CONV_WEIGHT_GRADIENTS[a.dim() - 2]

        def conv_sum(selected: _Rows | None, weighted_g: Tensor) -> Tensor:
            inputs = padded if selected is None else selected.take(padded)
            output_grad = weighted_g.reshape(weighted_g.shape[0], *g.shape[1:])
            return conv_weight(inputs, layer.weight.shape, output_grad, layer.stride, padding, layer.dilation, layer.groups)

        g_rows = g.reshape(rows, layer.groups, layer.out_channels // layer.groups, -1)
        # Only the private rows' inputs are unfolded: the public rows need no norm.
        private_a = _unfold(layer, layout.private.take(padded), padding)
        return _MatmulGradient(private_a, g_rows, owned.get("weight"), owned.get("bias"), layout, strategy, conv_sum)
    if isinstance(layer, nn.Embedding):
        return _EmbeddingGradient(layer, a, g, layout)
    if isinstance(layer, nn.LayerNorm):
        normalized = F.layer_norm(a, layer.normalized_shape, eps=layer.eps)
        leading = tuple(range(1, a.dim() - len(layer.normalized_shape)))
        per_row = {"weight": (g * normalized).sum(leading) if leading else g * normalized, "bias": g.sum(leading) if leading else g}
    else:  # GroupNorm, InstanceNorm: one affine pair per channel
        if isinstance(layer, nn.GroupNorm):
            normalized = F.group_norm(a, layer.num_groups, eps=layer.eps)
        else:
            normalized = F.instance_norm(a, eps=layer.eps)
        spatial = tuple(range(2, a.dim()))
        per_row = {"weight": (g * normalized).sum(spatial), "bias": g.sum(spatial)}
    return _PerRowGradient({name: per_row[name] for name in owned}, layout)


@dataclass
class _Call:
    """One forward call of a layer inside ``capture()``: its input and, after backward, its output gradient."""

    activations: Tensor
    output_shape: torch.Size
    version: int  # of the input, to catch a later in-place change that would corrupt the gradient
    output_grad: Tensor | None = None


@dataclass
class _OwnedLayer:
    name: str
    layer: nn.Module
    parameters: dict[str, nn.Parameter]
    calls: list[_Call] = field(default_factory=list)


class DPGradient:
    """Per-unit clipped, noised gradient of a module: one forward, one backward.

    The engine owns the module's trainable parameters from construction on (their ``requires_grad``
    is set to False until :meth:`close`), so outside :meth:`capture` the module runs as a plain
    module that passes gradients to its input only: a GAN generator's loss can backpropagate through
    the critic at no extra cost. Forwards inside ``capture()`` are recorded for the next
    :meth:`backward`, which writes (overwrites) ``p.grad`` of every owned parameter.

    ``norm_strategy`` picks how per-unit norms are computed per layer: ``"auto"`` (the cheaper of the
    two by operation count), ``"ghost"`` (Gram matrices) or ``"materialize"`` (per-row gradients).
    The noise comes from a secret AES-CTR stream (:mod:`privmed.privacy.secure_rng`: no seed, no
    state to save) unless ``seed`` is given, which makes it reproducible from that seed (a research
    run: no guarantee against anyone who knows the seed). Either way it is drawn in float64 with exact
    tails, then cast; with ``prefetch`` (the default) the next step's noise, which depends on no data,
    is drawn in a background thread while the current step computes its gradients.

    ``reducer`` (a :class:`privmed.privacy.distributed.ReplicaGroup`) makes this one rank of a
    data-parallel job: each rank clips its own units (whole units per rank), the per-parameter sums
    of clipped private and public gradients are summed over ranks, and the noise is drawn once, on
    rank 0, and enters that sum (so the secret source works too); every rank ends with the
    same ``p.grad``, which equals the single-process gradient of the whole batch.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        max_grad_norm: float,
        noise_multiplier: float,
        expected_batch_units: float,
        seed: int | None = None,
        norm_strategy: NormStrategy = "auto",
        reducer: ReplicaGroup | None = None,
        prefetch: bool = True,
    ) -> None:
        if not max_grad_norm > 0:
            raise PrivacyError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        if not noise_multiplier >= 0:
            raise PrivacyError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not expected_batch_units > 0:
            raise PrivacyError(f"expected_batch_units must be > 0, got {expected_batch_units}")
        if norm_strategy not in NORM_STRATEGIES:
            raise PrivacyError(f"unknown norm_strategy {norm_strategy!r}: use one of {', '.join(NORM_STRATEGIES)}")
        validate_module(module)
        self.module = module
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.expected_batch_units = float(expected_batch_units)
        self.norm_strategy = norm_strategy
        self._layers = [
            _OwnedLayer(name, layer, {n: p for n, p in layer.named_parameters(recurse=False) if p.requires_grad})
            for name, layer in module.named_modules()
            if any(p.requires_grad for p in layer.parameters(recurse=False))
        ]
        self.parameters = [p for owned in self._layers for p in owned.parameters.values()]
        if not self.parameters:
            raise PrivacyError(f"{type(module).__name__} has no trainable parameters to train with DP-SGD")
        self.reducer = reducer
        self._stream = random_stream(seed, NOISE_PURPOSE)
        self._noise_std = self.noise_multiplier * self.max_grad_norm / self.expected_batch_units
        self._groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for index, parameter in enumerate(self.parameters):
            self._groups.setdefault((parameter.dtype, parameter.device), []).append(index)
        self.prefetch = prefetch
        self._pending: Future[list[Tensor]] | None = None
        self._pending_position = 0
        for parameter in self.parameters:
            parameter.requires_grad_(False)
        self._capturing = False
        self._strategies_logged = False

    def close(self) -> None:
        """Hand the parameters back to autograd (``requires_grad=True``); the engine is unusable afterwards."""
        self.settle()
        for parameter in self.parameters:
            parameter.requires_grad_(True)
        self._layers, self.parameters = [], []

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the forwards run inside this block for the next :meth:`backward` (rows in call order)."""
        if self._capturing:
            raise RuntimeError("DPGradient.capture() is already active")
        handles = [owned.layer.register_forward_hook(self._recorder(owned)) for owned in self._layers]
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False
            for handle in handles:
                handle.remove()

    @staticmethod
    def _recorder(owned: _OwnedLayer) -> Callable[[nn.Module, tuple, Tensor], Tensor | None]:
        def record(layer: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            call = _Call(inputs[0].detach(), output.shape, inputs[0]._version)
            owned.calls.append(call)

            def keep(grad: Tensor) -> None:
                call.output_grad = grad

            if output.requires_grad:
                output.register_hook(keep)
                return None
            # Nothing before this layer needs a gradient: start the backward here, at a leaf. The
            # clone keeps later in-place operations (e.g. an in-place activation) legal.
            leaf = output.detach().requires_grad_(True)
            leaf.register_hook(keep)
            return leaf.clone()

        return record

    def backward(self, losses: Tensor, unit_ids: Tensor) -> ClippingStats:
        """Backpropagate ``losses`` (B,) once and write (overwrite) the DP-SGD gradient to ``p.grad``.

        ``unit_ids`` (B,) int: the privacy unit of each row (>= 0), or -1 for a public row whose
        gradient is added unclipped and unscaled. Rows are the rows of the forwards inside
        ``capture()``, in call order. Noise is added even when no row is private.
        """
        if losses.dim() != 1:
            raise PrivacyError(f"losses must be one per row, shape (B,), got shape {tuple(losses.shape)}")
        if unit_ids.shape != losses.shape or unit_ids.dtype.is_floating_point:
            raise PrivacyError(f"unit_ids must be integers of shape {tuple(losses.shape)}, got {unit_ids.dtype} {tuple(unit_ids.shape)}")
        if unit_ids.numel() and int(unit_ids.min()) < -1:
            raise PrivacyError("unit_ids must be >= 0 (private unit) or -1 (public row)")
        try:
            if len(losses) and not any(owned.calls for owned in self._layers):
                raise PrivacyError("no forward of the module was captured: compute the losses inside DPGradient.capture()")
            if losses.requires_grad:
                losses.sum().backward()
            layout = _UnitLayout(unit_ids.to(device=losses.device, dtype=torch.long))
            layer_gradients = [self._layer_gradient(owned, layout) for owned in self._layers]
        finally:
            for owned in self._layers:
                owned.calls.clear()
        if not self._strategies_logged:
            self._strategies_logged = True
            chosen = [f"{owned.name or 'module'}: {getattr(g, 'strategy', 'per-row')}" for owned, g in zip(self._layers, layer_gradients) if g is not None]
            logger.debug("DP-SGD norm computation per layer: %s", ", ".join(chosen))
        squared = torch.zeros(layout.n_units, device=losses.device, dtype=self.parameters[0].dtype)
        for gradient in layer_gradients:
            if gradient is not None:
                squared = squared + gradient.squared_norms.to(squared)
        norms = squared.sqrt()
        factors = self.max_grad_norm / norms.clamp(min=self.max_grad_norm)
        row_weights = torch.ones(layout.n_rows, device=losses.device, dtype=squared.dtype)
        row_weights[layout.private.index] = factors[layout.unit_of_row] / self.expected_batch_units
        draws_noise = self.reducer is None or self.reducer.is_main
        noises = self._take_noise() if draws_noise else None
        grads = []
        for owned, gradient in zip(self._layers, layer_gradients):
            values = gradient.gradients(row_weights.to(self._dtype(owned))) if gradient is not None else {}
            for name, parameter in owned.parameters.items():
                if noises is not None:
                    grad = noises[len(grads)]
                    grads.append(grad.add_(values[name]) if name in values else grad)
                else:
                    grads.append(values[name].reshape(parameter.shape) if name in values else torch.zeros_like(parameter))
        if self.reducer is not None:
            grads = self.reducer.sum(grads)
        for parameter, grad in zip(self.parameters, grads):
            parameter.grad = grad
        return ClippingStats(
            n_units=layout.n_units,
            clipped_fraction=float((norms > self.max_grad_norm).float().mean()) if layout.n_units else 0.0,
            mean_norm=float(norms.mean()) if layout.n_units else 0.0,
        )

    @property
    def reproducible(self) -> bool:
        """Whether the noise follows from a seed (a research run) rather than from a secret stream."""
        return not self._stream.secret

    def _draw(self) -> list[Tensor]:
        """N(0, (sigma C / B)^2) noise for every owned parameter, in ``self.parameters`` order.

        One float64 draw per dtype and device, cast once, of which each parameter's noise is a view.
        """
        noises: list[Tensor | None] = [None] * len(self.parameters)
        for (dtype, device), indices in self._groups.items():
            sizes = [self.parameters[i].numel() for i in indices]
            if self._noise_std == 0:
                flat = torch.zeros(sum(sizes), dtype=dtype, device=device)
            else:
                flat = self._stream.gaussian((sum(sizes),), self._noise_std, dtype=dtype, device=device)
            for index, piece in zip(indices, flat.split(sizes)):
                noises[index] = piece.view(self.parameters[index].shape)
        return noises  # type: ignore[return-value]

    def _take_noise(self) -> list[Tensor]:
        """This step's noise (drawn ahead in the background when ``prefetch``), then start drawing the next step's.

        Steps stay independent: each step's noise is the next stretch of the stream, used once.
        """
        if self._pending is not None:
            noises, self._pending = self._pending.result(), None
        else:
            noises = self._draw()
        if self.prefetch:
            self._pending_position = self._stream.position
            self._pending = _background().submit(self._draw)
        return noises

    def settle(self) -> None:
        """Wait for (and drop) a noise draw running in the background: when no step follows, so no thread outlives training."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    @staticmethod
    def _dtype(owned: _OwnedLayer) -> torch.dtype:
        return next(iter(owned.parameters.values())).dtype

    def _layer_gradient(self, owned: _OwnedLayer, layout: _UnitLayout) -> _LayerGradient | None:
        calls = owned.calls
        if not calls:
            return None
        n_rows = sum(call.activations.shape[0] for call in calls)
        if n_rows != layout.n_rows:
            raise PrivacyError(
                f"{_layer_label(owned.name, owned.layer)} saw {n_rows} rows in capture() but losses has {layout.n_rows}: "
                "give one loss per captured row (a layer applied twice per forward is not supported)"
            )
        if n_rows == 0:
            return None
        if any(call.activations._version != call.version for call in calls):
            raise RuntimeError(f"the input of {_layer_label(owned.name, owned.layer)} was modified in place after its forward")
        # A call whose output did not reach the losses contributes a zero output gradient.
        output_grads = [call.activations.new_zeros(call.output_shape) if call.output_grad is None else call.output_grad for call in calls]
        activations = torch.cat([call.activations for call in calls]) if len(calls) > 1 else calls[0].activations
        output_grad = torch.cat(output_grads) if len(output_grads) > 1 else output_grads[0]
        return _layer_gradient(owned.layer, owned.parameters, activations, output_grad, layout, self.norm_strategy)

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the noise source: a reproducible stream's seed and the position of the
        next unused noise; for a secret stream only that it is secret (a resumed run draws fresh secret noise)."""
        state = self._stream.state_dict()
        if self._pending is not None and "position" in state:
            state["position"] = self._pending_position
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue a reproducible stream where :meth:`state_dict` left it (nothing to restore for a secret one)."""
        self.settle()
        self._stream.load_state_dict(state)
