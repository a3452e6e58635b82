"""A public vessel simulator fitted to private data through one Gaussian release of a few statistics.

With 20 private images (DRIVE, one per patient) no DP generator learns anatomy: the noise that
protects one image swamps the signal of all of them. The anatomy is public knowledge, so the prior
does that work (:mod:`privmed.data.vessel_sim`), and privacy is spent only on what the prior does not
know about this data set: how wide and dense its vessels are, their contrast, the brightness,
illumination, noise and blur of its camera. The method:

1. computes one statistics vector per privacy unit (image or patient: its images' vectors averaged),
   :func:`vessel_statistics`, and clips it to L2 norm ``clip``;
2. releases the mean over the N units ONCE with the Gaussian mechanism, calibrated exactly by
   :func:`privmed.privacy.gaussian.gaussian_sigma`. Neighbouring data sets replace one unit's images
   by another's (N is public), so the L2 sensitivity of the mean is 2 * clip / N;
3. chooses simulator parameters whose simulated statistics match the released ones (a maximum a
   posteriori fit: the mismatch weighted by the noise variance plus a pull towards the public defaults,
   minimised by Powell's method). This touches only the released vector: post-processing, no privacy cost.

``epsilon = 0`` releases the public prior alone: no private data is read, and the report says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from scipy import ndimage
from skimage.morphology import skeletonize

from privmed.data.dataset import ImageDataset
from privmed.data.vessel_sim import PARAMETER_BOUNDS, VesselSimParams, simulate_vessels
from privmed.errors import DataError, NotFittedError, PrivacyError, PrivmedError
from privmed.fileio import write_json_atomic
from privmed.methods.base import GenerativeMethod
from privmed.privacy.calibration import check_delta, check_epsilon, default_delta
from privmed.privacy.gaussian import (
    GAUSSIAN_ACCOUNTANT,
    GAUSSIAN_MECHANISM,
    GaussianMechanism,
    gaussian_epsilon,
)
from privmed.privacy.group import group_sizes
from privmed.privacy.ledger import BudgetLedger, dataset_key
from privmed.privacy.report import PrivacyReport
from privmed.privacy.units import PrivacyUnit, plural
from privmed.runs import RunDirectory, run_config

METHOD_NAME = "vessel-sim"
PUBLIC_PRIOR_NOTE = (
    "public data, not covered by epsilon: the privmed vessel simulator (privmed.data.vessel_sim) and its default "
    "parameters, set from published anatomy and imaging facts (sources in its docstring), not from private images"
)
PUBLIC_ONLY_NOTE = "epsilon = 0: this release was made from public knowledge only (the simulator prior); no private data was read"

FITTED_PARAMETERS = (
    "vessel_width", "segment_length", "min_width_px", "asymmetry", "tortuosity", "contrast", "background",
    "vignetting", "disc_diameter", "disc_brightness", "fovea_darkness", "texture", "noise", "blur_px",
)
"""The simulator parameters the statistics can identify; the others keep their public defaults."""

_WIDTH_BINS = (2.5, 3.5, 5.0, 7.0)
_RING_EDGES = (0.5, 0.85)
STATISTICS = (
    "vessel_fraction", "width~1-2", "width~2-3", "width~3-5", "width~5-7", "width>=7", "fundus_level",
    "vessel_contrast", "centre_brightness", "rim_brightness", "bright_fraction", "bright_level", "fine_noise",
    "texture", "edge_sharpness",
)
"""What each coordinate of :func:`vessel_statistics` measures.

Few coordinates on purpose: the Gaussian noise per coordinate does not shrink with their number, while
the clip bounds their joint norm, so each one kept must carry what the simulator can use."""

_SCALE = 1.4
"""Common factor that brings the public simulator's vectors (at its defaults, DRIVE size) to norm about 0.85,
below the default clip of 1: set from the public prior, never from private data."""

GEOMETRY_PARAMETERS = ("vessel_width", "segment_length", "min_width_px", "asymmetry")
"""What the ``geometry`` statistics fit: the vessel tree that the labels show (the rest keep their defaults)."""

STATISTIC_SETS: dict[str, tuple[tuple[int, ...], tuple[str, ...], float]] = {
    "all": (tuple(range(len(STATISTICS))), FITTED_PARAMETERS, 1.0),
    "geometry": ((0, 1, 2, 3, 4, 5), GEOMETRY_PARAMETERS, 1.7),
}
"""The statistics a fit releases: their columns of :data:`STATISTICS`, the simulator parameters fitted to them,
and a factor that brings the public simulator's vector (defaults, DRIVE size) back to norm about 0.85.

``geometry`` releases only the label statistics (vessel density and widths): image appearance (contrast,
illumination, noise, blur) keeps its public defaults. With 6 coordinates instead of 15 each one gets 1.7x
the share of the clip, so 1.7x the signal-to-noise ratio at the same epsilon; and a segmentation network,
which sees images through CLAHE, is hurt more by a noisy appearance estimate (a camera noise fitted to
zero) than it gains from a right one (benchmarks/results/drive_frontier.md)."""


def _green(images: np.ndarray) -> np.ndarray:
    """The channel segmentation uses: green of RGB, a single channel as it is."""
    return images[:, 1] if images.shape[1] == 3 else images[:, 0]


def vessel_statistics(image: np.ndarray, label: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """One image's statistics vector (see :data:`STATISTICS`): vessel density and width histogram,
    fundus level, vessel contrast, radial illumination profile, disc brightness, noise,
    texture and blur. ``image`` is 2D in [0, 1], ``label`` and ``fov`` 2D booleans.

    Scaled so that a fundus image's vector has norm near 1; the clipping that bounds it is the caller's.
    """
    image = image.astype(np.float64)
    label = label.astype(bool) & fov
    fov = fov.astype(bool)
    if not fov.any():
        return np.zeros(len(STATISTICS))
    fundus_pixels = fov & ~label
    level = float(np.median(image[fundus_pixels])) if fundus_pixels.any() else float(np.median(image[fov]))
    level = max(level, 1e-3)
    vessel_fraction = float(label[fov].mean())
    skeleton = skeletonize(label)
    widths = 2.0 * ndimage.distance_transform_edt(label)[skeleton]
    width_hist = np.histogram(widths, bins=(0.0, *_WIDTH_BINS, np.inf))[0] / max(widths.size, 1)
    # Local fundus brightness around each vessel (normalised convolution over non-vessel FOV pixels).
    weight = ndimage.gaussian_filter(fundus_pixels.astype(float), 4.0)
    local = ndimage.gaussian_filter(image * fundus_pixels, 4.0) / np.maximum(weight, 1e-6)
    contrast = float(np.mean((local[label] - image[label]) / np.maximum(local[label], 1e-3))) if label.any() else 0.0
    height, width = image.shape
    rows, cols = np.nonzero(fov)
    centre_row, centre_col = rows.mean(), cols.mean()
    fov_radius = math.sqrt(fov.sum() / math.pi)
    rr, cc = np.mgrid[0:height, 0:width]
    rho = np.hypot(rr - centre_row, cc - centre_col) / fov_radius
    ring_index = np.digitize(rho, _RING_EDGES)
    rings = [float(image[fundus_pixels & (ring_index == k)].mean()) / level - 1.0 if (fundus_pixels & (ring_index == k)).any() else 0.0 for k in (0, 2)]
    bright_fraction = float((image[fov] > 1.4 * level).mean())
    bright_level = float(np.percentile(image[fov], 99.5)) / level - 1.0
    interior = ndimage.binary_erosion(fundus_pixels, iterations=3)
    fine = image - ndimage.gaussian_filter(image, 1.0)
    fine_noise = float(np.median(np.abs(fine[interior]))) / level if interior.any() else 0.0
    texture = float(ndimage.gaussian_filter(image, 6.0)[interior].std()) / level if interior.any() else 0.0
    gradient = np.hypot(*np.gradient(ndimage.gaussian_filter(image, 0.5)))
    boundary = label & ~ndimage.binary_erosion(label)
    edge = float(gradient[boundary].mean()) / level if boundary.any() else 0.0
    return _SCALE * np.array([
        2.0 * vessel_fraction, *(0.5 * width_hist), 0.5 * level, 1.0 * contrast,
        *(0.5 * np.array(rings)), 3.0 * bright_fraction, 0.3 * bright_level, 10.0 * fine_noise, 2.0 * texture, 1.0 * edge,
    ])


def check_pairs(data: ImageDataset) -> None:
    """Raise a :class:`DataError` unless ``data`` holds 2D images with vessel labels."""
    if data.segmentations is None:
        raise DataError(f"{data.name}: fitting the vessel simulator needs vessel labels (segmentations)")
    if len(data.spatial_shape) != 2:
        raise DataError(f"{data.name}: the vessel simulator is 2D, got spatial shape {data.spatial_shape}")


def dataset_statistics(data: ImageDataset, statistics: str = "all") -> np.ndarray:
    """Per-record statistics vectors of ``data`` (records x the columns of ``statistics``, see :data:`STATISTIC_SETS`)."""
    check_pairs(data)
    columns, _, factor = _statistic_set(statistics)
    images = _green(data.images)
    masks = np.ones_like(images, dtype=bool) if data.masks is None else data.masks[:, 0].astype(bool)
    vectors = np.stack([vessel_statistics(images[i], data.segmentations[i, 0], masks[i]) for i in range(len(data))])
    return factor * vectors[:, list(columns)]


def _statistic_set(statistics: str) -> tuple[tuple[int, ...], tuple[str, ...], float]:
    if statistics not in STATISTIC_SETS:
        raise PrivmedError(f"unknown statistics {statistics!r}: use one of {', '.join(STATISTIC_SETS)}")
    return STATISTIC_SETS[statistics]


def clip_rows(vectors: np.ndarray, clip: float) -> np.ndarray:
    """Each row scaled down to L2 norm at most ``clip`` (rows already inside are unchanged)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors * np.minimum(1.0, clip / np.maximum(norms, 1e-12))


def unit_statistics(data: ImageDataset, unit: PrivacyUnit | str, clip: float, statistics: str = "all") -> np.ndarray:
    """One clipped statistics vector per privacy unit: the mean of its records' vectors, then clipped."""
    per_record = dataset_statistics(data, statistics)
    ids = data.unit_ids(unit)
    sums = np.zeros((int(ids.max()) + 1, per_record.shape[1]))
    np.add.at(sums, ids, per_record)
    return clip_rows(sums / np.bincount(ids)[:, None], clip)


def _bounds(name: str) -> tuple[float, float]:
    return next((low, high) for n, low, high in PARAMETER_BOUNDS if n == name)


class VesselSimFit(GenerativeMethod):
    """The public vessel simulator with parameters fitted to private image + label pairs under DP.

    ``epsilon`` (per ``unit``: ``image`` or ``patient``) is spent once, on the mean of the clipped
    per-unit statistics; 0 releases the public prior alone. ``delta`` defaults to min(1e-5, 1/(10 N)).
    ``clip`` bounds each unit's statistics vector (L2). ``fit_images`` simulated images per candidate and
    ``fit_evaluations`` candidates bound the (free) parameter search; ``prior_weight`` is the pull towards the
    public defaults. ``statistics`` is what is released (:data:`STATISTIC_SETS`): ``all`` 15 image and label
    statistics, or ``geometry`` the 6 label statistics only. ``size`` (height, width) of the samples defaults
    to the private images' size, which is treated as public (the camera's format).
    The DP noise is secret unless ``reproducible`` (then it follows from ``seed``: a research run, flagged).

    Learned: ``params_`` (the simulator parameters), ``released_`` (the noisy mean), ``report_``.
    """

    method_name = METHOD_NAME

    def __init__(
        self,
        epsilon: float = 8.0,
        *,
        delta: float | None = None,
        unit: PrivacyUnit | str = "image",
        clip: float = 1.0,
        fit_images: int = 3,
        fit_evaluations: int = 150,
        prior_weight: float = 1.0,
        statistics: str = "all",
        size: tuple[int, int] | None = None,
        seed: int = 0,
        reproducible: bool = False,
        run_dir: str | Path | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.unit = unit
        self.clip = clip
        self.fit_images = fit_images
        self.fit_evaluations = fit_evaluations
        self.prior_weight = prior_weight
        self.statistics = statistics
        self.size = size
        self.seed = seed
        self.reproducible = reproducible
        self.run_dir = run_dir
        self.params_: VesselSimParams | None = None
        self.released_: np.ndarray | None = None
        self.report_: PrivacyReport | None = None

    @property
    def statistic_names(self) -> tuple[str, ...]:
        """The names of the released statistics, in order."""
        return tuple(STATISTICS[i] for i in _statistic_set(self.statistics)[0])

    def get_params(self) -> dict[str, Any]:
        """The options as JSON-ready values (what config.json stores)."""
        return {
            "epsilon": float(self.epsilon), "delta": self.delta, "unit": PrivacyUnit.parse(self.unit).value, "clip": self.clip,
            "fit_images": self.fit_images, "fit_evaluations": self.fit_evaluations, "prior_weight": self.prior_weight,
            "statistics": self.statistics, "size": None if self.size is None else list(self.size), "seed": self.seed, "reproducible": self.reproducible,
        }

    # -- the private step ------------------------------------------------------------------------
    def _release_plan(self, data: ImageDataset) -> tuple[PrivacyUnit, int, float]:
        """The release's unit, N and delta, after checking the options (before anything is written or booked)."""
        unit = PrivacyUnit.parse(self.unit)
        if unit is PrivacyUnit.RECORD:
            raise PrivacyError("vessel-sim protects whole images or patients: use unit 'image' or 'patient'")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise PrivacyError(f"clip must be a finite number > 0, got {self.clip}")
        _statistic_set(self.statistics)
        n_units = data.n_units(unit)
        delta = default_delta(n_units) if self.delta is None else check_delta(self.delta, n_units, unit.value)
        return unit, n_units, delta

    def release_statistics(self, data: ImageDataset) -> tuple[np.ndarray, float, float, float, int]:
        """The one DP release: (noisy mean, noise std, sensitivity, delta, N). No accounting here."""
        unit, n_units, delta = self._release_plan(data)
        sensitivity = 2.0 * self.clip / n_units
        mechanism = GaussianMechanism(sensitivity, float(self.epsilon), delta, seed=self.seed if self.reproducible else None)
        mean = unit_statistics(data, unit, self.clip, self.statistics).mean(axis=0)
        released = mechanism.add_noise(torch.from_numpy(np.asarray(mean, dtype=np.float64))).numpy()
        return released, mechanism.sigma, sensitivity, delta, n_units

    def fit(self, data: ImageDataset | None = None, *, data_ref: str | None = None) -> Self:
        """Release the statistics of ``data`` once (booked in the budget ledger) and fit the simulator;
        with ``epsilon = 0``, ``data`` must be None and the public prior is released."""
        if float(self.epsilon) == 0:
            if data is not None:
                raise PrivacyError("epsilon = 0 releases the public prior only: leave the private data out")
            return self._fit_public()
        check_epsilon(self.epsilon)
        if data is None:
            raise PrivmedError("a DP fit of the simulator needs the private data (or epsilon = 0 for the public prior)")
        check_pairs(data)
        unit, n_units, delta = self._release_plan(data)
        key = dataset_key(data)
        run = RunDirectory(self.run_dir) if self.run_dir is not None else None
        config = run_config(METHOD_NAME, self.get_params(), {"ref": data_ref, "name": data.name, "records": len(data)})
        release_id = str(config["run_id"])
        if run is not None:
            run.create(config)
        ledger = BudgetLedger()
        ledger.reserve(key, release_id, float(self.epsilon), delta, unit, f"{METHOD_NAME} fit ({data.name})",
                       n_units=n_units, group_sizes=group_sizes(data, unit))
        released, sigma, sensitivity, delta, n_units = self.release_statistics(data)
        epsilon = gaussian_epsilon(sigma, sensitivity, delta)
        self.report_ = PrivacyReport(
            mechanism=GAUSSIAN_MECHANISM, accountant=GAUSSIAN_ACCOUNTANT, unit=unit.describe(data.record_kind), n_units=n_units,
            epsilon=epsilon, delta=delta, noise_multiplier=sigma / sensitivity, sensitivity=sensitivity, max_grad_norm=None,
            steps=1, seed=self.seed, reproducible=self.reproducible, dataset=data.name, notes=self._notes(data, unit, sigma, delta),
        )
        ledger.settle(release_id, epsilon)
        self.released_ = released
        self.noise_std_ = sigma
        self.size_ = tuple(self.size) if self.size is not None else tuple(data.spatial_shape)
        self.params_ = self.match(released, sigma, self.size_)
        if run is not None:
            self.save(run.path)
        return self

    def _notes(self, data: ImageDataset, unit: PrivacyUnit, sigma: float, delta: float) -> list[str]:
        swapped = "one image swapped for another" if unit is PrivacyUnit.IMAGE else "all images of one patient swapped for another's"
        notes = [
            f"neighbouring relation: replace-one ({swapped}; the number N of {plural(unit.value)} is public), "
            "so the L2 sensitivity of the mean is 2 * clip / N",
            f"one Gaussian release of the mean of {len(self.statistic_names)} per-{unit.value} statistics ({self.statistics}), each unit's vector clipped to "
            f"L2 norm {self.clip:g}; noise std {sigma:.4g} per coordinate (analytic Gaussian, Balle & Wang 2018)",
            PUBLIC_PRIOR_NOTE,
            "the simulator parameters are chosen by post-processing of the released mean; samples are simulator draws",
            "the image size of the private data is treated as public (the camera's format)",
        ]
        if self.delta is None:
            notes.append(f"delta = min(1e-5, 1/(10 N)) = {delta:.3g}")
        if unit is PrivacyUnit.PATIENT and not data.subjects_known:
            notes.append("the data carries no patient ids: one patient per image is assumed")
        return notes

    def _fit_public(self) -> Self:
        self.params_ = VesselSimParams()
        self.released_ = None
        self.noise_std_ = None
        self.size_ = tuple(self.size) if self.size is not None else (96, 96)
        self.report_ = PrivacyReport(
            mechanism="none: public prior only", accountant="none", unit=PrivacyUnit.parse(self.unit).value, n_units=0,
            epsilon=0.0, delta=0.0, seed=self.seed, notes=[PUBLIC_ONLY_NOTE, PUBLIC_PRIOR_NOTE],
        )
        if self.run_dir is not None:
            RunDirectory(self.run_dir).create(run_config(METHOD_NAME, self.get_params(), None))
            self.save(self.run_dir)
        return self

    # -- post-processing ---------------------------------------------------------------------------
    def simulated_statistics(self, params: VesselSimParams, size: tuple[int, int]) -> np.ndarray:
        """Mean clipped statistics of ``fit_images`` simulated images (the same draws for every ``params``)."""
        sim = simulate_vessels(self.fit_images, size, seed=self.seed + 7919, params=params)
        return clip_rows(dataset_statistics(sim, self.statistics), self.clip).mean(axis=0)

    def match(self, released: np.ndarray, noise_std: float, size: tuple[int, int]) -> VesselSimParams:
        """Simulator parameters whose simulated statistics are closest to ``released`` (post-processing).

        Minimises |s(theta) - released|^2 / (noise_std^2 + tau^2) + prior_weight * |z|^2, where z are
        the fitted parameters' deviations from the public defaults in units of a quarter of their range
        and tau = 0.01 allows for the simulator's own sampling spread: a regularised least-squares
        problem, solved by Levenberg-Marquardt steps on finite-difference Jacobians (steps of 0.2 in z:
        the simulator is smooth only on that scale); ``fit_evaluations`` bounds the simulator calls.
        With much noise the prior wins.
        """
        prior = VesselSimParams()
        fitted = _statistic_set(self.statistics)[1]
        scale = np.array([(_bounds(n)[1] - _bounds(n)[0]) / 4 for n in fitted])
        start = np.array([getattr(prior, n) for n in fitted])
        z_low = (np.array([_bounds(n)[0] for n in fitted]) - start) / scale
        z_high = (np.array([_bounds(n)[1] for n in fitted]) - start) / scale
        weight = math.sqrt(1.0 / (noise_std**2 + 0.01**2))

        def params_at(z: np.ndarray) -> VesselSimParams:
            return replace(prior, **{n: float(v) for n, v in zip(fitted, start + z * scale)})

        def residuals(z: np.ndarray) -> np.ndarray:
            mismatch = self.simulated_statistics(params_at(z), size) - released
            return np.concatenate([weight * mismatch, math.sqrt(self.prior_weight) * z])

        z = np.zeros(len(fitted))
        current = residuals(z)
        evaluations, damping, step = 1, 1.0, 0.2
        while evaluations + len(z) + 1 <= self.fit_evaluations:
            jacobian = np.empty((current.size, len(z)))
            for i in range(len(z)):
                h = step if z[i] + step <= z_high[i] else -step
                moved = z.copy()
                moved[i] += h
                jacobian[:, i] = (residuals(moved) - current) / h
            evaluations += len(z)
            gram, gradient = jacobian.T @ jacobian, jacobian.T @ current
            while evaluations < self.fit_evaluations:
                proposal = np.clip(z - np.linalg.solve(gram + damping * np.diag(np.diag(gram) + 1e-6), gradient), z_low, z_high)
                trial = residuals(proposal)
                evaluations += 1
                if trial @ trial < current @ current:
                    z, current, damping = proposal, trial, max(damping / 3, 1e-3)
                    break
                damping *= 4
                if damping > 1e4:
                    return params_at(z)
        return params_at(z)

    # -- release -----------------------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = None) -> ImageDataset:
        """``n`` simulated image + label pairs (with FOV masks) from the fitted simulator."""
        self._check_fitted("params_", "report_")
        if n < 1:
            raise PrivmedError(f"the number of samples must be positive, got {n}")
        data = simulate_vessels(n, self.size_, seed=self.seed + 1 if seed is None else seed, params=self.params_, subject_prefix="synthetic")
        return replace(data, name="vessel-sim-synthetic", metadata={**data.metadata, "method": METHOD_NAME, "privacy": self.report_.summary_line()})

    def privacy_report(self) -> PrivacyReport:
        """The guarantee of the release (and so of every sample)."""
        self._check_fitted("report_")
        return self.report_

    def save(self, run_dir: str | Path) -> Path:
        """Write privacy.json and fit.json (released statistics, noise std, fitted parameters, sample size)."""
        self._check_fitted("params_", "report_")
        run = RunDirectory(run_dir)
        run.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.path / "fit.json", {
            "statistics": list(self.statistic_names),
            "released_mean": None if self.released_ is None else [float(v) for v in self.released_],
            "noise_std": self.noise_std_,
            "simulator_params": self.params_.to_dict(),
            "size": list(self.size_),
        })
        self.report_.to_json(run.privacy_path)
        return run.path

    @classmethod
    def load(cls, run_dir: str | Path) -> VesselSimFit:
        """The fitted simulator of a finished run directory."""
        run = RunDirectory(run_dir)
        config = run.read_config()
        if config.get("method") != METHOD_NAME:
            raise PrivmedError(f"{run.path} was made by method {config.get('method')!r}, not {METHOD_NAME!r}")
        fit_path = run.path / "fit.json"
        if not fit_path.exists() or not run.privacy_path.exists():
            raise NotFittedError(f"{run.path} holds no finished vessel-sim fit (fit.json and privacy.json)")
        options = dict(config["params"])
        options["size"] = None if options.get("size") is None else tuple(options["size"])
        model = cls(**options, run_dir=run_dir)
        fit = json.loads(fit_path.read_text())
        names = {f.name for f in fields(VesselSimParams)}
        model.params_ = VesselSimParams(**{k: float(v) for k, v in fit["simulator_params"].items() if k in names})
        model.released_ = None if fit["released_mean"] is None else np.array(fit["released_mean"])
        model.noise_std_ = fit["noise_std"]
        model.size_ = tuple(fit["size"])
        model.report_ = PrivacyReport.from_json(run.privacy_path)
        return model
