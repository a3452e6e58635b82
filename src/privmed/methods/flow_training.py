"""Train an invertible flow by maximum likelihood, with bits/dim, checkpoints and sample grids.

This training is *not* differentially private. CADP and DP-GLOW protect the images they privatize,
not the flow's training set: the flow must be trained on public data, or on data whose use for this
purpose is otherwise authorized (seed 003 trains on a public set and privatizes another hospital's).
The trained flow directory also keeps the per-dimension range of its training latents, which DP-GLOW
uses as its clipping box; it too comes from the training data, never from the data to privatize.

Under ``torchrun`` (after :func:`privmed.privacy.distributed.init_from_env`) :class:`FlowTrainer`
trains data-parallel: every rank draws the same shuffled batch and its dequantization noise, keeps
its share of the rows, and the gradients are summed over ranks, so each step equals the
single-process step; rank 0 alone writes the run directory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from privmed.data.dataset import ImageDataset
from privmed.data.grids import save_pair_grid
from privmed.errors import DataError, PrivmedError
from privmed.models.flows import InvertibleFlow, build_flow
from privmed.privacy.distributed import ReplicaGroup, current_group
from privmed.runs import RunDirectory, run_config

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
BatchCallback = Callable[[int, int], None]


def dequantize(images: Tensor, n_bins: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization: a value on the grid {0, 1/(n_bins-1), ..., 1} becomes a uniform point of its bin.

    Maximising the density of dequantized images maximises a lower bound on the discrete likelihood
    (Theis et al. 2016), which makes bits/dim comparable across models.
    """
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype)
    return (images * (n_bins - 1) + noise.to(images.device)) / n_bins


def bits_per_dim_from_log_prob(log_prob: Tensor, n_dims: int, n_bins: int = 256) -> Tensor:
    """Bits per dimension of discrete images from the continuous log-density of their dequantized copies."""
    return -(log_prob - n_dims * math.log(n_bins)) / (n_dims * math.log(2.0))


@torch.no_grad()
def bits_per_dim(
    flow: InvertibleFlow,
    images: Tensor,
    labels: Tensor | None = None,
    n_bins: int = 256,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """Mean bits/dim of ``images`` (values in [0, 1]) under ``flow``, with one dequantization draw."""
    was_training = flow.training
    flow.eval()
    try:
        values = []
        for start in range(0, images.shape[0], batch_size):
            batch = dequantize(images[start : start + batch_size], n_bins, generator)
            batch_labels = None if labels is None else labels[start : start + batch_size]
            values.append(bits_per_dim_from_log_prob(flow.log_prob(batch, batch_labels), batch[0].numel(), n_bins))
    finally:
        flow.train(was_training)
    return float(torch.cat(values).mean())


@torch.no_grad()
def encode_all(flow: InvertibleFlow, inputs: Tensor, labels: Tensor | None = None, batch_size: int = 512) -> Tensor:
    """Latents (N, D) of every input, in evaluation mode and without gradients."""
    was_training = flow.training
    flow.eval()
    try:
        parts = [
            flow.encode(inputs[start : start + batch_size], None if labels is None else labels[start : start + batch_size])
            for start in range(0, inputs.shape[0], batch_size)
        ]
    finally:
        flow.train(was_training)
    return torch.cat(parts) if parts else inputs.new_zeros(0, flow.latent_dim)


@dataclass
class TrainedFlow:
    """A flow loaded from a flow directory, with what it learned about its training data.

    ``latent_min``/``latent_max`` (D,) are the per-dimension range of the training latents (DP-GLOW's
    box); ``data_key`` is the budget-ledger key of the training data, to warn when the same data is
    privatized; ``config`` is the run's config.json.
    """

    flow: InvertibleFlow
    latent_min: Tensor | None
    latent_max: Tensor | None
    data_key: str | None
    config: dict[str, Any]


def load_trained_flow(flow_dir: str | Path) -> TrainedFlow:
    """Load the flow of ``privmed train flow --out FLOW_DIR`` (in evaluation mode)."""
    run = RunDirectory(flow_dir)
    config = run.read_config()
    checkpoint = run.load_checkpoint()
    if checkpoint is None or "flow_state" not in checkpoint:
        raise PrivmedError(f"{flow_dir}: no trained flow there (no checkpoints/latest.pt)")
    flow = build_flow(checkpoint["flow_config"])
    flow.load_state_dict(checkpoint["flow_state"])
    flow.eval()
    return TrainedFlow(
        flow=flow,
        latent_min=checkpoint.get("latent_min"),
        latent_max=checkpoint.get("latent_max"),
        data_key=checkpoint.get("data_key"),
        config=config,
    )


def flow_trained_on(trained: TrainedFlow, data: ImageDataset, data_ref: str | None = None) -> bool:
    """Whether ``trained`` was trained on ``data``: its recorded training data has the same ledger key
    (keyed content hash, same ledger) or was loaded by the same reference (``config.json``'s ``data``)."""
    from privmed.privacy.ledger import dataset_key

    recorded = trained.config.get("data")
    recorded_ref = recorded.get("ref") if isinstance(recorded, dict) else recorded
    same_ref = data_ref is not None and recorded_ref == data_ref
    return same_ref or (trained.data_key is not None and trained.data_key == dataset_key(data))


class FlowTrainer:
    """Maximum-likelihood training of a flow, in the shape of a scikit-learn estimator.

    Images are dequantized with ``n_bins`` levels and the loss is bits/dim; with ``n_bins=None``
    (tables) the loss is the negative log-likelihood per dimension in nats. Gradients are clipped to
    ``max_grad_norm`` for stability. The run configuration is set here too: ``run_dir`` (metrics,
    checkpoints; None keeps nothing), ``resume`` (continue from its checkpoint), ``data_key`` (the
    ledger key of the training data, kept so privatizing that same data warns), and the
    ``on_epoch``/``on_batch`` callbacks. After ``fit(data)``: ``history_`` (one dict per epoch) and
    ``latent_min_``/``latent_max_`` (the training latents' per-dimension range).
    """

    def __init__(
        self,
        flow: InvertibleFlow,
        epochs: int = 10,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        n_bins: int | None = 256,
        max_grad_norm: float = 10.0,
        seed: int = 0,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        data_key: str | None = None,
        on_epoch: EpochCallback | None = None,
        on_batch: BatchCallback | None = None,
    ) -> None:
        self.flow = flow
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_bins = n_bins
        self.max_grad_norm = max_grad_norm
        self.seed = seed
        self.run_dir = run_dir
        self.resume = resume
        self.data_key = data_key
        self.on_epoch = on_epoch
        self.on_batch = on_batch
        self.history_: list[dict[str, float]] | None = None
        self.latent_min_: Tensor | None = None
        self.latent_max_: Tensor | None = None

    @property
    def metric_name(self) -> str:
        return "bits_per_dim" if self.n_bins else "nll_per_dim"

    def _loss(self, batch: Tensor, labels: Tensor | None, generator: torch.Generator, group: ReplicaGroup) -> Tensor:
        """This rank's part of the batch's mean loss: the loss of its rows, summed, over the whole batch's size.

        The whole batch is dequantized on every rank (the same noise), so the ranks' generators stay in step.
        """
        n_dims, count = batch[0].numel(), batch.shape[0]
        if self.n_bins:
            batch = dequantize(batch, self.n_bins, generator)
        batch, labels = group.shard(batch), None if labels is None else group.shard(labels)
        if batch.shape[0] == 0:
            return torch.zeros(())
        log_prob = self.flow.log_prob(batch, labels)
        per_row = bits_per_dim_from_log_prob(log_prob, n_dims, self.n_bins) if self.n_bins else -(log_prob / n_dims)
        return per_row.sum() / count

    @torch.no_grad()
    def _initialize_on_first_batch(self, inputs: Tensor, labels: Tensor | None, generator: torch.Generator) -> None:
        """Run the data-dependent initialization (ActNorm) on the first batch as one process would, then rewind the generator.

        Without it each rank would initialize from its own share of the rows and the replicas would differ.
        """
        state = generator.get_state()
        idx = torch.randperm(inputs.shape[0], generator=generator)[: self.batch_size]
        batch = dequantize(inputs[idx], self.n_bins, generator) if self.n_bins else inputs[idx]
        self.flow.log_prob(batch, None if labels is None else labels[idx])
        generator.set_state(state)

    def fit(self, data: ImageDataset) -> Self:
        """Train on the images (and, for a conditional flow, the class labels) of ``data``."""
        labels = None
        if self.flow.conditional:
            if data.labels is None:
                raise DataError(f"{data.name}: a conditional flow needs class labels, and this data has none")
            labels = torch.from_numpy(data.labels)
        return self.fit_tensors(torch.from_numpy(data.images), labels)

    def fit_tensors(self, inputs: Tensor, labels: Tensor | None = None) -> Self:
        """Train on a tensor of records (images (N, C, H, W) or table rows (N, D))."""
        run = RunDirectory(self.run_dir) if self.run_dir is not None else None
        resume, data_key, on_epoch, on_batch = self.resume, self.data_key, self.on_epoch, self.on_batch
        if inputs.shape[0] == 0:
            raise DataError("cannot train a flow on an empty dataset")
        if self.epochs < 1 or self.batch_size < 1:
            raise PrivmedError(f"epochs and batch size must be >= 1, got {self.epochs} and {self.batch_size}")
        inputs = inputs.to(dtype=torch.float32)
        group = current_group()
        optimizer = torch.optim.Adam(self.flow.parameters(), lr=self.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        history: list[dict[str, float]] = []
        start_epoch = 0
        checkpoint = run.load_checkpoint() if (run is not None and resume) else None
        if checkpoint is not None:
            self.flow.load_state_dict(checkpoint["flow_state"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            generator.set_state(checkpoint["generator"])
            history = list(checkpoint["history"])
            start_epoch = int(checkpoint["epoch"])
            self.latent_min_, self.latent_max_ = checkpoint["latent_min"], checkpoint["latent_max"]
            group.main_first(lambda: run.truncate_metrics("epoch", start_epoch))
            logger.info("resuming flow training after epoch %d", start_epoch)
        n = inputs.shape[0]
        batches_per_epoch = math.ceil(n / self.batch_size)
        self.flow.train()
        group.check_consistent("the epoch training starts after", start_epoch)
        group.broadcast_module(self.flow)
        if group.distributed and start_epoch == 0:
            self._initialize_on_first_batch(inputs, labels, generator)
        for epoch in range(start_epoch + 1, self.epochs + 1):
            started = time.perf_counter()
            order = torch.randperm(n, generator=generator)
            total, count = 0.0, 0
            for batch_index in range(batches_per_epoch):
                idx = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
                loss = self._loss(inputs[idx], None if labels is None else labels[idx], generator, group)
                optimizer.zero_grad(set_to_none=True)
                if loss.requires_grad:
                    loss.backward()
                group.sum_gradients(self.flow)
                (batch_loss,) = group.sum_values([loss.item()])
                if not math.isfinite(batch_loss):
                    raise PrivmedError(f"flow training diverged in epoch {epoch} (loss {batch_loss}): lower the learning rate")
                torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.max_grad_norm)
                optimizer.step()
                total += batch_loss * idx.numel()
                count += idx.numel()
                if on_batch is not None and group.is_main:
                    on_batch(batch_index + 1, batches_per_epoch)
            row = {"epoch": epoch, f"train_{self.metric_name}": total / count, "seconds": time.perf_counter() - started}
            history.append(row)
            if epoch == self.epochs:
                latents = encode_all(self.flow, inputs, labels)
                self.latent_min_, self.latent_max_ = latents.min(dim=0).values, latents.max(dim=0).values
            if run is not None:

                def write(row: dict[str, float] = row, epoch: int = epoch) -> None:
                    run.append_metrics(row)
                    run.save_checkpoint(self._checkpoint(optimizer, generator, history, epoch, data_key))

                group.main_first(write)
            if on_epoch is not None and group.is_main:
                on_epoch(epoch, row)
        if self.latent_min_ is None:
            latents = encode_all(self.flow, inputs, labels)
            self.latent_min_, self.latent_max_ = latents.min(dim=0).values, latents.max(dim=0).values
        self.flow.eval()
        self.history_ = history
        return self

    def _checkpoint(self, optimizer: torch.optim.Optimizer, generator: torch.Generator, history: list, epoch: int, data_key: str | None) -> dict[str, Any]:
        return {
            "flow_config": self.flow.config,
            "flow_state": self.flow.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "history": history,
            "epoch": epoch,
            "latent_min": self.latent_min_,
            "latent_max": self.latent_max_,
            "data_key": data_key,
        }

    @torch.no_grad()
    def save_samples(self, path: str | Path, n: int = 32, temperature: float = 0.7) -> Path:
        """Write a PNG grid of ``n`` samples (for a conditional flow, classes in turn) drawn at ``temperature``.

        Lower temperatures (Glow uses 0.7) show the typical images of the flow rather than its tails.
        """
        if not hasattr(self.flow, "image_shape"):
            raise PrivmedError("sample grids are for image flows")
        generator = torch.Generator().manual_seed(self.seed)
        labels = torch.arange(n) % self.flow.n_classes if self.flow.conditional else None
        images = self.flow.sample(n, labels, temperature=temperature, generator=generator).cpu().numpy()
        ids = np.array([f"sample{i}" for i in range(n)])
        samples = ImageDataset(images=images, subjects=ids, sources=ids, labels=None if labels is None else labels.numpy(), name="flow samples")
        return save_pair_grid(samples, path, n=n, columns=8, scale=2)


FLOW_NOT_PRIVATE = (
    "flow training is not differentially private: train the flow on public data, or on data whose use is "
    "otherwise authorized, never on the images you will privatize"
)


def flow_run(
    data: ImageDataset,
    out: str | Path,
    *,
    data_ref: str | None = None,
    conditional: bool = False,
    coupling: str = "glow",
    levels: int = 2,
    depth: int = 4,
    hidden: int = 32,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    resume: bool = False,
) -> FlowTrainer:
    """A :class:`FlowTrainer` for the flow directory ``out``, its config.json written (or, on ``resume``, read).

    A new run builds a Glow (or, ``conditional``, a conditional INN) for ``data``'s image shape; a resumed
    run keeps its stored architecture and settings, and ``epochs`` may extend it. ``fit(data)`` trains it.
    In a data-parallel job rank 0 writes the directory.
    """
    from privmed.models.flows import ConditionalINN, Glow
    from privmed.privacy.ledger import dataset_key

    if len(data.spatial_shape) != 2:
        raise DataError(f"{data.name}: flows take 2D images, got spatial shape {data.spatial_shape}")
    run = RunDirectory(out)
    if resume:
        params = run.read_config()["params"]
        flow = build_flow(params["flow"])
        params["epochs"] = epochs
    else:
        image_shape = (data.n_channels, *data.spatial_shape)
        if conditional:
            if data.labels is None:
                raise DataError(f"{data.name}: a conditional flow needs class labels, and this data has none")
            flow = ConditionalINN(image_shape, data.n_classes, levels, depth, hidden, coupling, seed)
        else:
            flow = Glow(image_shape, levels, depth, hidden, coupling, 0, seed)
        params = {"flow": flow.config, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed}
    key = dataset_key(data)
    config = run_config("flow", params, {"key": key, "ref": data_ref, "name": data.name, "records": len(data)})
    current_group().main_first(lambda: run.create(config, resume=resume))
    return FlowTrainer(
        flow, epochs=params["epochs"], batch_size=params["batch_size"], learning_rate=params["learning_rate"], seed=params["seed"],
        run_dir=run.path, resume=resume, data_key=key,
    )
