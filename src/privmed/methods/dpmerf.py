"""A mean-embedding release (DP-MERF family, Harder et al. 2021): one noisy summary, then a free generator.

The private data is touched once. Each unit u (an image, or all images of a patient) becomes

    v(u) = mean over u's records of  onehot(y) (x) [alpha * phi(x), beta],   alpha^2 + beta^2 = 1,

where phi is a fixed random feature map with ||phi(x)|| <= 1 (:class:`privmed.models.dpmerf.FeatureMap`),
so ||v(u)|| <= 1. The release is S = sum_u v(u) + N(0, sigma^2 I): per class, the noisy sum of alpha*phi
and the noisy count (times beta), in one Gaussian mechanism. Its L2 sensitivity is

- add/remove one unit: 1 (the norm of v(u)); this is privmed's default, as for DP-SGD;
- replace one unit: max(2 alpha, sqrt(2)) (same class: ||alpha(phi - phi')|| <= 2 alpha; another class:
  the two vectors are orthogonal, sqrt(1 + 1)).

sigma is calibrated exactly for (epsilon, delta) by :func:`privmed.privacy.gaussian.gaussian_sigma`
(analytic Gaussian). Class means (noisy sum / noisy count) and class frequencies are post-processing.
A conditional generator is then trained to match the released class means of phi, seeing only the
released tensor, so it costs no privacy; ``epsilon=inf`` releases the exact sums (a non-private reference).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, NotFittedError, PrivacyError, PrivmedError
from privmed.methods.base import GenerativeMethod, class_index
from privmed.models.dpmerf import FEATURE_PARTS, ConditionalGenerator, FeatureMap
from privmed.privacy.calibration import check_delta, default_delta
from privmed.privacy.gaussian import (
    GAUSSIAN_ACCOUNTANT,
    GAUSSIAN_MECHANISM,
    NEIGHBOURING_RELATIONS,
    GaussianMechanism,
    gaussian_epsilon,
    gaussian_sigma,
)
from privmed.privacy.group import group_sizes
from privmed.privacy.ledger import BudgetLedger, dataset_key
from privmed.privacy.report import PrivacyReport
from privmed.privacy.units import PrivacyUnit
from privmed.runs import RunDirectory, run_config

logger = logging.getLogger(__name__)

METHOD_NAME = "dpmerf"
NON_PRIVATE_MECHANISM = "none (non-private reference: no privacy guarantee)"
RELEASE_FILE = "release.pt"
GENERATOR_FILE = "generator.pt"
_SAMPLE_CHUNK = 512


@dataclass
class ReleasedEmbedding:
    """What the Gaussian mechanism released: per-class noisy sums of alpha*phi (K, D) and of beta (K,).

    Everything downstream (class means, class frequencies, the generator) is computed from this alone.
    """

    sums: torch.Tensor
    count_sums: torch.Tensor
    alpha: float
    beta: float

    @property
    def counts(self) -> torch.Tensor:
        """Noisy units per class, floored at 1 (post-processing)."""
        return (self.count_sums / self.beta).clamp_min(1.0)

    @property
    def means(self) -> torch.Tensor:
        """Noisy class means of phi (K, D)."""
        return self.sums / self.alpha / self.counts[:, None]

    @property
    def class_frequencies(self) -> np.ndarray:
        counts = self.counts.numpy()
        return counts / counts.sum()

    def to_dict(self) -> dict[str, Any]:
        return {"sums": self.sums, "count_sums": self.count_sums, "alpha": self.alpha, "beta": self.beta}


def release_sensitivity(neighbouring: str, alpha: float) -> float:
    """The L2 sensitivity of the per-class sum under ``neighbouring`` (see the module docstring)."""
    if neighbouring == "add-remove":
        return 1.0
    if neighbouring == "replace-one":
        return max(2.0 * alpha, math.sqrt(2.0))
    raise PrivacyError(f"neighbouring relation must be one of {NEIGHBOURING_RELATIONS}, got {neighbouring!r}")


class DPMERF(GenerativeMethod):
    """Class-conditional images from one DP release of per-class mean embeddings.

    ``epsilon`` (``inf``: no noise, a reference) and ``delta`` (default min(1e-5, 1/(10 N))) protect one
    ``unit`` ("image" or "patient") under ``neighbouring`` ("add-remove" or "replace-one"). ``features``
    weights the parts of the feature map (:data:`privmed.models.dpmerf.FEATURE_PARTS`); ``count_weight``
    is beta, the share of each unit's unit norm spent on its class count. The generator trains
    ``steps`` Adam steps of ``batch_per_class`` images per class. ``run_dir`` receives config.json,
    privacy.json, release.pt (the released tensor), generator.pt and a sample grid; the release is
    booked in the budget ledger. Learned: ``release_``, ``generator_``, ``report_``.
    """

    method_name = METHOD_NAME
    method_label = "DP-MERF"
    _HYPERPARAMETERS = (
        "epsilon", "delta", "unit", "neighbouring", "features", "rff_features", "rff_bandwidth", "conv_features",
        "conv_bandwidth", "count_weight", "latent_dim", "generator_width", "steps", "batch_per_class", "learning_rate",
        "seed", "reproducible",
    )

    def __init__(
        self,
        epsilon: float = 1.0,
        *,
        delta: float | None = None,
        unit: PrivacyUnit | str = "image",
        neighbouring: str = "add-remove",
        features: dict[str, float] | None = None,
        rff_features: int = 2000,
        rff_bandwidth: float = 0.2,
        conv_features: int = 2000,
        conv_bandwidth: float = 0.05,
        count_weight: float = 0.3,
        latent_dim: int = 32,
        generator_width: int = 32,
        steps: int = 300,
        batch_per_class: int = 64,
        learning_rate: float = 2e-3,
        seed: int = 0,
        reproducible: bool = False,
        run_dir: str | Path | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.unit = unit
        self.neighbouring = neighbouring
        self.features = dict(features) if features is not None else {"pixels": 1.0, "rff": 1.0, "conv": 1.0}
        self.rff_features = rff_features
        self.rff_bandwidth = rff_bandwidth
        self.conv_features = conv_features
        self.conv_bandwidth = conv_bandwidth
        self.count_weight = count_weight
        self.latent_dim = latent_dim
        self.generator_width = generator_width
        self.steps = steps
        self.batch_per_class = batch_per_class
        self.learning_rate = learning_rate
        self.seed = seed
        self.reproducible = reproducible
        self.run_dir = run_dir
        self.release_: ReleasedEmbedding | None = None
        self.generator_: ConditionalGenerator | None = None
        self.report_: PrivacyReport | None = None

    # -- configuration ------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready values (what config.json stores)."""
        params = {name: getattr(self, name) for name in self._HYPERPARAMETERS}
        params["unit"] = PrivacyUnit.parse(self.unit).value
        params["epsilon"] = "inf" if math.isinf(float(self.epsilon)) else float(self.epsilon)
        return params

    def _check_options(self) -> tuple[float, float, float]:
        """(epsilon, alpha, beta) after checking every option that does not need the data."""
        epsilon = float(self.epsilon)
        if math.isnan(epsilon) or epsilon <= 0:
            raise PrivacyError(f"epsilon must be > 0 (or inf for a non-private reference), got {self.epsilon}")
        if self.neighbouring not in NEIGHBOURING_RELATIONS:
            raise PrivacyError(f"neighbouring relation must be one of {NEIGHBOURING_RELATIONS}, got {self.neighbouring!r}")
        if not 0 < self.count_weight < 1:
            raise PrivmedError(f"count_weight (beta) must be in (0, 1), got {self.count_weight}")
        if self.steps < 1 or self.batch_per_class < 1:
            raise PrivmedError(f"steps and batch_per_class must be >= 1, got {self.steps} and {self.batch_per_class}")
        unknown = sorted(set(self.features) - set(FEATURE_PARTS))
        if unknown:
            raise PrivmedError(f"unknown feature parts {unknown}: use {', '.join(FEATURE_PARTS)}")
        beta = float(self.count_weight)
        return epsilon, math.sqrt(1.0 - beta * beta), beta

    def _feature_map(self, channels: int, size: int) -> FeatureMap:
        return FeatureMap(
            channels, size, self.features, rff_features=self.rff_features, rff_bandwidth=self.rff_bandwidth,
            conv_features=self.conv_features, conv_bandwidth=self.conv_bandwidth, seed=self.seed,
        )

    @staticmethod
    def _check_data(data: ImageDataset) -> tuple[int, ...]:
        if data.labels is None:
            raise DataError(f"{data.name}: DP-MERF is class-conditional and the data has no class labels")
        if len(data.spatial_shape) != 2 or data.spatial_shape[0] != data.spatial_shape[1]:
            raise DataError(f"{data.name}: DP-MERF takes square 2D images, got spatial shape {data.spatial_shape}")
        n_classes = max(len(data.class_names or ()), int(data.labels.max()) + 1 if len(data) else 0)
        counts = np.bincount(data.labels, minlength=n_classes)
        if n_classes < 2:
            raise DataError(f"{data.name}: DP-MERF needs at least two classes, the data has {n_classes}")
        empty = [str(c) for c in np.flatnonzero(counts == 0)]
        if empty:
            raise DataError(f"{data.name}: class(es) {', '.join(empty)} have no images; drop them or add data")
        return tuple(data.class_names) if data.class_names else tuple(str(c) for c in range(n_classes))

    # -- the private part ---------------------------------------------------------------------------
    def class_sums(self, data: ImageDataset, feature_map: FeatureMap, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_u v(u) without noise: (K, D) sums of alpha*phi and (K,) sums of beta, per class.

        A unit's v(u) is the mean of its records' onehot(y) (x) [alpha phi(x), beta], so each record
        enters with weight 1/(records of its unit) and every unit's total has norm <= 1.
        """
        ids = data.unit_ids(PrivacyUnit.parse(self.unit))
        _, inverse, records = np.unique(ids, return_inverse=True, return_counts=True)
        weights = torch.from_numpy(1.0 / records[inverse])
        n_classes = len(self.class_names_)
        sums = torch.zeros(n_classes, feature_map.dim, dtype=torch.float64)
        count_sums = torch.zeros(n_classes, dtype=torch.float64)
        images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
        with torch.no_grad():
            for start in range(0, len(data), _SAMPLE_CHUNK):
                part = slice(start, start + _SAMPLE_CHUNK)
                phi = feature_map(images[part]).double() * weights[part, None]
                sums.index_add_(0, labels[part], alpha * phi)
                count_sums.index_add_(0, labels[part], beta * weights[part])
        return sums, count_sums

    def release(self, data: ImageDataset, *, data_ref: str | None = None) -> ReleasedEmbedding:
        """The one private step: book the ledger, release the noisy per-class sums, write the run's release."""
        epsilon, alpha, beta = self._check_options()
        self.class_names_ = self._check_data(data)
        unit = PrivacyUnit.parse(self.unit)
        n_units = data.n_units(unit)
        delta = default_delta(n_units) if self.delta is None else check_delta(self.delta, n_units, unit.value)
        private = not math.isinf(epsilon)
        sensitivity = release_sensitivity(self.neighbouring, alpha)
        sigma = gaussian_sigma(sensitivity, epsilon, delta) if private else 0.0
        self.image_channels_, self.image_size_ = data.n_channels, data.spatial_shape[0]
        feature_map = self._feature_map(self.image_channels_, self.image_size_)
        run = RunDirectory(self.run_dir) if self.run_dir is not None else None
        key = dataset_key(data)
        config = run_config(METHOD_NAME, self.get_params(), {
            "ref": data_ref, "name": data.name, "image_channels": self.image_channels_, "image_size": self.image_size_,
            "n_classes": len(self.class_names_), "class_names": list(self.class_names_),
        })
        release_id = str(config["run_id"])
        if run is not None:
            run.create(config)
        ledger = BudgetLedger() if private else None
        if ledger is not None:
            ledger.reserve(key, release_id, epsilon, delta, unit, f"{self.method_label} {run.path if run else 'in memory'}",
                           n_units=n_units, group_sizes=group_sizes(data, unit))
        sums, count_sums = self.class_sums(data, feature_map, alpha, beta)
        if private:
            mechanism = GaussianMechanism(sensitivity, epsilon, delta, seed=self.seed if self.reproducible else None)
            noisy = mechanism.add_noise(torch.cat([sums, count_sums[:, None]], dim=1))
            sums, count_sums = noisy[:, :-1], noisy[:, -1]
            spent = gaussian_epsilon(mechanism.sigma, sensitivity, delta)
        else:
            spent = math.inf
        self.release_ = ReleasedEmbedding(sums.float(), count_sums.float(), alpha, beta)
        self.report_ = self._report(n_units, unit.describe(data.record_kind), spent, delta, sigma, sensitivity, data.name, feature_map.dim)
        if run is not None:
            torch.save({"release": self.release_.to_dict(), "class_names": list(self.class_names_)}, run.path / RELEASE_FILE)
            self.report_.to_json(run.privacy_path)
        if ledger is not None:
            ledger.settle(release_id, spent)
        return self.release_

    def _report(self, n_units: int, unit_word: str, epsilon: float, delta: float, sigma: float, sensitivity: float, dataset: str, dim: int) -> PrivacyReport:
        """The release's guarantee; ``dataset`` is the data's name only (no content hash)."""
        alpha, beta = self.release_.alpha, self.release_.beta
        notes = [
            f"neighbouring relation: {self.neighbouring} of one {unit_word}; L2 sensitivity {sensitivity:.4g} of the released "
            f"per-class sums (each {unit_word} contributes onehot(class) x [alpha phi(x), beta] of norm <= 1, alpha={alpha:.4g}, beta={beta:.4g})",
            f"one Gaussian release of {len(self.class_names_)} x {dim + 1} values with noise std {sigma:.6g}, calibrated exactly "
            "(analytic Gaussian, Balle & Wang 2018); class counts come from the same release (the beta coordinate)",
            "the feature map is fixed and random (drawn from the seed), trained on no data; the generator sees only the released tensor: "
            "its training, and every sample, is post-processing",
            "the number of units N (and the default delta = min(1e-5, 1/(10N)) derived from it) is treated as public",
        ]
        if PrivacyUnit.parse(self.unit) is not PrivacyUnit.RECORD:
            notes.append(f"a {unit_word} with several images contributes the mean of their embeddings")
        if math.isinf(epsilon):
            notes = ["released without noise (epsilon = inf): a non-private reference, no guarantee", *notes[2:]]
        if not math.isinf(epsilon):
            notes.append(
                "REPRODUCIBLE RELEASE: the Gaussian noise follows from the seed; no guarantee against anyone who knows the seed"
                if self.reproducible else
                "Gaussian noise drawn from a secret cryptographically secure source (AES-256-CTR keyed by os.urandom), never stored"
            )
        return PrivacyReport(
            mechanism=GAUSSIAN_MECHANISM if not math.isinf(epsilon) else NON_PRIVATE_MECHANISM,
            accountant=GAUSSIAN_ACCOUNTANT if not math.isinf(epsilon) else "none",
            unit=unit_word, n_units=n_units, epsilon=epsilon, delta=delta,
            noise_multiplier=sigma / sensitivity if sigma else None, sensitivity=sensitivity, steps=1,
            seed=self.seed, reproducible=self.reproducible and not math.isinf(epsilon), notes=notes, dataset=dataset,
        )

    # -- post-processing ----------------------------------------------------------------------------
    def train_generator(self) -> ConditionalGenerator:
        """Fit the generator to ``release_`` alone: its class means of phi, weighted by the released frequencies."""
        if self.release_ is None:
            raise NotFittedError("DP-MERF has released nothing yet: call fit(data) or release(data) first")
        self._check_options()
        target = self.release_.means.float()
        weights = torch.from_numpy(self.release_.class_frequencies).float()
        n_classes = target.shape[0]
        feature_map = self._feature_map(self.image_channels_, self.image_size_)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            generator = ConditionalGenerator(n_classes, self.image_channels_, self.image_size_, self.latent_dim, self.generator_width)
        optimizer = torch.optim.Adam(generator.parameters(), lr=self.learning_rate, betas=(0.5, 0.999))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
        rng = torch.Generator().manual_seed(self.seed)
        labels = torch.arange(n_classes).repeat_interleave(self.batch_per_class)
        generator.train()
        start = time.perf_counter()
        for step in range(self.steps):
            latent = torch.randn(len(labels), self.latent_dim, generator=rng)
            phi = feature_map(generator(latent, labels)).view(n_classes, self.batch_per_class, -1).mean(dim=1)
            loss = (weights * ((phi - target) ** 2).sum(dim=1)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 200 == 0 or step == self.steps - 1:
                logger.info("DP-MERF generator step %d/%d: loss %.5f (%.0f s)", step + 1, self.steps, float(loss.detach()), time.perf_counter() - start)
        self.final_loss_ = float(loss.detach())
        self.generator_ = generator.eval()
        return self.generator_

    def fit(self, data: ImageDataset, *, data_ref: str | None = None) -> Self:
        """Release the noisy embeddings of ``data`` once, then train the generator on them (no further privacy cost)."""
        self.release(data, data_ref=data_ref)
        self.train_generator()
        self.save()
        return self

    def sample(self, n: int, seed: int | None = None, class_label: int | str | None = None) -> ImageDataset:
        """``n`` labelled images: classes drawn by the released frequencies, or all of ``class_label`` (index or name)."""
        self._check_fitted("generator_", "release_")
        if n < 1:
            raise PrivmedError(f"the number of samples must be positive, got {n}")
        rng = torch.Generator().manual_seed(self.seed if seed is None else seed)
        if class_label is None:
            labels = torch.multinomial(torch.from_numpy(self.release_.class_frequencies), n, replacement=True, generator=rng)
        else:
            labels = torch.full((n,), class_index(self.class_names_, class_label), dtype=torch.long)
        latent = torch.randn(n, self.generator_.latent_dim, generator=rng)
        with torch.no_grad():
            images = torch.cat([self.generator_(z, y) for z, y in zip(latent.split(_SAMPLE_CHUNK), labels.split(_SAMPLE_CHUNK))])
        ids = np.array([f"synthetic-{i:06d}" for i in range(n)])
        return ImageDataset(
            images=images.clamp(0.0, 1.0).numpy().astype(np.float32), labels=labels.numpy().astype(np.int64),
            class_names=self.class_names_, subjects=ids, sources=ids, name="dpmerf-synthetic", record_kind="image",
            subjects_known=False, metadata={"method": METHOD_NAME, "privacy": self.report_.summary_line() if self.report_ else None},
        )

    def privacy_report(self) -> PrivacyReport:
        """The guarantee of the release (and so of the generator and every sample)."""
        if self.report_ is None:
            raise NotFittedError("DP-MERF has released nothing yet: call fit(data) first")
        return self.report_

    # -- run directory ------------------------------------------------------------------------------
    def save(self) -> None:
        """Write generator.pt and a preview grid into ``run_dir`` (the release was written when made)."""
        if self.run_dir is None:
            return
        self._check_fitted("generator_")
        run = RunDirectory(self.run_dir)
        torch.save({"generator": self.generator_.state_dict(), "final_loss": self.final_loss_}, run.path / GENERATOR_FILE)
        from privmed.data.grids import save_pair_grid

        per_class = 8
        preview = [self.sample(per_class, seed=self.seed, class_label=c) for c in range(len(self.class_names_))]
        grid = ImageDataset(
            images=np.concatenate([p.images for p in preview]), labels=np.concatenate([p.labels for p in preview]),
            subjects=np.arange(per_class * len(preview)), sources=np.arange(per_class * len(preview)), name="preview",
        )
        save_pair_grid(grid, run.samples_dir / "samples.png", n=len(grid), columns=per_class, scale=2)

    @classmethod
    def load(cls, run_dir: str | Path) -> "DPMERF":
        """The fitted DP-MERF of a finished run directory (release, generator, privacy report)."""
        run = RunDirectory(run_dir)
        config = run.read_config()
        if config.get("method") != METHOD_NAME:
            raise PrivmedError(f"{run.path} holds a {config.get('method')!r} run, not a DP-MERF one")
        generator_path = run.path / GENERATOR_FILE
        if not generator_path.exists() or not run.privacy_path.exists():
            raise PrivmedError(f"{run.path}: the run did not finish (no generator.pt or privacy.json)")
        params = dict(config["params"])
        params["epsilon"] = float(params["epsilon"])
        model = cls(**params, run_dir=run_dir)
        released = torch.load(run.path / RELEASE_FILE, map_location="cpu", weights_only=False)
        model.release_ = ReleasedEmbedding(**released["release"])
        model.class_names_ = tuple(released["class_names"])
        data = config["data"]
        model.image_channels_, model.image_size_ = int(data["image_channels"]), int(data["image_size"])
        generator = ConditionalGenerator(len(model.class_names_), model.image_channels_, model.image_size_, model.latent_dim, model.generator_width)
        state = torch.load(generator_path, map_location="cpu", weights_only=False)
        generator.load_state_dict(state["generator"])
        model.generator_ = generator.eval()
        model.final_loss_ = float(state["final_loss"])
        model.report_ = PrivacyReport.from_json(run.privacy_path)
        return model
