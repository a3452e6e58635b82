"""The DP-SGD training loop that privmed's generative methods share.

A method (DP-WGAN, later the AC-GAN) supplies a :class:`PrivateTask`: its networks, optimizers and
what one private step does. :class:`DPTrainer` supplies everything around it that must be right
for the guarantee to hold and for a run to survive a crash:

- the plan (:func:`privmed.privacy.plan.plan_training`): sample rate ``q = batch_size / n_units``, one epoch = ``1/q``
  steps, and the noise multiplier calibrated so the planned steps end at the target epsilon;
- every private step draws a fresh Poisson batch of privacy units and is one accountant step;
- the budget ledger: the planned epsilon is reserved before the first step (a resume re-reserves
  the same release id) and settled with the spent epsilon at the end;
- secret randomness: the DP noise and the Poisson batches come from secret AES-CTR streams that no
  file records, unless the run is ``reproducible`` (then both follow from the seed, and the report
  says the run has no guarantee against anyone who knows it);
- the run directory: metrics.csv rows, a checkpoint (task, accountant, global RNG states, step
  counter; the sampler and noise positions only in a reproducible run) and privacy.json written
  atomically at every epoch end, so ``resume`` continues a killed run with its accountant intact
  (exactly, in a reproducible run; with fresh secret noise and batches otherwise);
- progress through a callback (the CLI draws a progress bar with it) and ``logging``.

``target_epsilon=inf`` trains the same way without clipping or noise: a non-private reference.

Data-parallel training (under ``torchrun``, after :func:`privmed.privacy.distributed.init_from_env`)
follows :mod:`privmed.privacy.distributed`: every rank draws the same global Poisson batch and trains
on its whole units, the gradient sums meet in one all-reduce with the noise added once, the
accountant counts one step per global batch, and rank 0 alone writes the run and books the ledger.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from privmed.errors import PrivacyError, PrivmedError
from privmed.privacy.accountants import make_accountant
from privmed.privacy.distributed import ReplicaGroup, current_group
from privmed.privacy.dpsgd import ClippingStats, DPGradient
from privmed.privacy.ledger import BudgetLedger
from privmed.privacy.plan import TrainingPlan
from privmed.privacy.report import PrivacyReport
from privmed.privacy.sampling import PoissonUnitSampler
from privmed.privacy.secure_rng import new_secret_key
from privmed.runs import RunDirectory, run_config

logger = logging.getLogger(__name__)

SECRET_RANDOMNESS_NOTE = (
    "DP-SGD noise and Poisson batches drawn from a secret cryptographically secure source (AES-256-CTR keyed by "
    "os.urandom), never stored: the published seed sets only networks, latents and samples"
)
REPRODUCIBLE_NOTE = (
    "REPRODUCIBLE RUN: the DP-SGD noise and the Poisson batches follow from the seed; no guarantee against anyone "
    "who knows the seed (a research run, not a release)"
)
CHECKPOINT_FORMAT = 1


class PrivateGradient:
    """The gradient of a module's private step: DP-SGD when the plan is private, plain otherwise.

    Both cases scale the same way, ``sum over private rows / expected_batch_units + public rows``,
    so a non-private reference differs from a private run only by clipping and noise. The DP noise is
    secret unless ``seed`` is given (a reproducible research run, :class:`DPGradient`).
    In a data-parallel ``group`` both cases sum the gradient over ranks (see :mod:`privmed.privacy.distributed`).
    """

    def __init__(self, module: nn.Module, plan: TrainingPlan, seed: int | None, *, group: ReplicaGroup | None = None) -> None:
        self.module = module
        self.expected_batch_units = plan.expected_batch_units
        self.group = group or current_group()
        self.engine = (
            DPGradient(
                module,
                max_grad_norm=plan.max_grad_norm,
                noise_multiplier=plan.noise_multiplier,
                expected_batch_units=plan.expected_batch_units,
                seed=seed,
                reducer=self.group if self.group.distributed else None,
            )
            if plan.private
            else None
        )

    def capture(self) -> AbstractContextManager[None]:
        """Wrap the forward of the private step (records activations for DP-SGD)."""
        return self.engine.capture() if self.engine is not None else nullcontext()

    def backward(self, losses: torch.Tensor, unit_ids: torch.Tensor) -> ClippingStats | None:
        """Write ``.grad`` of the module from per-row ``losses``; ``unit_ids`` -1 marks public rows."""
        if self.engine is not None:
            return self.engine.backward(losses, unit_ids)
        self.module.zero_grad(set_to_none=True)
        private = unit_ids >= 0
        total = losses[private].sum() / self.expected_batch_units + losses[~private].sum()
        total.backward()
        self.group.sum_gradients(self.module)
        return None

    def settle(self) -> None:
        """Stop drawing noise ahead: the last step is done (no background draw outlives training)."""
        if self.engine is not None:
            self.engine.settle()

    def close(self) -> None:
        """Hand the module back as a plain module (after training; its parameters require gradients again)."""
        if self.engine is not None:
            self.engine.close()

    def state_dict(self) -> dict[str, Any]:
        return self.engine.state_dict() if self.engine is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.engine is not None:
            self.engine.load_state_dict(state)


class PrivateTask(Protocol):
    """What a method gives :class:`DPTrainer`: the private module and one private step.

    ``private_step`` gets the record indices of one Poisson batch (possibly empty) and the step
    index (0-based), computes the private module's update through ``gradient`` (forward inside
    ``gradient.capture()``, then ``gradient.backward``), may take public steps too (a GAN's
    generator), and returns numbers named in ``metric_names`` (a subset is fine). In a data-parallel
    job ``batch`` is this rank's share of the global batch; the task keeps its share of public rows
    (``gradient.group.shard``, losses scaled by the global count) and sums public modules' gradients
    over ranks (``gradient.group.sum_gradients``).
    """

    metric_names: tuple[str, ...]
    private_module: nn.Module

    def private_step(self, batch: np.ndarray, step: int, gradient: PrivateGradient) -> dict[str, float]: ...

    def end_epoch(self, epoch: int, run: RunDirectory | None) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainingProgress:
    """One progress report: where the run is and its latest step metrics.

    ``epsilon`` is the epsilon spent as of the last epoch end (the accountant is queried once per
    epoch: an RDP conversion costs up to a second).
    """

    step: int
    total_steps: int
    epoch: int
    total_epochs: int
    epsilon: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerRelease:
    """How a run appears in the budget ledger: the dataset it spends and its release id."""

    dataset_key: str
    release_id: str
    description: str = ""
    group_sizes: dict[str, int] | None = None


ProgressCallback = Callable[[TrainingProgress], None]
EpochCallback = Callable[[dict[str, Any]], None]


class DPTrainer:
    """Runs a :class:`PrivateTask` under a :class:`TrainingPlan`, with ledger, checkpoints and resume.

    ``unit_ids`` gives each record's privacy unit; ``records_per_unit`` caps the records a sampled
    unit contributes (clipping is per unit, so the cap costs no privacy). ``run`` (optional) is
    where metrics, checkpoints and privacy.json go, every ``checkpoint_every`` steps (default: every
    epoch) and at the end; ``report_factory(steps, epsilon)`` builds the :class:`PrivacyReport`
    written there. The DP noise and the Poisson batches come from secret streams that nothing stores
    (a resumed run draws fresh ones) unless ``reproducible``, which derives both from ``seed``: a
    research run with no guarantee against anyone who knows the seed, flagged in its report. In a
    data-parallel job rank 0 draws the secret sampling key and broadcasts it, so all ranks draw the
    same batches; the key never reaches the disk.
    ``group`` (default: :func:`privmed.privacy.distributed.current_group`) makes the run one rank of a
    data-parallel job: all ranks train, rank 0 alone writes ``run`` and books the ledger; all ranks
    read the checkpoint on resume.
    """

    def __init__(
        self,
        task: PrivateTask,
        plan: TrainingPlan,
        unit_ids: np.ndarray,
        *,
        report_factory: Callable[[int, float], PrivacyReport],
        seed: int = 0,
        records_per_unit: int | None = None,
        run: RunDirectory | None = None,
        release: LedgerRelease | None = None,
        on_progress: ProgressCallback | None = None,
        on_epoch: EpochCallback | None = None,
        checkpoint_every: int | None = None,
        reproducible: bool = False,
        group: ReplicaGroup | None = None,
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise PrivmedError(f"checkpoint_every must be a positive number of steps, got {checkpoint_every}")
        self.task = task
        self.checkpoint_every = checkpoint_every or plan.steps_per_epoch
        self.plan = plan
        self.run = run
        self.release = release
        self.report_factory = report_factory
        self.on_progress = on_progress
        self.on_epoch = on_epoch
        self.accountant = make_accountant(plan.accountant)
        self.group = group or current_group()
        self.reproducible = reproducible
        # Every rank must draw the same batches: a secret key from rank 0, broadcast (kept in memory only).
        key = self.group.main_first(new_secret_key) if self.group.distributed and not reproducible else None
        self.sampler = PoissonUnitSampler(
            unit_ids, plan.sample_rate, records_per_unit=records_per_unit, seed=seed if reproducible else None, key=key
        )
        if self.sampler.n_units != plan.n_units:
            raise PrivmedError(f"the plan counts {plan.n_units} units but the data holds {self.sampler.n_units}")
        if self.group.world_size > plan.expected_batch_units:
            raise PrivmedError(
                f"{self.group.world_size} processes for an expected batch of {plan.expected_batch_units:g} units: "
                "use at most as many processes as the batch size"
            )
        self.unit_ids = np.asarray(unit_ids)
        self.gradient = PrivateGradient(task.private_module, plan, seed if reproducible else None, group=self.group)
        self.step = 0
        self._epsilon_cache: tuple[int, float] = (0, 0.0)

    def epsilon_spent(self) -> float:
        """The epsilon of the private steps taken so far at the plan's delta (inf when non-private)."""
        if not self.plan.private:
            self._epsilon_cache = (self.step, math.inf if self.step else 0.0)
        elif self._epsilon_cache[0] != self.accountant.steps:
            self._epsilon_cache = (self.accountant.steps, self.accountant.get_epsilon(self.plan.delta))
        return self._epsilon_cache[1]

    def train(self, resume: bool = False) -> PrivacyReport:
        """Run (or, with ``resume``, continue) the plan to its end; return the privacy report.

        Training stops when the planned steps, which spend exactly the calibrated budget, are done.
        """
        if resume:
            self._restore()
        self.group.check_consistent("the starting step, sampler and network", self._fingerprint())
        books = self.release is not None and self.plan.private
        if self.release is not None and not self.plan.private and self.group.is_main:
            logger.warning("a non-private run has no epsilon to book: the budget ledger does not record it")
        if books:
            release = self.release
            self.group.main_first(
                lambda: BudgetLedger().reserve(
                    release.dataset_key,
                    release.release_id,
                    epsilon=self.plan.target_epsilon,
                    delta=self.plan.delta,
                    unit=self.plan.unit_word,
                    description=release.description,
                    n_units=self.plan.n_units,
                    group_sizes=release.group_sizes,
                )
            )
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        epoch_start = time.monotonic()
        while self.step < self.plan.steps:
            batch = self.group.shard_units(self.sampler.next_batch(), self.unit_ids)
            metrics = self.task.private_step(batch, self.step, self.gradient)
            if self.plan.private:
                self.accountant.step(noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate)
            self.step += 1
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
                counts[name] = counts.get(name, 0) + 1
            if self.step % self.checkpoint_every == 0 or self.step == self.plan.steps:
                self._checkpoint(self._means(sums, counts), time.monotonic() - epoch_start)
                sums, counts, epoch_start = {}, {}, time.monotonic()
            if self.on_progress is not None and self.group.is_main:
                self.on_progress(
                    TrainingProgress(
                        step=self.step,
                        total_steps=self.plan.steps,
                        epoch=self._epoch(),
                        total_epochs=self.plan.epochs,
                        epsilon=self._epsilon_cache[1],
                        metrics={name: float(value) for name, value in metrics.items()},
                    )
                )
        self.gradient.settle()
        epsilon = self.epsilon_spent()
        if self.group.is_main:
            logger.info(
                "privacy budget spent: epsilon %.4g of %.4g per %s after %d private steps; training stops",
                epsilon, self.plan.target_epsilon, self.plan.unit_word, self.step,
            )
        report = self._report(self.step, epsilon)

        def publish() -> None:
            if self.run is not None:
                report.to_json(self.run.privacy_path)
            if books:
                BudgetLedger().settle(self.release.release_id, epsilon)

        self.group.main_first(publish)
        return report

    def _report(self, steps: int, epsilon: float) -> PrivacyReport:
        """The method's report, with the notes on how the trainer drew the noise and split the work."""
        report = self.report_factory(steps, epsilon)
        extra = []
        if self.plan.private:
            extra.append(REPRODUCIBLE_NOTE if self.reproducible else SECRET_RANDOMNESS_NOTE)
        report.reproducible = self.reproducible and self.plan.private
        if self.group.distributed:
            extra.append(
                f"trained data-parallel on {self.group.world_size} processes: one global Poisson batch per step, each process "
                "clips whole units, the clipped sums are summed and noised once; accounted once at the global sample rate"
            )
        report.notes = [*report.notes, *extra]
        return report

    def _means(self, sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
        """Each metric's mean over the steps since the last checkpoint (and over all ranks)."""
        names = list(self.task.metric_names)
        totals = self.group.sum_values([sums.get(name, 0.0) for name in names] + [counts.get(name, 0) for name in names])
        return {name: totals[i] / totals[len(names) + i] for i, name in enumerate(names) if totals[len(names) + i]}

    def _fingerprint(self) -> tuple[int, str, float]:
        """What every rank must agree on before training: step, sampler state, a checksum of the private module."""
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in self.task.private_module.parameters()))
        return self.step, repr(self.sampler.state_dict()), checksum

    def _epoch(self) -> int:
        return math.ceil(self.step / self.plan.steps_per_epoch)

    def _checkpoint(self, means: dict[str, float], seconds: float) -> None:
        epsilon = self.epsilon_spent()
        if self.plan.private and epsilon > self.plan.target_epsilon * (1 + 1e-9):
            raise PrivacyError(f"epsilon spent {epsilon} passed the target {self.plan.target_epsilon}: the plan is inconsistent")
        epoch = self._epoch()
        row: dict[str, Any] = {"epoch": epoch, "step": self.step}
        row.update({name: means.get(name, math.nan) for name in self.task.metric_names})
        row.update({"epsilon": epsilon, "seconds": round(seconds, 3)})
        if self.group.is_main:
            logger.info("epoch %d/%d (step %d): %s", epoch, self.plan.epochs, self.step, row)
        run = self.run
        if run is not None:

            def write() -> None:
                run.append_metrics(row)
                self.task.end_epoch(epoch, run)
                run.save_checkpoint(self._state())
                self._report(self.step, epsilon).to_json(run.privacy_path)

            self.group.main_first(write)
        if self.on_epoch is not None and self.group.is_main:
            self.on_epoch(row)

    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "plan": self.plan.to_dict(),
            "step": self.step,
            "finished": self.step >= self.plan.steps,
            "task": self.task.state_dict(),
            "accountant": self.accountant.state_dict(),
            "sampler": self.sampler.state_dict(),
            "gradient": self.gradient.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
        }

    def _restore(self) -> None:
        """Continue from the run's checkpoint; refuses one written under another plan."""
        if self.run is None:
            raise PrivmedError("resume needs a run directory")
        run = self.run
        state = run.load_checkpoint()
        if state is None:
            if self.group.is_main:
                logger.warning("%s has no checkpoint yet: starting from step 0", run.path)
            self.group.main_first(lambda: run.truncate_metrics("step", 0))
            return
        if state.get("format") != CHECKPOINT_FORMAT or state.get("plan") != self.plan.to_dict():
            raise PrivmedError(
                f"{self.run.checkpoint_path} was written under another privacy plan or data: resume with the same data and options"
            )
        self.task.load_state_dict(state["task"])
        self.accountant.load_state_dict(state["accountant"])
        self.sampler.load_state_dict(state["sampler"])
        self.gradient.load_state_dict(state["gradient"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        self.step = int(state["step"])
        self.group.main_first(lambda: run.truncate_metrics("step", self.step))
        self.epsilon_spent()
        logger.info("resumed %s at step %d of %d", self.run.path, self.step, self.plan.steps)


def start_run(
    run: RunDirectory | None,
    resume: bool,
    *,
    method: str,
    params: dict[str, Any],
    data_key: str,
    data_info: dict[str, Any],
    plan: TrainingPlan,
    extra: dict[str, Any] | None = None,
) -> str:
    """Create a run directory's config (or check it, on resume); return the run id the ledger books it under.

    A resume must use the same data (by ledger key, checked against the run's ledger entry: the key is
    private to the ledger and config.json does not carry it) and the same options, so that the accountant's
    history and the ledger's one entry stay the run's own. Without a run directory the run gets a
    fresh id and cannot be resumed. In a data-parallel job rank 0 does this and every rank gets its answer.
    """
    return current_group().main_first(lambda: _start_run(run, resume, method, params, data_key, data_info, plan, extra))


def _start_run(
    run: RunDirectory | None,
    resume: bool,
    method: str,
    params: dict[str, Any],
    data_key: str,
    data_info: dict[str, Any],
    plan: TrainingPlan,
    extra: dict[str, Any] | None,
) -> str:
    if run is None:
        if resume:
            raise PrivmedError("resume needs run_dir: the run directory to continue")
        return uuid.uuid4().hex
    if resume:
        config = run.read_config()
        booked = next((e for e in BudgetLedger().entries() if e["release_id"] == config.get("run_id")), None)
        if booked is not None and booked["dataset_key"] != data_key:
            raise PrivmedError(f"{run.path} was trained on other data than this {data_info.get('name')!r}: resume with the same data")
        if config.get("params") != params:
            raise PrivmedError(f"{run.path} was started with other options: resume it with from_run(RUN_DIR) or --resume alone")
        return str(config["run_id"])
    config = run_config(method, params, dict(data_info), **(extra or {}))
    config["plan"] = plan.to_dict()
    run.create(config)
    return str(config["run_id"])
