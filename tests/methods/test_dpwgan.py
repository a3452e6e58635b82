"""DP-WGAN: run files, exact resume, accounting that matches the calibration, samples, refusals."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from privmed.data import load, save
from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivacyError
from privmed.methods.dpwgan import DPWGAN
from privmed.methods.trainer import DPTrainer
from privmed.privacy.calibration import default_delta, dpsgd_noise_multiplier
from privmed.privacy.ledger import BudgetLedger, dataset_key
from privmed.privacy.plan import plan_training, privacy_report
from tests.privacy.independent_accounting import pld_epsilon, rdp_epsilon

# Tiny schedule: 16 phantom subjects x 8 patches of 32x32 = 128 patch units, batch 8 -> q = 1/16,
# so one epoch is 16 critic steps and 32 steps are two epochs.
TINY = {
    "patch_size": 32,
    "patches_per_subject": 8,
    "batch_size": 8,
    "max_steps": 32,
    "generator_channels": 8,
    "critic_channels": 8,
    "latent_dim": 16,
}


@pytest.fixture(scope="module")
def phantom() -> ImageDataset:
    return load("phantom:train")


@pytest.fixture(scope="module")
def finished_run(phantom: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[DPWGAN, Path, Path]:
    """One tiny run shared by the tests that only read it (with its own ledger file)."""
    root = tmp_path_factory.mktemp("dpwgan")
    ledger = root / "ledger.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(ledger))
        model = DPWGAN(8.0, run_dir=root / "run", data_ref="phantom:train", **TINY).fit(phantom)
    return model, root / "run", ledger


def test_a_tiny_run_writes_every_run_file(finished_run: tuple[DPWGAN, Path, Path]) -> None:
    model, run, _ = finished_run
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "dpwgan" and config["data"]["ref"] == "phantom:train"
    assert config["params"]["epsilon"] == 8.0 and config["plan"]["steps"] == 32
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["step"]) for r in rows] == [16, 32]
    assert float(rows[0]["epsilon"]) < float(rows[1]["epsilon"]) <= 8.0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert state["step"] == 32 and state["finished"]
    assert {"generator", "critic", "generator_optimizer", "critic_optimizer", "latent_rng"} <= set(state["task"])
    assert {"accountant", "sampler", "gradient", "torch_rng", "numpy_rng"} <= set(state)
    report = json.loads((run / "privacy.json").read_text())
    assert report["unit"] == "patch" and report["steps"] == 32
    assert report["epsilon"] == pytest.approx(model.privacy_report().epsilon)


def test_epsilon_is_what_the_accountant_gives_for_the_run_parameters(finished_run: tuple[DPWGAN, Path, Path]) -> None:
    model, _, _ = finished_run
    report = model.privacy_report()
    n_patches = 16 * TINY["patches_per_subject"]
    assert report.n_units == n_patches
    assert report.delta == pytest.approx(default_delta(n_patches)) and report.delta < 1 / n_patches
    assert report.sample_rate == pytest.approx(TINY["batch_size"] / n_patches)
    expected_noise = dpsgd_noise_multiplier(8.0, report.sample_rate, 32, report.delta)
    assert report.noise_multiplier == pytest.approx(expected_noise)
    # dp-accounting, not privmed: never below the (pessimistic) PLD epsilon, at most 5% above its RDP one.
    assert pld_epsilon(report.sample_rate, report.noise_multiplier, 32, report.delta) <= report.epsilon
    assert report.epsilon <= 1.05 * rdp_epsilon(report.sample_rate, report.noise_multiplier, 32, report.delta)
    assert 0.9 * 8.0 < report.epsilon <= 8.0
    # Patch-level guarantee: the report states what a patient with all 8 of their patches gets.
    assert report.group_privacy["records_per_unit"] == TINY["patches_per_subject"]
    assert report.group_privacy["epsilon"] == pytest.approx(8 * report.epsilon)
    assert any("min(1e-5, 1/(10N))" in note for note in report.notes) and any("4x" in note for note in report.notes)


def test_ledger_holds_the_run_settled_at_its_epsilon(finished_run: tuple[DPWGAN, Path, Path], phantom: ImageDataset) -> None:
    model, _, ledger_path = finished_run
    ledger = BudgetLedger(ledger_path)
    assert ledger.spent(dataset_key(phantom, ledger_path), "patch")[0] == pytest.approx(model.privacy_report().epsilon)


def test_samples_are_binary_pairs_that_load_back(finished_run: tuple[DPWGAN, Path, Path], tmp_path: Path) -> None:
    model, run, _ = finished_run
    samples = DPWGAN.load(run).sample(12, seed=3)
    assert samples.images.shape == (12, 1, 32, 32) and samples.images.dtype == np.float32
    assert set(np.unique(samples.segmentations)) <= {0, 1}
    np.testing.assert_array_equal(samples.images, model.sample(12, seed=3).images)
    path = save(samples, tmp_path / "synthetic.npz", format="npz")
    again = load(str(path))
    np.testing.assert_allclose(again.images, samples.images, atol=1e-6)
    np.testing.assert_array_equal(again.segmentations, samples.segmentations)


class _Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_steps_epsilon_and_weights(phantom: ImageDataset, tmp_path: Path, isolated_ledger: Path) -> None:
    # Exact resume is a property of a reproducible run: a default run draws fresh secret noise after a resume.
    reference = DPWGAN(8.0, run_dir=tmp_path / "whole", reproducible=True, **TINY).fit(phantom)

    def kill_after_first_checkpoint(event) -> None:
        if event.step == 20:
            raise _Killed

    with pytest.raises(_Killed):
        DPWGAN(8.0, run_dir=tmp_path / "killed", on_progress=kill_after_first_checkpoint, reproducible=True, **TINY).fit(phantom)
    assert torch.load(tmp_path / "killed" / "checkpoints" / "latest.pt", weights_only=False)["step"] == 16
    resumed = DPWGAN.from_run(tmp_path / "killed").fit(phantom)

    assert resumed.privacy_report().steps == reference.privacy_report().steps == 32
    assert resumed.privacy_report().epsilon == pytest.approx(reference.privacy_report().epsilon, rel=1e-12)
    for name, tensor in reference.generator_.state_dict().items():
        torch.testing.assert_close(resumed.generator_.state_dict()[name], tensor, rtol=0, atol=0)
    with (tmp_path / "killed" / "metrics.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [16, 32]
    run_id = json.loads((tmp_path / "killed" / "config.json").read_text())["run_id"]
    entries = BudgetLedger(isolated_ledger).entries(dataset_key(phantom))
    assert len(entries) == 2  # the whole run and the killed-then-resumed run: one release each
    (resumed_entry,) = [e for e in entries if e["release_id"] == run_id]
    assert resumed_entry["status"] == "settled"
    assert resumed_entry["epsilon"] == pytest.approx(resumed.privacy_report().epsilon)


def test_resume_with_other_options_is_refused(finished_run: tuple[DPWGAN, Path, Path], phantom: ImageDataset) -> None:
    _, run, _ = finished_run
    with pytest.raises(Exception, match="other options"):
        DPWGAN(4.0, run_dir=run, resume=True, **TINY).fit(phantom)


def test_non_private_reference_has_no_guarantee(phantom: ImageDataset) -> None:
    model = DPWGAN(math.inf, **{**TINY, "max_steps": 4}).fit(phantom)
    report = model.privacy_report()
    assert math.isinf(report.epsilon) and report.noise_multiplier is None
    assert "no privacy guarantee" in report.mechanism


def test_image_unit_counts_source_images(phantom: ImageDataset) -> None:
    model = DPWGAN(8.0, unit="image", **{**TINY, "batch_size": 1, "max_steps": 4}).fit(phantom)
    report = model.privacy_report()
    assert report.unit == "image" and report.n_units == 16 and report.group_privacy is None
    assert report.delta == pytest.approx(1e-5)  # min(1e-5, 1/(10 * 16))


def test_data_without_labels_is_refused(phantom: ImageDataset, tmp_path: Path) -> None:
    unlabelled = ImageDataset(images=phantom.images, subjects=phantom.subjects, sources=phantom.sources, name="nolabels")
    with pytest.raises(DataError, match="no segmentation labels"):
        DPWGAN(8.0, run_dir=tmp_path / "run", **TINY).fit(unlabelled)
    assert not (tmp_path / "run").exists()


def test_delta_of_one_over_n_is_refused_before_anything_is_written(phantom: ImageDataset, tmp_path: Path) -> None:
    with pytest.raises(PrivacyError):
        DPWGAN(8.0, delta=1 / 128, run_dir=tmp_path / "run", **TINY).fit(phantom)
    assert not (tmp_path / "run").exists()


class _BatchNormCritic(nn.Module):
    metric_names = ("loss",)

    def __init__(self) -> None:
        super().__init__()
        self.private_module = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 1))


def test_a_critic_with_batchnorm_is_refused_with_a_clear_message() -> None:
    plan = plan_training(
        target_epsilon=8.0, delta=1e-3, unit="patch", record_kind="patch", n_units=64, batch_size=8, max_steps=2
    )
    with pytest.raises(PrivacyError, match="BatchNorm"):
        DPTrainer(
            _BatchNormCritic(), plan, np.arange(64),
            report_factory=lambda steps, eps: privacy_report(plan, steps, eps, seed=0, dataset=None, notes=[]),
        )


def test_warm_start_on_public_data_books_only_the_private_phase(phantom: ImageDataset, tmp_path: Path) -> None:
    options = {**TINY, "max_steps": 4}
    cold = DPWGAN(8.0, **options).fit(phantom)
    public = load("vessel-sim:4", size=384)
    warm = DPWGAN(8.0, public_steps=10, run_dir=tmp_path / "warm", **options).fit(phantom, public_data=public, public_ref="vessel-sim:4")
    entries = BudgetLedger().entries()
    warm_entry = [e for e in entries if e["release_id"] == json.loads((tmp_path / "warm" / "config.json").read_text())["run_id"]]
    assert len(warm_entry) == 1 and warm_entry[0]["dataset_key"] == dataset_key(phantom)
    assert not [e for e in entries if e["dataset_key"] == dataset_key(public)]
    report = json.loads((tmp_path / "warm" / "privacy.json").read_text())
    assert report["steps"] == 4 and report["epsilon"] == pytest.approx(warm_entry[0]["epsilon"])
    assert any("warm start" in note and "vessel-sim:4" in note and "not covered by epsilon" in note for note in report["notes"])
    cold_weights = torch.cat([p.flatten() for p in cold.generator_.parameters()])
    warm_weights = torch.cat([p.flatten() for p in warm.generator_.parameters()])
    assert not torch.allclose(cold_weights, warm_weights)


def test_warm_start_defaults_to_the_vessel_simulator_with_the_private_channel_count(phantom: ImageDataset) -> None:
    rgb = ImageDataset(images=np.repeat(phantom.images, 3, axis=1), segmentations=phantom.segmentations, masks=phantom.masks,
                       subjects=phantom.subjects, sources=phantom.sources, name="rgb")
    model = DPWGAN(8.0, public_steps=5, **{**TINY, "max_steps": 2})
    public = model.public_pairs(None, rgb, 3)
    assert public.n_channels == 3 and public.spatial_shape == (32, 32) and public.segmentations is not None
    model.fit(rgb)
    assert any("privmed vessel simulator" in note for note in model.privacy_report().notes)
