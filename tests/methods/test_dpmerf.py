"""DP-MERF: bounded features, the noise and epsilon of the one release, a generator that sees only the
release, sampling, save/load, and refusals that write and book nothing."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from dp_accounting import GaussianDpEvent
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, NotFittedError, PrivacyError
from privmed.methods.dpmerf import DPMERF, release_sensitivity
from privmed.models.dpmerf import FeatureMap
from privmed.privacy.ledger import BudgetLedger

TINY = {"rff_features": 100, "conv_features": 100, "steps": 4, "batch_per_class": 8, "generator_width": 8, "latent_dim": 8}


@pytest.fixture(scope="module")
def phantom() -> ImageDataset:
    return load("phantom-classes:train").subset(np.arange(128))


def extreme_images(size: int, channels: int, rng: np.random.Generator) -> torch.Tensor:
    """All-zero, all-one, checkerboards of several periods, one bright pixel, stripes, and random images."""
    y, x = np.mgrid[:size, :size]
    boards = [((x // p + y // p) % 2).astype(np.float32) for p in (1, 2, 3, 7)]
    stripes = [(x % 2).astype(np.float32), (y < size // 2).astype(np.float32)]
    dot = np.zeros((size, size), np.float32)
    dot[size // 2, size // 2] = 1
    fixed = [np.zeros((size, size), np.float32), np.ones((size, size), np.float32), dot, *boards, *stripes, 1 - boards[0]]
    images = np.stack([np.broadcast_to(f, (channels, size, size)) for f in fixed])
    uniform = rng.random((40, channels, size, size), dtype=np.float32)
    binary = (rng.random((40, channels, size, size)) < 0.5).astype(np.float32)
    return torch.from_numpy(np.concatenate([images, uniform, binary]))


@pytest.mark.parametrize("parts", [{"pixels": 1.0, "rff": 1.0, "conv": 1.0}, {"rff": 1.0}, {"conv": 3.0, "pixels": 0.1}, {"pixels": 1.0}])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 16)])
def test_every_feature_vector_has_norm_at_most_1(parts: dict[str, float], channels: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for seed in range(3):
        feature_map = FeatureMap(channels, size, parts, rff_features=64, conv_features=64, rff_bandwidth=0.05, conv_bandwidth=0.01, seed=seed)
        norms = feature_map(extreme_images(size, channels, rng)).norm(dim=1)
        assert feature_map(torch.zeros(1, channels, size, size)).shape[1] == feature_map.dim
        assert float(norms.max()) <= 1 + 1e-6
    # The pixel part reaches the bound exactly on an all-one image: the bound is tight, not loose.
    pixels_only = FeatureMap(channels, size, {"pixels": 1.0})
    assert float(pixels_only(torch.ones(1, channels, size, size)).norm()) == pytest.approx(1.0)


def test_each_unit_contributes_a_vector_of_norm_at_most_1(phantom: ImageDataset) -> None:
    """The per-class sums of a one-image dataset are that image's v(u): norm <= 1, for image and patient units."""
    model = DPMERF(float("inf"), **TINY)
    _, alpha, beta = model._check_options()
    model.class_names_ = phantom.class_names
    feature_map = model._feature_map(1, 28)
    for index in range(0, 128, 9):
        sums, counts = model.class_sums(phantom.subset(np.array([index])), feature_map, alpha, beta)
        assert math.hypot(float(sums.norm()), float(counts.norm())) <= 1 + 1e-9
    # A patient with three images: the mean of their vectors, still norm <= 1.
    three = dataclasses.replace(phantom.subset(np.arange(3)), subjects=np.array(["p", "p", "p"]))
    patient = DPMERF(float("inf"), unit="patient", **TINY)
    patient.class_names_ = phantom.class_names
    sums, counts = patient.class_sums(three, feature_map, alpha, beta)
    assert math.hypot(float(sums.norm()), float(counts.norm())) <= 1 + 1e-9
    assert float(counts.sum()) == pytest.approx(beta)


def test_replace_one_sensitivity_covers_every_pair_of_units() -> None:
    alpha = math.sqrt(1 - 0.3**2)
    assert release_sensitivity("add-remove", alpha) == 1.0
    assert release_sensitivity("replace-one", alpha) == pytest.approx(2 * alpha)
    assert release_sensitivity("replace-one", 0.5) == pytest.approx(math.sqrt(2))
    with pytest.raises(PrivacyError):
        release_sensitivity("swap", alpha)


def pld_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    accountant = PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(GaussianDpEvent(noise_multiplier=sigma / sensitivity))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(("epsilon", "neighbouring"), [(1.0, "add-remove"), (8.0, "replace-one")])
def test_privacy_json_epsilon_matches_dp_accounting_and_noise_has_the_calibrated_std(
    phantom: ImageDataset, tmp_path: Path, epsilon: float, neighbouring: str
) -> None:
    model = DPMERF(epsilon, neighbouring=neighbouring, reproducible=True, run_dir=tmp_path / "run", **{**TINY, "rff_features": 2000, "conv_features": 2000})
    model.fit(phantom)
    report = json.loads((tmp_path / "run" / "privacy.json").read_text())
    assert report["delta"] == 1e-5 and report["n_units"] == 128 and report["steps"] == 1
    assert report["sensitivity"] == pytest.approx(1.0 if neighbouring == "add-remove" else 2 * math.sqrt(1 - 0.09))
    sigma = report["noise_multiplier"] * report["sensitivity"]
    assert pld_epsilon(sigma, report["sensitivity"], report["delta"]) == pytest.approx(report["epsilon"], rel=2e-3)
    assert report["epsilon"] == pytest.approx(epsilon, rel=1e-6)
    assert any(neighbouring in note for note in report["notes"])
    # The noise: released minus exact sums, over 2 x 8785 coordinates, has std sigma.
    exact = DPMERF(float("inf"), **{**TINY, "rff_features": 2000, "conv_features": 2000})
    exact.release(phantom)
    noise = torch.cat([
        (model.release_.sums - exact.release_.sums).flatten(), model.release_.count_sums - exact.release_.count_sums
    ]).double()
    assert float(noise.std()) == pytest.approx(sigma, rel=0.03)
    assert abs(float(noise.mean())) < 5 * sigma / math.sqrt(noise.numel())
    # Booked once in the ledger, settled at the reported epsilon.
    (entry,) = BudgetLedger().entries()
    assert entry["status"] == "settled" and entry["epsilon"] == pytest.approx(report["epsilon"]) and entry["delta"] == 1e-5


def test_generator_training_touches_only_the_release(phantom: ImageDataset) -> None:
    data = dataclasses.replace(phantom, images=phantom.images.copy())
    reference = DPMERF(2.0, reproducible=True, **TINY).fit(data)
    model = DPMERF(2.0, reproducible=True, **TINY)
    model.release(data)
    data.images[...] = np.random.default_rng(0).random(data.images.shape, dtype=np.float32)  # the private data is swapped
    data.labels[...] = 1 - data.labels
    model.train_generator()
    for (name, mine), theirs in zip(model.generator_.state_dict().items(), reference.generator_.state_dict().values()):
        assert torch.equal(mine, theirs), name
    # And the release really is what the generator follows: another release gives another generator.
    other = DPMERF(2.0, **TINY).fit(phantom)
    assert not torch.equal(other.generator_.project[0].weight, reference.generator_.project[0].weight)


def test_fit_save_load_and_sample_any_number_of_labelled_images(phantom: ImageDataset, tmp_path: Path) -> None:
    model = DPMERF(4.0, reproducible=True, run_dir=tmp_path / "run", **TINY).fit(phantom)
    for name in ("config.json", "privacy.json", "release.pt", "generator.pt", "samples/samples.png"):
        assert (tmp_path / "run" / name).exists(), name
    loaded = DPMERF.load(tmp_path / "run")
    first, again = model.sample(37, seed=3), loaded.sample(37, seed=3)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.class_names == phantom.class_names and first.images.shape == (37, 1, 28, 28)
    assert set(loaded.sample(20, class_label="abnormal").labels) == {1}
    assert loaded.privacy_report().epsilon == pytest.approx(4.0)
    frequencies = loaded.release_.class_frequencies
    assert frequencies.sum() == pytest.approx(1.0) and (frequencies > 0).all()


def test_non_private_reference_is_not_booked_and_says_so(phantom: ImageDataset) -> None:
    report = DPMERF(float("inf"), **TINY).fit(phantom).privacy_report()
    assert math.isinf(report.epsilon) and "no privacy guarantee" in report.mechanism
    assert BudgetLedger().entries() == []


def _refused(model: DPMERF, data: ImageDataset, error: type[Exception], match: str, run_dir: Path) -> None:
    with pytest.raises(error, match=match):
        model.fit(data)
    assert not run_dir.exists()
    assert BudgetLedger().entries() == []


def test_single_class_data_is_refused(phantom: ImageDataset, tmp_path: Path) -> None:
    one = phantom.subset(np.flatnonzero(phantom.labels == 0))
    one = dataclasses.replace(one, class_names=None)
    _refused(DPMERF(1.0, run_dir=tmp_path / "run", **TINY), one, DataError, "at least two classes", tmp_path / "run")


def test_empty_class_is_refused(phantom: ImageDataset, tmp_path: Path) -> None:
    three = dataclasses.replace(phantom, class_names=("normal", "abnormal", "other"))
    _refused(DPMERF(1.0, run_dir=tmp_path / "run", **TINY), three, DataError, "no images", tmp_path / "run")


def test_unlabelled_data_is_refused(phantom: ImageDataset, tmp_path: Path) -> None:
    unlabelled = dataclasses.replace(phantom, labels=None, class_names=None)
    _refused(DPMERF(1.0, run_dir=tmp_path / "run", **TINY), unlabelled, DataError, "no class labels", tmp_path / "run")


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan")])
def test_bad_epsilon_is_refused(phantom: ImageDataset, tmp_path: Path, epsilon: float) -> None:
    _refused(DPMERF(epsilon, run_dir=tmp_path / "run", **TINY), phantom, PrivacyError, "epsilon", tmp_path / "run")


def test_delta_at_or_above_1_over_n_is_refused(phantom: ImageDataset, tmp_path: Path) -> None:
    _refused(DPMERF(1.0, delta=1 / 128, run_dir=tmp_path / "run", **TINY), phantom, PrivacyError, "1/N", tmp_path / "run")


def test_sampling_before_fit_is_refused() -> None:
    with pytest.raises(NotFittedError):
        DPMERF(1.0).sample(3)
    with pytest.raises(NotFittedError):
        DPMERF(1.0).train_generator()
