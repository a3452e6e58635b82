"""AC-GAN: class-conditional synthetic images under (optional) differential privacy (seed 001).

Seed 001 shares spine MRI through an auxiliary-classifier GAN (Odena et al. 2017): the generator
draws an image from a latent vector and a one-hot class; the discriminator says real or fake and
which class. Only the discriminator sees private data, so only its gradient is privatized here:
its loss on a real row is the real/fake loss plus ``class_weight`` times the class loss, clipped
per privacy unit and noised by :class:`privmed.methods.trainer.DPTrainer` (the loop the DP-WGAN
uses); generated rows are public. The generator learns from the discriminator by post-processing.

What privmed does differently from seed 001, stated in every privacy report:

- the seed trained without any formal privacy; here ``epsilon`` is a DP-SGD target (``inf`` trains
  the same way without clipping or noise, as a reference);
- the class head is trained with cross-entropy on logits; the seed's code applied softmax and then
  NLLLoss, i.e. it fed probabilities where log-probabilities belong;
- the discriminator's class head learns from real rows only (generated rows train the real/fake head
  alone; the generator still learns its class loss through the class head). Seed 001, after Odena
  et al., also trained the class head on generated rows labelled with their requested class. Under
  DP-SGD those public rows are neither clipped nor noised, so their class signal drowns the real
  rows' noisy one and the two networks can settle on a class code that is the real one swapped
  (DP runs trained classifiers with test ROC AUC 0.24-0.33 on PneumoniaMNIST before this change; see
  benchmarks/results/pneumonia_acgan.md).
  ``class_loss_on_generated=True`` restores the seed's behaviour;
- generated rows draw their class uniformly during training (the training set's class frequencies
  are private). Samples follow ``class_frequencies``: the training frequencies for a non-private
  run; for a DP run uniform, unless public frequencies are given, since the exact training counts
  are not covered by epsilon.

Two options follow Bie et al. 2023 ("Private GANs, revisited"), who found that a DP-SGD discriminator
needs many steps per generator step: each of its steps sees a noisy gradient, and a generator that
moves after every one of them trains against a discriminator that never catches up. Both are off by
default (seed 001's behaviour) and stated in the privacy report when on:

- ``discriminator_steps`` = k: a generator step after every k-th discriminator step (seed 001: k = 1).
  The accountant counts the discriminator steps, which alone read private data;
- ``generator_ema`` = d: samples (and preview grids) come from an exponential moving average of the
  generator's weights, updated after every generator step with decay d and started from the weights
  after the first one (seed 001 sampled the last generator). It smooths the generator's drift under
  the discriminator's noisy updates and is post-processing of the generator, so it costs no privacy.

A third option bounds what the generated rows teach the discriminator: ``clip_generated=True`` clips each
generated row's gradient to the same norm as a real unit's and scales both by the same expected batch (it
adds no noise: generated rows hold no private data). Without it the real rows' clipped, noised mean is
outweighed by the generated rows' unclipped mean, and the discriminator learns mostly from its own fakes.
"""

from __future__ import annotations

import copy
import logging
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.data.grids import save_pair_grid
from privmed.errors import DataError, PrivmedError
from privmed.methods.base import class_index
from privmed.methods.generative import DPGenerativeMethod
from privmed.methods.trainer import EpochCallback, PrivateGradient, ProgressCallback, start_run
from privmed.models.acgan import LATENT_DIM, ACDiscriminator, ConditionalGenerator, build_size, one_hot
from privmed.privacy.distributed import current_group
from privmed.privacy.group import group_sizes
from privmed.privacy.ledger import dataset_key
from privmed.privacy.plan import TrainingPlan, privacy_report
from privmed.privacy.report import PrivacyReport
from privmed.privacy.units import PrivacyUnit, plural
from privmed.runs import RunDirectory

logger = logging.getLogger(__name__)

METHOD_NAME = "acgan"
_SAMPLE_CHUNK = 256
_PREVIEW_PER_CLASS = 4
_PREVIEW_MAX_CLASSES = 8
_ADAM_BETAS = (0.5, 0.999)


def discriminator_losses(real_fake: torch.Tensor, class_logits: torch.Tensor, is_real: bool, labels: torch.Tensor, class_weight: float) -> torch.Tensor:
    """Per-row AC-GAN loss: binary cross-entropy of the real/fake logit plus weighted class cross-entropy.

    With ``class_weight`` 0 the class head gets no gradient at all (the loss is the real/fake term alone).
    """
    target = torch.full_like(real_fake, 1.0 if is_real else 0.0)
    loss = F.binary_cross_entropy_with_logits(real_fake, target, reduction="none")
    if class_weight:
        loss = loss + class_weight * F.cross_entropy(class_logits, labels, reduction="none")
    return loss


def check_recipe(discriminator_steps: int, generator_ema: float | None) -> None:
    """Refuse a discriminator-step count below 1 or an EMA decay outside [0, 1)."""
    if isinstance(discriminator_steps, bool) or not isinstance(discriminator_steps, numbers.Integral) or discriminator_steps < 1:
        raise PrivmedError(f"discriminator_steps must be an integer >= 1 (discriminator steps per generator step), got {discriminator_steps!r}")
    if generator_ema is not None and not 0.0 <= generator_ema < 1.0:
        raise PrivmedError(f"generator_ema is the decay of the generator's moving average and must lie in [0, 1), got {generator_ema!r}")


def update_average(average: nn.Module, model: nn.Module, decay: float, *, first: bool) -> None:
    """One EMA update of ``average``'s parameters towards ``model``'s (``first``: copy them); buffers are copied.

    The buffers are BatchNorm's running statistics, themselves averages; copying them is what EMA
    generators usually do.
    """
    with torch.no_grad():
        for averaged, current in zip(average.parameters(), model.parameters()):
            if first:
                averaged.copy_(current)
            else:
                averaged.lerp_(current, 1.0 - decay)
        for averaged, current in zip(average.buffers(), model.buffers()):
            averaged.copy_(current)


class _ACGANTask:
    """The AC-GAN's private step for :class:`DPTrainer`: one discriminator step, and a generator step every
    ``discriminator_steps`` (then the weights' moving average, if ``generator_ema`` is set)."""

    metric_names = ("discriminator_loss", "generator_loss", "clipped_fraction")

    def __init__(
        self,
        generator: ConditionalGenerator,
        discriminator: ACDiscriminator,
        images: torch.Tensor,
        labels: torch.Tensor,
        unit_ids: np.ndarray,
        *,
        n_fake: int,
        learning_rate: float,
        class_weight: float,
        class_loss_on_generated: bool,
        seed: int,
        discriminator_steps: int = 1,
        generator_ema: float | None = None,
        clip_generated: bool = False,
    ) -> None:
        self.generator = generator
        self.clip_generated = clip_generated
        self.discriminator_steps = discriminator_steps
        self.ema_decay = generator_ema
        # Before the first generator step the average is the initial generator (only a run shorter than k steps samples it).
        self.average = copy.deepcopy(generator) if generator_ema is not None else None
        self.private_module = discriminator
        self.images = images
        self.labels = labels
        self.unit_ids = torch.from_numpy(np.asarray(unit_ids, dtype=np.int64))
        self.n_fake = n_fake
        self.class_weight = class_weight
        self.generated_class_weight = class_weight if class_loss_on_generated else 0.0
        self.n_classes = generator.n_classes
        self.generator_optimizer = torch.optim.Adam(generator.parameters(), lr=learning_rate, betas=_ADAM_BETAS)
        self.discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=learning_rate, betas=_ADAM_BETAS)
        self.latents = torch.Generator().manual_seed(seed)
        shown = min(self.n_classes, _PREVIEW_MAX_CLASSES)
        self.preview_labels = torch.arange(shown).repeat_interleave(_PREVIEW_PER_CLASS)
        preview_rng = torch.Generator().manual_seed(seed + 1)
        self.preview_latent = torch.randn(len(self.preview_labels), generator.latent_dim, generator=preview_rng)

    def _fake_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and uniformly drawn classes for ``n_fake`` generated rows (no private information)."""
        latent = torch.randn(self.n_fake, self.generator.latent_dim, generator=self.latents)
        labels = torch.randint(self.n_classes, (self.n_fake,), generator=self.latents)
        return current_group().shard(latent), current_group().shard(labels)  # this rank's share in a data-parallel job

    def private_step(self, batch: np.ndarray, step: int, gradient: PrivateGradient) -> dict[str, float]:
        """One discriminator step on a Poisson batch of real images and ``n_fake`` generated ones."""
        discriminator = self.private_module
        index = torch.from_numpy(np.asarray(batch, dtype=np.int64))
        latent, fake_labels = self._fake_batch()
        with torch.no_grad():
            fake = self.generator(latent, one_hot(fake_labels, self.n_classes))
        current_group().average_buffers(self.generator)
        with gradient.capture():
            real_fake, class_logits = discriminator(torch.cat([self.images[index], fake]))
        n_real = len(index)
        # Private rows: their loss per row (the trainer clips per unit, noises, divides by the expected batch).
        # Public rows: the mean loss over generated images, which depend on no private record; by default
        # they train the real/fake head only, so the class head learns the classes from real images alone.
        real_losses = discriminator_losses(real_fake[:n_real], class_logits[:n_real], True, self.labels[index], self.class_weight)
        fake_losses = discriminator_losses(real_fake[n_real:], class_logits[n_real:], False, fake_labels, self.generated_class_weight)
        if self.clip_generated:  # each generated row its own unit beyond the private ones: clipped and scaled like one, no noise of its own
            fake_ids = len(self.unit_ids) + torch.arange(len(fake_labels))
            losses = torch.cat([real_losses, fake_losses])
        else:
            fake_ids = torch.full((len(fake_labels),), -1, dtype=torch.long)
            losses = torch.cat([real_losses, fake_losses / self.n_fake])
        stats = gradient.backward(losses, torch.cat([self.unit_ids[index], fake_ids]))
        self.discriminator_optimizer.step()
        metrics: dict[str, float] = {}
        if (step + 1) % self.discriminator_steps == 0:
            metrics["generator_loss"] = self._generator_step()
            if self.average is not None:
                update_average(self.average, self.generator, self.ema_decay, first=step + 1 == self.discriminator_steps)
        if n_real:
            metrics["discriminator_loss"] = float(real_losses.detach().mean() + fake_losses.detach().mean())
        if stats is not None:
            metrics["clipped_fraction"] = stats.clipped_fraction
        return metrics

    def _generator_step(self) -> float:
        """Fool the discriminator into 'real' and the requested class; no private data, no privacy cost."""
        self.generator_optimizer.zero_grad(set_to_none=True)
        latent, labels = self._fake_batch()
        real_fake, class_logits = self.private_module(self.generator(latent, one_hot(labels, self.n_classes)))
        losses = discriminator_losses(real_fake, class_logits, True, labels, self.class_weight)
        (losses.sum() / self.n_fake).backward()  # the mean over all ranks' n_fake rows once summed over ranks
        current_group().sum_gradients(self.generator)
        current_group().average_buffers(self.generator)
        self.generator_optimizer.step()
        return float(losses.detach().mean())

    @property
    def sampler(self) -> ConditionalGenerator:
        """The generator samples come from: the moving average when ``generator_ema`` is set, else the generator."""
        return self.average if self.average is not None else self.generator

    def end_epoch(self, epoch: int, run: RunDirectory | None) -> None:
        """Write the epoch's sample grid: one row per class, the same latent vectors every epoch."""
        if run is None:
            return
        images = generate_images(self.sampler, self.preview_latent, one_hot(self.preview_labels, self.n_classes))
        preview = _images_dataset(images, self.preview_labels, None, "preview")
        save_pair_grid(preview, run.samples_dir / f"epoch_{epoch:04d}.png", n=len(preview), columns=_PREVIEW_PER_CLASS, scale=2)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "generator": self.generator.state_dict(),
            "discriminator": self.private_module.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "latent_rng": self.latents.get_state(),
        }
        if self.average is not None:
            state["generator_ema"] = self.average.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        if self.average is not None:
            self.average.load_state_dict(state["generator_ema"])
        self.private_module.load_state_dict(state["discriminator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.latents.set_state(state["latent_rng"])


def generate_images(generator: ConditionalGenerator, latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """Generator outputs in evaluation mode, in chunks (the generator's mode is restored)."""
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            return torch.cat([generator(z, c) for z, c in zip(latent.split(_SAMPLE_CHUNK), condition.split(_SAMPLE_CHUNK))])
    finally:
        generator.train(was_training)


def _images_dataset(
    images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None, name: str, metadata: dict[str, Any] | None = None
) -> ImageDataset:
    ids = np.array([f"synthetic-{i:06d}" for i in range(len(images))])
    return ImageDataset(
        images=images.clamp(0.0, 1.0).numpy().astype(np.float32),
        labels=labels.numpy().astype(np.int64),
        class_names=tuple(class_names) if class_names is not None else None,
        subjects=ids,
        sources=ids,
        name=name,
        record_kind="image",
        subjects_known=False,
        metadata=metadata or {},
    )


class ACGAN(DPGenerativeMethod):
    """A class-conditional GAN whose discriminator is trained with DP-SGD (seed 001 + DP).

    ``epsilon`` is the target (``inf``: no privacy, a reference); ``delta`` defaults to min(1e-5, 1/(10N)) for
    N private units; ``unit`` is ``image`` (one training image) or ``patient`` (all of a patient's
    images). The run lasts ``epochs`` epochs of ``1/q`` discriminator steps (q = batch_size / N), or
    ``max_steps`` steps; the noise is calibrated so exactly these steps spend ``epsilon``. Seed 001's
    settings are the defaults: latent 100, Adam lr 1e-4, class-loss weight 1, base width 64.
    The discriminator's class head learns from real images only; ``class_loss_on_generated=True``
    also trains it on generated images, as seed 001 did (see the module docstring for why not).
    ``class_frequencies`` (public, one per class) replaces the default sampling frequencies.
    ``discriminator_steps`` (k discriminator steps per generator step) and ``generator_ema`` (sample
    from a moving average of the generator's weights with this decay) are Bie et al.'s recipe for DP
    GANs; their defaults (1, None) are seed 001's. ``clip_generated`` clips each generated row's gradient
    like a real unit's (module docstring; default off, as seed 001). With
    ``run_dir`` the run writes config.json, metrics.csv, checkpoints, sample grids and privacy.json.
    The DP noise and batches are secret unless ``reproducible`` (then they follow from ``seed``, and
    the report says so); under ``torchrun`` ``fit``
    trains data-parallel (:mod:`privmed.privacy.distributed`).

    Learned: ``generator_`` (the moving average when ``generator_ema`` is set), ``report_``, ``class_frequencies_``,
    ``class_names_``.
    """

    def __init__(
        self,
        epsilon: float = 8.0,
        *,
        delta: float | None = None,
        unit: PrivacyUnit | str = "image",
        epochs: int | None = 50,
        max_steps: int | None = None,
        batch_size: int = 32,
        learning_rate: float = 1e-4,
        class_weight: float = 1.0,
        class_loss_on_generated: bool = False,
        discriminator_steps: int = 1,
        generator_ema: float | None = None,
        clip_generated: bool = False,
        max_grad_norm: float = 1.0,
        latent_dim: int = LATENT_DIM,
        generator_channels: int = 64,
        discriminator_channels: int = 64,
        discriminator_norm: str = "group",
        class_frequencies: Sequence[float] | None = None,
        records_per_unit: int | None = 8,
        accountant: str = "rdp",
        seed: int = 0,
        checkpoint_every: int | None = None,
        reproducible: bool = False,
        run_dir: str | Path | None = None,
        resume: bool = False,
        data_ref: str | None = None,
        on_progress: ProgressCallback | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.unit = unit
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.class_weight = class_weight
        self.class_loss_on_generated = class_loss_on_generated
        self.discriminator_steps = discriminator_steps
        self.generator_ema = generator_ema
        self.clip_generated = clip_generated
        self.max_grad_norm = max_grad_norm
        self.latent_dim = latent_dim
        self.generator_channels = generator_channels
        self.discriminator_channels = discriminator_channels
        self.discriminator_norm = discriminator_norm
        self.class_frequencies = class_frequencies
        self.records_per_unit = records_per_unit
        self.accountant = accountant
        self.seed = seed
        self.checkpoint_every = checkpoint_every
        self.reproducible = reproducible
        self.run_dir = run_dir
        self.resume = resume
        self.data_ref = data_ref
        self.on_progress = on_progress
        self.on_epoch = on_epoch
        self.generator_: ConditionalGenerator | None = None
        self.report_: PrivacyReport | None = None

    method_name = METHOD_NAME
    method_label = "AC-GAN"
    _HYPERPARAMETERS = (
        "epsilon", "delta", "unit", "epochs", "max_steps", "batch_size", "learning_rate", "class_weight", "class_loss_on_generated",
        "discriminator_steps", "generator_ema", "clip_generated", "max_grad_norm", "latent_dim", "generator_channels", "discriminator_channels",
        "discriminator_norm", "class_frequencies", "records_per_unit", "accountant", "seed", "checkpoint_every", "reproducible",
    )

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready values, with the public class frequencies as a list."""
        params = super().get_params()
        if self.class_frequencies is not None:
            params["class_frequencies"] = [float(f) for f in self.class_frequencies]
        return params

    def _check_data(self, data: ImageDataset) -> int:
        """Refuse data the AC-GAN cannot learn; return the number of classes."""
        if data.labels is None:
            raise DataError(f"{data.name}: the AC-GAN learns class-conditional images, but the data has no class labels")
        if len(data.spatial_shape) != 2 or data.spatial_shape[0] != data.spatial_shape[1]:
            raise DataError(f"{data.name}: the AC-GAN trains on square 2D images, got spatial shape {data.spatial_shape}")
        build_size(data.spatial_shape[0])
        n_classes = max(data.n_classes, 2)
        if self.class_frequencies is not None and len(self.class_frequencies) != n_classes:
            raise PrivmedError(f"class_frequencies has {len(self.class_frequencies)} values but {data.name} has {n_classes} classes")
        return n_classes

    def _sampling_frequencies(self, data: ImageDataset, n_classes: int, private: bool) -> np.ndarray:
        """The class frequencies ``sample`` draws with (see the module docstring for why)."""
        if self.class_frequencies is not None:
            frequencies = np.asarray(self.class_frequencies, dtype=np.float64)
            if np.any(frequencies < 0) or frequencies.sum() <= 0:
                raise PrivmedError(f"class_frequencies must be non-negative and not all zero, got {list(self.class_frequencies)}")
        elif private:
            frequencies = np.ones(n_classes)
        else:
            frequencies = np.bincount(data.labels, minlength=n_classes).astype(np.float64)
        return frequencies / frequencies.sum()

    def fit(self, data: ImageDataset) -> Self:
        """Train on labelled images ``data``; with ``resume`` set, continue the run in ``run_dir``.

        The run configuration's ``data_ref`` (how the data was loaded, e.g. ``phantom-classes:train``) is stored in
        config.json so the CLI can resume without being told again. Bad options are refused before anything is written.
        """
        check_recipe(self.discriminator_steps, self.generator_ema)
        n_classes = self._check_data(data)
        image_size = data.spatial_shape[0]
        unit_ids, plan = self._plan(data)
        frequencies = self._sampling_frequencies(data, n_classes, plan.private)
        class_names = list(data.class_names) if data.class_names is not None else [str(k) for k in range(n_classes)]
        key = dataset_key(data)
        run = RunDirectory(self.run_dir) if self.run_dir is not None else None
        run_id = start_run(
            run, self.resume, method=METHOD_NAME, params=self.get_params(), data_key=key, plan=plan,
            data_info={
                "ref": self.data_ref, "name": data.name, "records": len(data), "record_kind": data.record_kind,
                "image_channels": data.n_channels, "image_size": data.spatial_shape[0],
                "n_classes": n_classes, "class_names": class_names,
            },
            extra={"sampling_class_frequencies": [float(f) for f in frequencies]},
        )
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            generator = ConditionalGenerator(n_classes, data.n_channels, image_size, self.latent_dim, self.generator_channels)
            discriminator = ACDiscriminator(n_classes, data.n_channels, image_size, self.discriminator_channels, norm=self.discriminator_norm)
        task = _ACGANTask(
            generator, discriminator, torch.from_numpy(data.images), torch.from_numpy(data.labels.astype(np.int64)), unit_ids,
            n_fake=self.batch_size, learning_rate=self.learning_rate, class_weight=self.class_weight,
            class_loss_on_generated=self.class_loss_on_generated, seed=self.seed,
            discriminator_steps=self.discriminator_steps, generator_ema=self.generator_ema, clip_generated=self.clip_generated,
        )
        notes = self._notes(plan, data, delta_is_default=self.delta is None)

        def report_factory(steps: int, epsilon: float) -> PrivacyReport:
            return privacy_report(plan, steps, epsilon, seed=self.seed, dataset=data.name, notes=notes)

        logger.info(
            "AC-GAN: %d %ss, %d classes, q=%.4g, %d discriminator steps, noise multiplier %s, delta %.3g",
            plan.n_units, plan.unit_word, n_classes, plan.sample_rate, plan.steps, plan.noise_multiplier, plan.delta,
        )
        trainer = self._trainer(task, plan, unit_ids, report_factory, run, key, run_id, group_sizes(data, plan.unit))
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.report_ = trainer.train(resume=self.resume)
        self.generator_ = task.sampler.eval()
        self.plan_ = plan
        self.class_frequencies_ = frequencies
        self.class_names_ = class_names
        return self

    def _notes(self, plan: TrainingPlan, data: ImageDataset, *, delta_is_default: bool) -> list[str]:
        """How this release differs from seed 001, and what its guarantee rests on."""
        notes = [
            "class head trained with cross-entropy on logits; seed 001's code passed softmax outputs to NLLLoss "
            "(probabilities where log-probabilities belong)",
            "the discriminator's class head is trained on generated images too, as in seed 001"
            if self.class_loss_on_generated
            else "the discriminator's class head learns from real images only (seed 001 also trained it on generated "
            "images; under DP-SGD that let the networks agree on swapped classes)",
        ]
        if self.discriminator_steps > 1:
            notes.append(
                f"{self.discriminator_steps} discriminator steps per generator step (a departure from seed 001, which took one; Bie et al. 2023): "
                f"{plan.steps} discriminator steps, {plan.steps // self.discriminator_steps} generator steps"
            )
        if self.generator_ema is not None:
            notes.append(
                f"samples come from an exponential moving average of the generator's weights (decay {self.generator_ema:g}; a departure "
                "from seed 001, which sampled the last generator; Bie et al. 2023): post-processing of the generator, no privacy cost"
            )
        if self.clip_generated:
            notes.append(
                "each generated row's discriminator gradient is clipped to the real units' bound and scaled by the same expected batch "
                "(a departure from seed 001, which averaged the generated rows unclipped): no noise, generated rows hold no private data"
            )
        if not plan.private:
            return notes + [
                "trained without differential privacy (epsilon = inf): a non-private reference, no guarantee",
                "samples follow the training set's exact class frequencies",
                "not booked in the budget ledger: it has no finite epsilon to book",
            ]
        notes += [
            "only the discriminator sees private data (real/fake + class loss per row, clipped per "
            f"{plan.unit_word}); generator steps and samples are post-processing",
            "every discriminator step draws a fresh Poisson batch and is one accountant step",
            "metrics.csv losses are computed on private batches without noise: they are for the operator, not for release",
        ]
        if self.class_frequencies is None:
            notes.append("samples draw classes uniformly: the training set's class frequencies are private and not released")
        else:
            notes.append("samples draw classes by the class frequencies the operator supplied as public knowledge")
        if delta_is_default:
            notes.append(f"delta = min(1e-5, 1/(10N)) with N = {plan.n_units} {plural(plan.unit_word, plan.n_units)} (privmed's default)")
        if plan.unit == PrivacyUnit.PATIENT.value and not data.subjects_known:
            notes.append("the data carries no patient ids: one patient per image is assumed")
        return notes

    def sample(self, n: int, seed: int | None = None, class_label: int | str | None = None) -> ImageDataset:
        """``n`` synthetic labelled images, of class ``class_label`` (index or name) or by ``class_frequencies_``."""
        self._check_fitted("generator_")
        if n < 1:
            raise PrivmedError(f"the number of samples must be positive, got {n}")
        rng = torch.Generator().manual_seed(self.seed if seed is None else seed)
        if class_label is None:
            labels = torch.multinomial(torch.from_numpy(self.class_frequencies_), n, replacement=True, generator=rng)
        else:
            labels = torch.full((n,), class_index(self.class_names_, class_label), dtype=torch.long)
        latent = torch.randn(n, self.generator_.latent_dim, generator=rng)
        images = generate_images(self.generator_, latent, one_hot(labels, self.generator_.n_classes))
        metadata = {"method": METHOD_NAME, "privacy": self.report_.summary_line() if self.report_ else None}
        return _images_dataset(images, labels, self.class_names_, "acgan-synthetic", metadata)

    def morph(self, from_class: int | str, to_class: int | str, steps: int = 8, n_latents: int = 4, seed: int | None = None) -> ImageDataset:
        """Images morphing from one class to another at fixed latents (seed 001, figure 2B).

        Row ``r`` holds ``steps`` images of latent ``r`` whose condition mixes the two one-hot vectors
        linearly, from all ``from_class`` to all ``to_class``. Labels are the nearer class.
        """
        self._check_fitted("generator_")
        if steps < 2 or n_latents < 1:
            raise PrivmedError(f"morph needs steps >= 2 and n_latents >= 1, got steps={steps}, n_latents={n_latents}")
        n_classes = self.generator_.n_classes
        start = one_hot(torch.tensor([class_index(self.class_names_, from_class)]), n_classes)
        end = one_hot(torch.tensor([class_index(self.class_names_, to_class)]), n_classes)
        weights = torch.linspace(0.0, 1.0, steps)[:, None]
        conditions = ((1 - weights) * start + weights * end).repeat(n_latents, 1)
        rng = torch.Generator().manual_seed(self.seed if seed is None else seed)
        latent = torch.randn(n_latents, self.generator_.latent_dim, generator=rng).repeat_interleave(steps, dim=0)
        images = generate_images(self.generator_, latent, conditions)
        return _images_dataset(images, conditions.argmax(dim=1), self.class_names_, "acgan-morph")

    @classmethod
    def load(cls, run_dir: str | Path) -> "ACGAN":
        """The trained AC-GAN of a finished run directory (generator, classes and privacy report)."""
        model, config, state = cls._finished_run(run_dir)
        data = config["data"]
        generator = ConditionalGenerator(
            data["n_classes"], data["image_channels"], data["image_size"], model.latent_dim, model.generator_channels
        )
        generator.load_state_dict(state["task"]["generator_ema" if model.generator_ema is not None else "generator"])
        model.generator_ = generator.eval()
        model.class_names_ = list(data["class_names"])
        model.class_frequencies_ = np.asarray(config["sampling_class_frequencies"], dtype=np.float64)
        return model



def load_discriminator(run_dir: str | Path) -> ACDiscriminator:
    """The trained discriminator of a finished AC-GAN run (evaluation mode), for model-score attacks."""
    model, config, state = ACGAN._finished_run(run_dir)
    data = config["data"]
    discriminator = ACDiscriminator(
        data["n_classes"], data["image_channels"], data["image_size"], model.discriminator_channels, norm=model.discriminator_norm
    )
    discriminator.load_state_dict(state["task"]["discriminator"])
    return discriminator.eval()


def score_members(model_dir: Path, data: ImageDataset, *, use_labels: bool = True) -> np.ndarray:
    """Membership scores of ``data`` by a trained AC-GAN's discriminator, higher = more likely a training image.

    The score is the real/fake logit (the discriminator was trained to call its training images
    real) plus, when ``data`` has class labels and ``use_labels`` is set, the class head's
    log-probability of each image's label (the class head learnt the training images' labels).
    This attack reads the discriminator, which a release of samples does not expose; DP-SGD
    covers it all the same, since the discriminator is what the private steps trained.
    """
    discriminator = load_discriminator(model_dir)
    expected = (discriminator.features[0].in_channels, discriminator.image_size, discriminator.image_size)
    if data.images.shape[1:] != expected:
        raise DataError(f"{data.name}: images of shape {data.images.shape[1:]}, but the AC-GAN in {model_dir} was trained on {expected}")
    labels = torch.from_numpy(data.labels.astype(np.int64)) if use_labels and data.labels is not None else None
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= discriminator.n_classes):
        raise DataError(f"{data.name}: class labels must lie in 0..{discriminator.n_classes - 1} for the AC-GAN in {model_dir}")
    images = torch.from_numpy(data.images)
    scores = []
    with torch.no_grad():
        for start in range(0, len(images), _SAMPLE_CHUNK):
            real_fake, class_logits = discriminator(images[start : start + _SAMPLE_CHUNK])
            if labels is not None:
                chunk = labels[start : start + _SAMPLE_CHUNK]
                real_fake = real_fake + F.log_softmax(class_logits, dim=1).gather(1, chunk[:, None]).squeeze(1)
            scores.append(real_fake)
    return torch.cat(scores).double().numpy() if scores else np.zeros(0)
