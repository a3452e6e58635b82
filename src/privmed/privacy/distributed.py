"""Data-parallel DP-SGD over processes launched by torchrun: the process group, sharding, reductions.

The semantics are those of Opacus's distributed DP-SGD (``DPDDP`` with ``DistributedDPOptimizer``),
built on privmed's own engine (:class:`privmed.privacy.dpsgd.DPGradient`):

- every rank draws the same global Poisson batch (same sampler seed) and trains on its shard of it,
  whole privacy units only: a unit split across ranks would be clipped once per rank, so it could
  move the gradient by up to ``world_size * C`` and the accounted sensitivity would not hold;
- each rank clips the gradients of its own units; the clipped sums are summed across ranks
  (all-reduce SUM) and divided by the global expected batch;
- the Gaussian noise (std ``sigma * C``) is added once, by rank 0 before the sum (Opacus's way): it
  works with the unseeded secure noise source too, and no other rank needs a noise state;
- the accountant counts one step per global batch at the global sample rate, so epsilon is that of
  a single process with the same global batch and noise; only rank 0 books the ledger and writes the
  run directory.

Public rows (a GAN's generated samples) are sharded the same way: every rank draws the same global
batch of latents (identical seeds keep their generators in step) and keeps its share; each rank's
public losses are scaled by the global count, so the summed gradient equals the single-process one.
Without ``torchrun`` the :func:`current_group` is a single process (rank 0 of 1) whose reductions do
nothing, so the same code runs unchanged on one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from privmed.errors import PrivmedError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Rows = TypeVar("Rows", Tensor, np.ndarray)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = "torchrun --standalone --nproc_per_node 2 $(which privmed) train dpwgan --distributed ..."


@dataclass(frozen=True)
class ReplicaGroup:
    """The processes of one data-parallel job, as seen from one of them (rank ``rank`` of ``world_size``).

    Every method is a collective when ``world_size > 1``: all ranks must call it, in the same order.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, books the ledger and draws the DP noise."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, rows: Rows) -> Rows:
        """This rank's rows of a global batch: rows ``rank, rank + world_size, ...``."""
        return rows[self.rank :: self.world_size] if self.distributed else rows

    def shard_units(self, batch: np.ndarray, unit_of_record: np.ndarray) -> np.ndarray:
        """This rank's records of a global batch, whole units only: the k-th unit (in batch order) goes to rank k % world_size."""
        if not self.distributed or len(batch) == 0:
            return batch
        units = np.asarray(unit_of_record)[batch]
        _, first, unit_index = np.unique(units, return_index=True, return_inverse=True)
        owner = np.empty(len(first), dtype=np.int64)
        owner[np.argsort(first, kind="stable")] = np.arange(len(first)) % self.world_size
        return batch[owner[unit_index] == self.rank]

    def sum(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Element-wise sums over all ranks (one all-reduce per dtype), as new tensors of the input shapes."""
        if not self.distributed:
            return list(tensors)
        out: list[Tensor | None] = [None] * len(tensors)
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for index, tensor in enumerate(tensors):
            groups.setdefault((tensor.dtype, tensor.device), []).append(index)
        for indices in groups.values():
            flat = torch.cat([tensors[i].reshape(-1) for i in indices])
            torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
            for i, piece in zip(indices, flat.split([tensors[i].numel() for i in indices])):
                out[i] = piece.view(tensors[i].shape)
        return out  # type: ignore[return-value]

    def sum_values(self, values: Sequence[float]) -> list[float]:
        """Sums over all ranks of a few numbers (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        return self.sum([torch.tensor(list(values), dtype=torch.float64)])[0].tolist()

    def sum_gradients(self, module: nn.Module) -> None:
        """Replace the ``.grad`` of each trainable parameter by its sum over ranks (a missing one counts as zero)."""
        if not self.distributed:
            return
        parameters = [p for p in module.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        for parameter, grad in zip(parameters, self.sum(grads)):
            parameter.grad = grad

    def average_buffers(self, module: nn.Module) -> None:
        """Average floating-point buffers (e.g. BatchNorm running statistics) over ranks, so replicas stay identical."""
        if not self.distributed:
            return
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        if buffers:
            with torch.no_grad():
                for buffer, total in zip(buffers, self.sum(buffers)):
                    buffer.copy_(total / self.world_size)

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module`` (e.g. after a random initialization)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)

    def main_first(self, action: Callable[[], T]) -> T:
        """Run ``action`` on rank 0 only; every rank returns its result, or raises its error.

        Keeps the other ranks from waiting forever in a collective when rank 0 fails (a refused
        budget, an existing run directory, a full disk).
        """
        if not self.distributed:
            return action()
        payload: list[Any] = [None]
        if self.is_main:
            try:
                result = action()
            except BaseException as exc:
                shared = exc if isinstance(exc, PrivmedError) else RuntimeError(f"rank 0 failed: {exc!r}")
                torch.distributed.broadcast_object_list([("error", shared)], src=0)
                raise
            payload = [("ok", result)]
        torch.distributed.broadcast_object_list(payload, src=0)
        status, value = payload[0]
        if status == "error":
            raise value
        return value

    def check_consistent(self, what: str, value: Any) -> None:
        """Raise :class:`PrivmedError` unless every rank holds the same ``value`` (e.g. the step a resume starts at)."""
        if not self.distributed:
            return
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        if any(v != values[0] for v in values):
            raise PrivmedError(f"the {self.world_size} processes disagree on {what} ({values}): do all ranks see the same run directory and data?")


SINGLE_PROCESS = ReplicaGroup()
_current = SINGLE_PROCESS


def current_group() -> ReplicaGroup:
    """The job's group after :func:`init_from_env`, else a single process (rank 0 of 1)."""
    return _current


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> ReplicaGroup:
    """Join the process group that ``torchrun`` describes in RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT.

    ``backend`` defaults to gloo (privmed's training runs on the CPU); pass ``"nccl"`` for CUDA
    tensors, which also selects GPU ``LOCAL_RANK``. The group becomes :func:`current_group`.
    """
    global _current
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise PrivmedError(f"--distributed needs the variables torchrun sets ({', '.join(missing)} missing): launch with {LAUNCH_HINT}")
    if torch.distributed.is_initialized():
        raise PrivmedError("a torch.distributed process group is already initialized in this process")
    rank, world_size, local_rank = (int(os.environ[name]) for name in TORCHRUN_VARIABLES[:3])
    backend = backend or "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    _current = ReplicaGroup(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)
    logger.info("joined a %s process group as rank %d of %d", backend, rank, world_size)
    return _current


def shutdown() -> None:
    """Leave the process group (if any); :func:`current_group` is a single process again."""
    global _current
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _current = SINGLE_PROCESS


@contextmanager
def process_group(enabled: bool = True, backend: str | None = None) -> Iterator[ReplicaGroup]:
    """``init_from_env`` on entry and ``shutdown`` on exit when ``enabled``; otherwise the single-process group."""
    if not enabled:
        yield current_group()
        return
    group = init_from_env(backend)
    try:
        yield group
        # Every rank leaves together: a rank that tears down gloo while another still talks to it can abort at exit.
        torch.distributed.barrier()
    finally:
        shutdown()
