"""The DP fit of the vessel simulator: clipping, the calibrated noise, the report, the public-only release."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution

from privmed.data.dataset import ImageDataset
from privmed.data.vessel_sim import VesselSimParams, simulate_vessels
from privmed.errors import PrivacyError, PrivmedError
from privmed.methods.vessel_sim import (
    GEOMETRY_PARAMETERS,
    STATISTIC_SETS,
    VesselSimFit,
    unit_statistics,
)
from privmed.privacy.ledger import BudgetLedger, dataset_key
from privmed.privacy.report import PrivacyReport

FAST = {"fit_images": 1, "fit_evaluations": 4}


@pytest.fixture(scope="module")
def private() -> ImageDataset:
    """Simulated 'private' pairs drawn away from the public defaults (wider, fainter vessels)."""
    return simulate_vessels(6, size=48, seed=11, params=VesselSimParams(vessel_width=0.03, contrast=0.15))


def _random_pairs(rng: np.random.Generator, n: int) -> ImageDataset:
    """Arbitrary pairs, extremes included: all-vessel, no-vessel, saturated and empty fields of view."""
    images = rng.random((n, 3, 20, 24)).astype(np.float32) ** rng.uniform(0.1, 10)
    labels = (rng.random((n, 1, 20, 24)) < rng.uniform(0, 1, (n, 1, 1, 1))).astype(np.uint8)
    masks = (rng.random((n, 1, 20, 24)) < rng.uniform(0, 1.2, (n, 1, 1, 1))).astype(np.uint8)
    images[0], labels[0] = 1.0, 1
    ids = np.array([f"r{i % max(n // 2, 1)}" for i in range(n)])
    return ImageDataset(images=images, segmentations=labels, masks=masks, subjects=ids, sources=np.array([f"s{i}" for i in range(n)]), name="random")


@pytest.mark.parametrize("trial", range(12))
def test_per_unit_statistics_never_exceed_the_clip(trial: int) -> None:
    rng = np.random.default_rng(trial)
    data = _random_pairs(rng, int(rng.integers(1, 7)))
    clip = float(rng.choice([1e-3, 0.05, 0.4, 1.0, 3.0]))
    for unit in ("image", "patient"):
        statistics = str(rng.choice(list(STATISTIC_SETS)))
        vectors = unit_statistics(data, unit, clip, statistics)
        assert vectors.shape == (data.n_units(unit), len(STATISTIC_SETS[statistics][0]))
        assert np.isfinite(vectors).all()
        assert (np.linalg.norm(vectors, axis=1) <= clip * (1 + 1e-12)).all()


def test_released_noise_has_the_calibrated_std(private: ImageDataset) -> None:
    clip, epsilon = 0.5, 4.0
    true_mean = unit_statistics(private, "image", clip).mean(axis=0)
    errors = []
    for seed in range(150):
        released, sigma, sensitivity, delta, n_units = VesselSimFit(epsilon, clip=clip, seed=seed, reproducible=True).release_statistics(private)
        errors.append(released - true_mean)
    assert (n_units, sensitivity, delta) == (6, pytest.approx(2 * clip / 6), pytest.approx(min(1e-5, 1 / 60)))
    errors = np.concatenate(errors)
    assert errors.mean() == pytest.approx(0.0, abs=4 * sigma / np.sqrt(errors.size))
    assert errors.std() == pytest.approx(sigma, rel=0.05)
    pld = privacy_loss_distribution.from_gaussian_mechanism(sigma, sensitivity=sensitivity, value_discretization_interval=1e-4)
    assert pld.get_epsilon_for_delta(delta) == pytest.approx(epsilon, rel=2e-3)


def test_privacy_json_epsilon_matches_dp_accounting_and_is_booked(private: ImageDataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    model = VesselSimFit(8.0, unit="image", clip=1.0, reproducible=True, run_dir=run, **FAST).fit(private, data_ref="sim")
    report = PrivacyReport.from_json(run / "privacy.json")
    sensitivity = 2 * 1.0 / len(private)
    sigma = report.noise_multiplier * report.sensitivity
    assert report.sensitivity == pytest.approx(sensitivity)
    pld = privacy_loss_distribution.from_gaussian_mechanism(sigma, sensitivity=sensitivity, value_discretization_interval=1e-4)
    assert report.epsilon == pytest.approx(pld.get_epsilon_for_delta(report.delta), rel=2e-3)
    assert report.epsilon == pytest.approx(8.0, rel=1e-6) and report.delta == pytest.approx(1e-5)
    assert (report.unit, report.n_units) == ("image", 6)
    assert any("replace-one" in note for note in report.notes) and any("public data" in note for note in report.notes)
    assert BudgetLedger().spent(dataset_key(private), "image")[0] == pytest.approx(8.0)
    fit = json.loads((run / "fit.json").read_text())
    assert len(fit["released_mean"]) == len(STATISTIC_SETS["all"][0]) and fit["noise_std"] == pytest.approx(sigma)
    samples = VesselSimFit.load(run).sample(3, seed=1)
    assert samples.images.shape == (3, 1, 48, 48) and samples.segmentations is not None and samples.masks is not None
    np.testing.assert_array_equal(samples.images, model.sample(3, seed=1).images)


def test_public_only_release_reports_epsilon_zero_and_reads_no_data(private: ImageDataset, tmp_path: Path) -> None:
    model = VesselSimFit(0.0, run_dir=tmp_path / "prior", size=(40, 40)).fit()
    report = PrivacyReport.from_json(tmp_path / "prior" / "privacy.json")
    assert report.epsilon == 0 and report.n_units == 0
    assert any("public knowledge only" in note for note in report.notes)
    assert model.params_ == VesselSimParams()
    assert BudgetLedger().spent(dataset_key(private), "image")[0] == 0
    with pytest.raises(PrivacyError, match="public prior only"):
        VesselSimFit(0.0).fit(private)


def test_fit_moves_the_parameters_towards_the_private_data() -> None:
    truth = VesselSimParams(contrast=0.12, background=0.3)
    private = simulate_vessels(30, size=96, seed=5, params=truth)
    model = VesselSimFit(50.0, reproducible=True, fit_images=3, fit_evaluations=100).fit(private)
    prior = VesselSimParams()
    assert abs(model.params_.background - truth.background) < 0.5 * abs(prior.background - truth.background)
    assert abs(model.params_.contrast - truth.contrast) < 0.5 * abs(prior.contrast - truth.contrast)


def test_a_geometry_fit_moves_the_vessel_tree_and_leaves_the_appearance_public() -> None:
    truth = VesselSimParams(vessel_width=0.03, contrast=0.12)
    private = simulate_vessels(30, size=96, seed=5, params=truth)
    model = VesselSimFit(50.0, statistics="geometry", reproducible=True, fit_images=3, fit_evaluations=60).fit(private)
    prior = VesselSimParams()
    assert abs(model.params_.vessel_width - truth.vessel_width) < 0.5 * abs(prior.vessel_width - truth.vessel_width)
    unfitted = [f for f in prior.to_dict() if f not in GEOMETRY_PARAMETERS]
    assert {f: getattr(model.params_, f) for f in unfitted} == {f: getattr(prior, f) for f in unfitted}
    assert len(model.released_) == 6


@pytest.mark.parametrize(("option", "value"), [("unit", "patch"), ("clip", 0.0), ("delta", 0.5), ("statistics", "texture")])
def test_a_bad_option_writes_no_run_and_books_nothing(private: ImageDataset, tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(PrivmedError):
        VesselSimFit(8.0, run_dir=tmp_path / "run", **{option: value}).fit(private)
    assert not (tmp_path / "run").exists()
    assert BudgetLedger().entries() == []
