"""DP-WGAN: synthetic image + segmentation-label pairs under differential privacy (seed 000).

Kossen et al. (2022) train a Wasserstein GAN on TOF-MRA patches whose generator outputs an image
and its vessel label as two channels; only the critic sees private data, so only its gradient is
privatized (DP-SGD: per-unit clipping to norm 1 and Gaussian noise), and every generated pair is
post-processing of the private critic. Defaults follow the paper: RMSprop with learning rate 5e-5,
5 critic steps per generator step, expected batch of 32 units, weight clipping 0.01, latent 128.

Two things privmed does differently, on purpose (both stated in every privacy report):

- every critic step draws a fresh Poisson batch and is one accountant step; the paper's code reused
  one batch for five critic steps and stepped the accountant less often than the optimizer, which
  under-reports epsilon about four-fold;
- the default delta is min(1e-5, 1/(10N)) for N private units, not the paper's 1/N: delta = 1/N
  allows one unit's data to be released in the clear.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from privmed.data.dataset import ImageDataset
from privmed.data.grids import save_pair_grid
from privmed.data.patches import extract_patches
from privmed.errors import DataError, PrivmedError
from privmed.methods.generative import DPGenerativeMethod
from privmed.methods.trainer import EpochCallback, PrivateGradient, ProgressCallback, start_run
from privmed.models.wgan import Critic, Generator, split_sample
from privmed.privacy.distributed import ReplicaGroup
from privmed.privacy.group import group_privacy_report, group_sizes
from privmed.privacy.ledger import dataset_key
from privmed.privacy.plan import TrainingPlan, privacy_report
from privmed.privacy.report import PrivacyReport
from privmed.privacy.units import PrivacyUnit
from privmed.runs import RunDirectory

logger = logging.getLogger(__name__)

METHOD_NAME = "dpwgan"
_SAMPLE_CHUNK = 256
_PREVIEW_SAMPLES = 16
_PUBLIC_MIN_SIZE = 384


class _WGANTask:
    """The WGAN's private step for :class:`DPTrainer`: one critic step, and a generator step every ``n_critic``."""

    metric_names = ("critic_loss", "generator_loss", "wasserstein_estimate", "clipped_fraction")

    def __init__(
        self,
        generator: Generator,
        critic: Critic,
        pairs: torch.Tensor,
        unit_ids: np.ndarray,
        *,
        n_fake: int,
        n_critic: int,
        learning_rate: float,
        weight_clip: float,
        seed: int,
        image_channels: int,
    ) -> None:
        self.generator = generator
        self.private_module = critic
        self.pairs = pairs
        self.unit_ids = torch.from_numpy(np.asarray(unit_ids, dtype=np.int64))
        self.n_fake = n_fake
        self.n_critic = n_critic
        self.weight_clip = weight_clip
        self.image_channels = image_channels
        self.generator_optimizer = torch.optim.RMSprop(generator.parameters(), lr=learning_rate)
        self.critic_optimizer = torch.optim.RMSprop(critic.parameters(), lr=learning_rate)
        self.latents = torch.Generator().manual_seed(seed)
        self.preview_latent = torch.randn(_PREVIEW_SAMPLES, generator.latent_dim, generator=torch.Generator().manual_seed(seed + 1))

    def _latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.generator.latent_dim, generator=self.latents)

    def private_step(self, batch: np.ndarray, step: int, gradient: PrivateGradient) -> dict[str, float]:
        """One critic step on a Poisson batch of real pairs and ``n_fake`` generated ones (this rank's shares of both)."""
        critic = self.private_module
        index = torch.from_numpy(np.asarray(batch, dtype=np.int64))
        real = self.pairs[index]
        with torch.no_grad():
            fake = self.generator(gradient.group.shard(self._latent(self.n_fake)))
        gradient.group.average_buffers(self.generator)
        with gradient.capture():
            scores = critic(torch.cat([real, fake])).squeeze(1)
        real_scores, fake_scores = scores[: len(index)], scores[len(index) :]
        # Private rows: -D(x) per row, summed per unit, clipped, noised, divided by the expected batch.
        # Public rows: the mean of D(G(z)) over all n_fake rows of all ranks; generated samples depend on no private record.
        losses = torch.cat([-real_scores, fake_scores / self.n_fake])
        unit_ids = torch.cat([self.unit_ids[index], torch.full((len(fake),), -1, dtype=torch.long)])
        stats = gradient.backward(losses, unit_ids)
        self.critic_optimizer.step()
        with torch.no_grad():
            for parameter in critic.parameters():
                parameter.clamp_(-self.weight_clip, self.weight_clip)
        metrics: dict[str, float] = {}
        if len(index):
            wasserstein = float(real_scores.detach().mean() - fake_scores.detach().mean())
            metrics.update(critic_loss=-wasserstein, wasserstein_estimate=wasserstein)
        if stats is not None:
            metrics["clipped_fraction"] = stats.clipped_fraction
        if (step + 1) % self.n_critic == 0:
            metrics["generator_loss"] = self._generator_step(gradient.group)
        return metrics

    def _generator_step(self, group: ReplicaGroup) -> float:
        """-D(G(z)) through the critic as a plain module: no private data, no privacy cost.

        Each rank generates its share of the ``n_fake`` rows; the gradients are summed over ranks and
        the BatchNorm statistics averaged, so every rank's generator stays identical.
        """
        self.generator_optimizer.zero_grad(set_to_none=True)
        scores = self.private_module(self.generator(group.shard(self._latent(self.n_fake))))
        (-scores.sum() / self.n_fake).backward()
        group.sum_gradients(self.generator)
        group.average_buffers(self.generator)
        self.generator_optimizer.step()
        return float(-scores.detach().mean())

    def end_epoch(self, epoch: int, run: RunDirectory | None) -> None:
        """Write the epoch's sample grid (the same latent vectors every epoch)."""
        if run is None:
            return
        pairs = generate_pairs(self.generator, self.preview_latent)
        save_pair_grid(_pairs_dataset(pairs, self.image_channels, "preview"), run.samples_dir / f"epoch_{epoch:04d}.png", scale=2)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "critic": self.private_module.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "latent_rng": self.latents.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.private_module.load_state_dict(state["critic"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.latents.set_state(state["latent_rng"])


def _pretrain(task: _WGANTask, public: ImageDataset, steps: int, batch_size: int, seed: int) -> None:
    """The warm start: ``steps`` plain WGAN critic steps (and a generator step every ``n_critic``) on public pairs.

    No private record is read, so no noise and no accounting; the critic and generator (and their
    optimizers' state) then start the DP phase from here.
    """
    pairs = torch.from_numpy(np.concatenate([public.images, public.segmentations.astype(np.float32)], axis=1))
    rng = np.random.default_rng(seed + 29)
    critic, generator = task.private_module, task.generator
    with torch.random.fork_rng():
        torch.manual_seed(seed + 29)
        for step in range(steps):
            real = pairs[torch.from_numpy(rng.integers(0, len(pairs), batch_size))]
            with torch.no_grad():
                fake = generator(torch.randn(batch_size, generator.latent_dim))
            task.critic_optimizer.zero_grad(set_to_none=True)
            (critic(fake).mean() - critic(real).mean()).backward()
            task.critic_optimizer.step()
            with torch.no_grad():
                for parameter in critic.parameters():
                    parameter.clamp_(-task.weight_clip, task.weight_clip)
            if (step + 1) % task.n_critic == 0:
                task.generator_optimizer.zero_grad(set_to_none=True)
                (-critic(generator(torch.randn(batch_size, generator.latent_dim))).mean()).backward()
                task.generator_optimizer.step()
    task.critic_optimizer.zero_grad(set_to_none=True)
    task.generator_optimizer.zero_grad(set_to_none=True)


def generate_pairs(generator: Generator, latent: torch.Tensor) -> torch.Tensor:
    """Generator outputs for ``latent`` in evaluation mode, in chunks (the generator's mode is restored)."""
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            return torch.cat([generator(chunk) for chunk in latent.split(_SAMPLE_CHUNK)])
    finally:
        generator.train(was_training)


def _pairs_dataset(pairs: torch.Tensor, image_channels: int, name: str, metadata: dict[str, Any] | None = None) -> ImageDataset:
    """Generated (N, C+1, H, W) tensors -> an ImageDataset of images and binary labels."""
    images, labels = split_sample(pairs, label_channels=pairs.shape[1] - image_channels)
    ids = np.array([f"synthetic-{i:06d}" for i in range(len(pairs))])
    return ImageDataset(
        images=images.clamp(0.0, 1.0).numpy().astype(np.float32),
        segmentations=labels.numpy(),
        subjects=ids,
        sources=ids,
        name=name,
        record_kind="patch",
        subjects_known=False,
        metadata=metadata or {},
    )


SEED_PATCHES_PER_SUBJECT = 1000  # seed 000's patches per patient


class DPWGAN(DPGenerativeMethod):
    """A Wasserstein GAN of image + label pairs whose critic is trained with DP-SGD (Kossen et al. 2022).

    ``epsilon`` is the target (``inf`` trains without privacy, as a reference); ``delta`` defaults
    to min(1e-5, 1/(10N)) for N private units. ``unit`` is what epsilon protects: ``patch`` (one training
    record), ``image`` (all patches of a source image) or ``patient``. Whole images are cut into
    ``patches_per_subject`` patches of ``patch_size`` first (default: seed 000's 1000, a public
    parameter; a subject with fewer distinct patches has them drawn with replacement). The run lasts ``epochs`` epochs of
    ``1/q`` critic steps (q = batch_size / N) or ``max_steps`` critic steps when given; the noise is
    calibrated so that exactly these steps spend ``epsilon``. With ``run_dir`` the run writes
    config.json, metrics.csv, checkpoints, sample grids and privacy.json there (every epoch, or
    every ``checkpoint_every`` critic steps) and can be resumed. The DP noise and the Poisson
    batches are secret (never stored); ``seed`` sets networks, patches, latents and samples, and
    ``reproducible=True`` derives the noise and batches from it too (a research run, flagged as such).
    Under ``torchrun`` (after :func:`privmed.privacy.distributed.init_from_env`) ``fit`` trains
    data-parallel: same guarantee and accounting as one process with the same global batch.

    Learned: ``generator_``, ``report_``, ``plan_``.
    """

    method_name = METHOD_NAME
    method_label = "DP-WGAN"
    _HYPERPARAMETERS = (
        "epsilon", "delta", "unit", "patch_size", "patches_per_subject", "epochs", "max_steps", "batch_size", "n_critic",
        "learning_rate", "weight_clip", "max_grad_norm", "latent_dim", "generator_channels", "critic_channels",
        "critic_norm", "records_per_unit", "accountant", "seed", "checkpoint_every", "reproducible", "public_steps",
    )

    def __init__(
        self,
        epsilon: float = 8.0,
        *,
        delta: float | None = None,
        unit: PrivacyUnit | str = "patch",
        patch_size: int = 64,
        patches_per_subject: int = SEED_PATCHES_PER_SUBJECT,
        epochs: int | None = 50,
        max_steps: int | None = None,
        batch_size: int = 32,
        n_critic: int = 5,
        learning_rate: float = 5e-5,
        weight_clip: float = 0.01,
        max_grad_norm: float = 1.0,
        latent_dim: int = 128,
        generator_channels: int = 64,
        critic_channels: int = 64,
        critic_norm: str = "group",
        records_per_unit: int | None = 8,
        accountant: str = "rdp",
        seed: int = 0,
        checkpoint_every: int | None = None,
        reproducible: bool = False,
        public_steps: int = 0,
        run_dir: str | Path | None = None,
        resume: bool = False,
        data_ref: str | None = None,
        on_progress: ProgressCallback | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.public_steps = public_steps
        self.epsilon = epsilon
        self.delta = delta
        self.unit = unit
        self.patch_size = patch_size
        self.patches_per_subject = patches_per_subject
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.n_critic = n_critic
        self.learning_rate = learning_rate
        self.weight_clip = weight_clip
        self.max_grad_norm = max_grad_norm
        self.latent_dim = latent_dim
        self.generator_channels = generator_channels
        self.critic_channels = critic_channels
        self.critic_norm = critic_norm
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
        self.generator_: Generator | None = None
        self.report_: PrivacyReport | None = None

    def training_pairs(self, data: ImageDataset) -> ImageDataset:
        """The records the critic sees: ``data`` if it already holds patches, else its patches."""
        if data.segmentations is None:
            raise DataError(f"{data.name}: DP-WGAN learns image + label pairs, but the data has no segmentation labels")
        if len(data.spatial_shape) != 2:
            raise DataError(f"{data.name}: DP-WGAN trains on 2D images, got spatial shape {data.spatial_shape}")
        if data.record_kind == "patch" or data.spatial_shape == (self.patch_size, self.patch_size):
            return data
        # A fixed, public count: a subject with fewer distinct centres is sampled with replacement, so no
        # subject's images change what is cut from any other (the count was once min(1000, smallest subject's supply)).
        logger.info("cutting %d patches of %d px per subject", self.patches_per_subject, self.patch_size)
        return extract_patches(data, self.patch_size, self.patches_per_subject, seed=self.seed, with_replacement=True)

    def public_pairs(self, public_data: ImageDataset | None, private: ImageDataset, channels: int) -> ImageDataset:
        """The warm start's public patches: ``public_data``, else 200 images of the public vessel simulator
        at the private images' size (treated as public; at least 384 px, below which the simulator draws
        few vessels) cut into patches; gray images are repeated to ``channels``."""
        if public_data is None:
            from privmed.data.vessel_sim import simulate_vessels

            shape = private.spatial_shape
            size = shape if private.record_kind != "patch" and min(shape) >= _PUBLIC_MIN_SIZE else _PUBLIC_MIN_SIZE
            public_data = simulate_vessels(200, size, seed=self.seed + 17)
        pairs = self.training_pairs(public_data)
        if pairs.n_channels != channels:
            if pairs.n_channels != 1:
                raise DataError(f"{public_data.name}: public images have {pairs.n_channels} channels, the private ones {channels}")
            pairs = replace(pairs, images=np.repeat(pairs.images, channels, axis=1))
        return pairs

    def fit(self, data: ImageDataset, *, public_data: ImageDataset | None = None, public_ref: str | None = None) -> Self:
        """Train on ``data`` (image + label pairs); with ``resume`` set, continue the run in ``run_dir``.

        The run configuration's ``data_ref`` (how the data was loaded, e.g. ``phantom:train``) is stored in
        config.json so the CLI can resume without being told again. With ``public_steps`` > 0, generator and critic
        are first trained without privacy on ``public_data`` (default: the public vessel simulator) for
        that many critic steps: a warm start that costs no privacy, so only the private phase is
        accounted and booked.
        """
        pairs_data = self.training_pairs(data)
        height, width = pairs_data.spatial_shape
        if height != width:
            raise DataError(f"{data.name}: DP-WGAN needs square patches, got {height}x{width}")
        unit_ids, plan = self._plan(pairs_data)
        key = dataset_key(data)
        run = RunDirectory(self.run_dir) if self.run_dir is not None else None
        run_id = start_run(
            run, self.resume, method=METHOD_NAME, params=self.get_params(), data_key=key, plan=plan,
            data_info={
                "ref": self.data_ref, "name": data.name, "records": len(pairs_data), "record_kind": pairs_data.record_kind,
                "image_channels": pairs_data.n_channels, "image_size": pairs_data.spatial_shape[0],
                **({"public_ref": public_ref or "vessel-sim (default)"} if self.public_steps else {}),
            },
        )
        image_channels = pairs_data.n_channels
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            generator = Generator(self.latent_dim, image_channels + 1, height, self.generator_channels)
            critic = Critic(image_channels + 1, height, self.critic_channels, norm=self.critic_norm)
        pairs = torch.from_numpy(np.concatenate([pairs_data.images, pairs_data.segmentations.astype(np.float32)], axis=1))
        task = _WGANTask(
            generator, critic, pairs, unit_ids, n_fake=self.batch_size, n_critic=self.n_critic,
            learning_rate=self.learning_rate, weight_clip=self.weight_clip, seed=self.seed, image_channels=image_channels,
        )
        notes = self._notes(plan, pairs_data, delta_is_default=self.delta is None)
        if self.public_steps:
            public = self.public_pairs(public_data, data, image_channels)
            notes.append(
                f"warm start (a departure from seed 000): generator and critic first trained without privacy for {self.public_steps} "
                f"critic steps on public data ({public_ref or 'the privmed vessel simulator at its public defaults'}, "
                f"{len(public)} patches): public, not covered by epsilon; only the private phase is accounted"
            )
            if not self.resume:
                _pretrain(task, public, self.public_steps, self.batch_size, self.seed)
        group = self._group_privacy(plan, pairs_data)

        def report_factory(steps: int, epsilon: float) -> PrivacyReport:
            return privacy_report(plan, steps, epsilon, seed=self.seed, dataset=data.name, notes=notes, group_privacy=group(epsilon))

        logger.info(
            "DP-WGAN: %d %ss, q=%.4g, %d critic steps, noise multiplier %s, delta %.3g",
            plan.n_units, plan.unit_word, plan.sample_rate, plan.steps, plan.noise_multiplier, plan.delta,
        )
        trainer = self._trainer(task, plan, unit_ids, report_factory, run, key, run_id, group_sizes(pairs_data, plan.unit))
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            np_state = np.random.get_state()
            np.random.seed(self.seed)
            try:
                self.report_ = trainer.train(resume=self.resume)
            finally:
                np.random.set_state(np_state)
        self.generator_ = generator.eval()
        self.plan_ = plan
        self.image_channels_ = image_channels
        return self

    def _notes(self, plan: TrainingPlan, data: ImageDataset, *, delta_is_default: bool) -> list[str]:
        """How this release differs from seed 000, and what its guarantee rests on."""
        if not plan.private:
            return [
                "trained without differential privacy (epsilon = inf): a non-private reference, no guarantee",
                "not booked in the budget ledger: it has no finite epsilon to book",
            ]
        notes = [
            "every critic step draws a fresh Poisson batch and is one accountant step; seed 000's code reused one "
            "batch for five critic steps and stepped the optimizer twice per accounted step, under-reporting epsilon about 4x",
            "only the critic sees private data; generator steps and generated samples are post-processing",
            "metrics.csv losses are computed on private batches without noise: they are for the operator, not for release",
        ]
        if delta_is_default:
            notes.append(
                f"delta = min(1e-5, 1/(10N)) with N = {plan.n_units} {plan.unit_word} units; seed 000 used 1/N, but delta must be < 1/N "
                "(delta = 1/N allows one unit's data to be released in the clear)"
            )
        if "patches_per_subject" in data.metadata:
            notes.append(
                f"{data.metadata['patches_per_subject']} patches cut per subject (a fixed, public parameter); a subject with fewer "
                "distinct patch centres has them drawn with replacement, so no subject's images change another's patches"
            )
        if plan.unit != PrivacyUnit.RECORD.value and self.records_per_unit is not None:
            notes.append(f"a sampled {plan.unit_word} contributes at most {self.records_per_unit} of its patches per step")
        if plan.unit == PrivacyUnit.PATIENT.value and not data.subjects_known:
            notes.append("the data carries no patient ids: one patient per image is assumed")
        return notes

    @staticmethod
    def _group_privacy(plan: TrainingPlan, data: ImageDataset) -> Callable[[float], dict[str, Any] | None]:
        """For a record-level run: a function of epsilon giving what a patient with all their records gets."""
        if plan.unit != PrivacyUnit.RECORD.value or not plan.private:
            return lambda epsilon: None
        # Patches cut here: the public count per subject. Data given as patches: its largest count (read off the data).
        _, counts = np.unique(data.subjects, return_counts=True)
        records = int(data.metadata.get("patches_per_subject") or counts.max())
        return lambda epsilon: group_privacy_report(epsilon, plan.delta, records, unit="patient", record=plan.unit_word)

    def sample(self, n: int, seed: int | None = None) -> ImageDataset:
        """``n`` synthetic image + binary label pairs (the label channel thresholded at 0.5)."""
        self._check_fitted("generator_")
        if n < 1:
            raise PrivmedError(f"the number of samples must be positive, got {n}")
        rng = torch.Generator().manual_seed(self.seed if seed is None else seed)
        latent = torch.randn(n, self.generator_.latent_dim, generator=rng)
        metadata = {"method": METHOD_NAME, "privacy": self.report_.summary_line() if self.report_ else None}
        return _pairs_dataset(generate_pairs(self.generator_, latent), self.image_channels_, "dpwgan-synthetic", metadata)

    @classmethod
    def load(cls, run_dir: str | Path) -> "DPWGAN":
        """The trained DP-WGAN of a finished run directory (generator and privacy report)."""
        model, config, state = cls._finished_run(run_dir)
        data = config["data"]
        generator = Generator(model.latent_dim, data["image_channels"] + 1, data["image_size"], model.generator_channels)
        generator.load_state_dict(state["task"]["generator"])
        model.generator_ = generator.eval()
        model.image_channels_ = int(data["image_channels"])
        return model
