"""AC-GAN: samples carry the requested class, accounting matches the calibration, exact resume, refusals,
the class head learns from real rows only, the discriminator's membership score, and Bie et al.'s recipe
(k discriminator steps per generator step, samples from the generator's moving average)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivacyError, PrivmedError
from privmed.evaluate.attacks import load_member_scorer, model_scores
from privmed.evaluate.classifier import predict_proba, train_classifier
from privmed.methods import acgan
from privmed.methods.acgan import ACGAN, load_discriminator, score_members
from privmed.methods.trainer import PrivateGradient
from privmed.models.acgan import ACDiscriminator, ConditionalGenerator
from privmed.privacy.calibration import default_delta
from privmed.privacy.plan import plan_training
from privmed.runs import RunDirectory
from tests.privacy.independent_accounting import pld_epsilon, rdp_epsilon

# Tiny networks: 8 channels at the widest level's base, a 16-d latent.
TINY = {"batch_size": 16, "generator_channels": 8, "discriminator_channels": 8, "latent_dim": 16}


def with_marked_class(data: ImageDataset) -> ImageDataset:
    """phantom-classes with the abnormal class made obvious (a bright top band).

    The phantom's own abnormal opacity is faint on purpose; a tiny GAN needs minutes to learn it,
    while the band is learnt in a few seconds, which is what a unit test can afford.
    """
    images = data.images.copy()
    images[data.labels == 1, :, :8, :] = 1.0
    return dataclasses.replace(data, images=images)


@pytest.fixture(scope="module")
def phantom() -> ImageDataset:
    return load("phantom-classes:train")


@pytest.fixture(scope="module")
def trained_run(phantom: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[ACGAN, Path]:
    """A tiny non-private AC-GAN trained on the marked-class phantom long enough to learn the classes.

    150 steps: with the class head learning from real rows only, 100 steps left one class half learnt.
    """
    run_dir = tmp_path_factory.mktemp("acgan") / "run"
    model = ACGAN(float("inf"), max_steps=150, learning_rate=2e-3, run_dir=run_dir, **{**TINY, "batch_size": 32}).fit(with_marked_class(phantom))
    return model, run_dir


def test_conditional_samples_carry_the_requested_class_for_a_classifier_trained_on_real_data(
    phantom: ImageDataset, trained_run: tuple[ACGAN, Path]
) -> None:
    train = with_marked_class(phantom)
    test = with_marked_class(load("phantom-classes:test"))
    judge = train_classifier(train, epochs=2, seed=0)
    assert (predict_proba(judge, test).argmax(1) == test.labels).mean() > 0.9
    model, _ = trained_run
    for wanted in (0, 1):
        samples = model.sample(100, seed=1, class_label=wanted)
        assert np.all(samples.labels == wanted)
        assert (predict_proba(judge, samples).argmax(1) == wanted).mean() > 0.8


def test_dp_run_spends_exactly_what_the_accountant_gives_and_writes_its_run(phantom: ImageDataset, tmp_path: Path) -> None:
    model = ACGAN(4.0, max_steps=6, checkpoint_every=3, run_dir=tmp_path / "run", data_ref="phantom-classes:train", **TINY).fit(phantom)
    report = model.privacy_report()
    n = len(phantom)
    assert report.unit == "image" and report.n_units == n and report.steps == 6
    assert report.delta == pytest.approx(default_delta(n))
    assert report.sample_rate == pytest.approx(16 / n)
    args = (16 / n, report.noise_multiplier, 6, report.delta)
    assert pld_epsilon(*args) <= report.epsilon <= 1.05 * rdp_epsilon(*args)  # dp-accounting, not privmed
    assert report.epsilon <= 4.0
    written = json.loads((tmp_path / "run" / "privacy.json").read_text())
    assert written["epsilon"] == pytest.approx(report.epsilon)
    assert len((tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 checkpoints
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["epoch_0001.png"]
    # A DP run does not sample by the private class frequencies.
    np.testing.assert_allclose(ACGAN.load(tmp_path / "run").class_frequencies_, [0.5, 0.5])


class _Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights_and_epsilon(phantom: ImageDataset, tmp_path: Path) -> None:
    options = dict(max_steps=6, checkpoint_every=3, reproducible=True, **TINY)  # exact resume: a reproducible run
    reference = ACGAN(4.0, run_dir=tmp_path / "whole", **options).fit(phantom)

    def kill(row: dict) -> None:
        raise _Killed

    with pytest.raises(_Killed):
        ACGAN(4.0, run_dir=tmp_path / "killed", on_epoch=kill, **options).fit(phantom)
    with pytest.raises(PrivmedError, match="did not finish"):
        ACGAN.load(tmp_path / "killed")
    resumed = ACGAN.from_run(tmp_path / "killed").fit(phantom)
    assert resumed.privacy_report().epsilon == pytest.approx(reference.privacy_report().epsilon, rel=1e-12)
    for name, tensor in reference.generator_.state_dict().items():
        torch.testing.assert_close(resumed.generator_.state_dict()[name], tensor, rtol=0, atol=0)
    loaded = ACGAN.load(tmp_path / "killed")
    np.testing.assert_array_equal(loaded.sample(4, seed=3).images, resumed.sample(4, seed=3).images)


def test_non_private_run_samples_by_the_training_class_frequencies(phantom: ImageDataset) -> None:
    skewed = phantom.subset(np.concatenate([np.flatnonzero(phantom.labels == 0), np.flatnonzero(phantom.labels == 1)[:64]]))
    model = ACGAN(float("inf"), max_steps=1, **TINY).fit(skewed)
    expected = np.bincount(skewed.labels) / len(skewed)
    np.testing.assert_allclose(model.class_frequencies_, expected)
    labels = model.sample(2000, seed=0).labels
    assert abs((labels == 1).mean() - expected[1]) < 0.04
    assert model.privacy_report().epsilon == float("inf")


def test_morph_rows_share_a_latent_and_move_from_one_class_to_the_other(phantom: ImageDataset) -> None:
    model = ACGAN(float("inf"), max_steps=1, **TINY).fit(phantom)
    grid = model.morph("normal", "abnormal", steps=5, n_latents=3)
    assert len(grid) == 15
    assert list(grid.labels[:5]) == [0, 0, 0, 1, 1]  # nearer class; 50/50 counts as the first
    ends = model.sample(1, seed=None, class_label=0)
    assert ends.images.shape[1:] == grid.images.shape[1:]
    with pytest.raises(PrivmedError, match="unknown class"):
        model.morph(0, "sick")


def test_unlabelled_data_is_refused(phantom: ImageDataset, tmp_path: Path) -> None:
    unlabelled = dataclasses.replace(phantom, labels=None, class_names=None)
    with pytest.raises(DataError, match="no class labels"):
        ACGAN(1.0, max_steps=1, run_dir=tmp_path / "run", **TINY).fit(unlabelled)
    assert not (tmp_path / "run").exists()


def test_a_discriminator_with_batchnorm_is_refused(phantom: ImageDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    class BatchNormDiscriminator(acgan.ACDiscriminator):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.features.insert(1, nn.BatchNorm2d(self.features[0].out_channels))

    monkeypatch.setattr(acgan, "ACDiscriminator", BatchNormDiscriminator)
    with pytest.raises(PrivacyError, match="BatchNorm"):
        ACGAN(1.0, max_steps=1, **TINY).fit(phantom)


def _discriminator_change_after_a_step_on_generated_rows_only(class_loss_on_generated: bool) -> dict[str, bool]:
    """Which discriminator parameters one non-private step changes when its Poisson batch holds no real row."""
    torch.manual_seed(0)
    generator, discriminator = ConditionalGenerator(2, 1, 28, latent_dim=16, base_channels=8), ACDiscriminator(2, 1, 28, base_channels=8)
    task = acgan._ACGANTask(
        generator, discriminator, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), np.arange(4),
        n_fake=8, learning_rate=1e-2, class_weight=1.0, class_loss_on_generated=class_loss_on_generated, seed=0,
    )
    plan = plan_training(target_epsilon=float("inf"), delta=0.1, unit="image", record_kind="image", n_units=4, batch_size=2, max_steps=1)
    before = {name: tensor.clone() for name, tensor in discriminator.named_parameters()}
    task.private_step(np.zeros(0, dtype=np.int64), 0, PrivateGradient(discriminator, plan, seed=0))
    return {name: not torch.equal(before[name], tensor) for name, tensor in discriminator.named_parameters()}


def test_generated_rows_train_the_real_fake_head_but_not_the_class_head() -> None:
    changed = _discriminator_change_after_a_step_on_generated_rows_only(class_loss_on_generated=False)
    assert changed["real_fake.weight"] and changed["features.0.weight"]
    assert not changed["classes.weight"] and not changed["classes.bias"]
    seed_behaviour = _discriminator_change_after_a_step_on_generated_rows_only(class_loss_on_generated=True)
    assert seed_behaviour["classes.weight"] and seed_behaviour["classes.bias"]


def test_the_privacy_report_says_where_the_class_head_learns(phantom: ImageDataset) -> None:
    default = ACGAN(4.0, max_steps=1, **TINY).fit(phantom).privacy_report().notes
    assert any("class head learns from real images only" in note for note in default)
    seed_like = ACGAN(4.0, max_steps=1, class_loss_on_generated=True, **TINY).fit(phantom)
    assert any("generated images too, as in seed 001" in note for note in seed_like.privacy_report().notes)
    assert seed_like.get_params()["class_loss_on_generated"] is True


def test_member_score_is_the_real_fake_logit_plus_the_class_log_probability(phantom: ImageDataset, trained_run: tuple[ACGAN, Path]) -> None:
    _, run_dir = trained_run
    data = with_marked_class(load("phantom-classes:test", n=64))
    flipped = dataclasses.replace(data, labels=1 - data.labels)
    assert load_member_scorer(run_dir) is score_members
    with_labels, with_wrong_labels = model_scores(run_dir, data), score_members(run_dir, flipped)
    without_labels = score_members(run_dir, data, use_labels=False)
    np.testing.assert_array_equal(score_members(run_dir, flipped, use_labels=False), without_labels)
    with torch.no_grad():
        real_fake, class_logits = load_discriminator(run_dir)(torch.from_numpy(data.images))
    np.testing.assert_allclose(without_labels, real_fake.numpy(), rtol=1e-6)
    # Two classes: log p(true) - log p(flipped) is the class logit margin, and the trained class head gets most right.
    margin = (class_logits[:, 1] - class_logits[:, 0]).numpy() * np.where(data.labels == 1, 1, -1)
    np.testing.assert_allclose(with_labels - with_wrong_labels, margin, rtol=1e-4, atol=1e-4)
    assert (with_labels > with_wrong_labels).mean() > 0.9
    with pytest.raises(DataError, match="trained on"):
        score_members(run_dir, load("phantom:train", n=2, size=32))
    with pytest.raises(DataError, match="class labels"):
        score_members(run_dir, dataclasses.replace(data, labels=data.labels + 2, class_names=None))


def _task(discriminator_steps: int, generator_ema: float | None) -> tuple[acgan._ACGANTask, PrivateGradient]:
    """A tiny non-private AC-GAN task on four random images, and the gradient its steps use."""
    torch.manual_seed(0)
    generator, discriminator = ConditionalGenerator(2, 1, 28, latent_dim=16, base_channels=8), ACDiscriminator(2, 1, 28, base_channels=8)
    task = acgan._ACGANTask(
        generator, discriminator, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), np.arange(4),
        n_fake=8, learning_rate=1e-2, class_weight=1.0, class_loss_on_generated=False, seed=0,
        discriminator_steps=discriminator_steps, generator_ema=generator_ema,
    )
    plan = plan_training(target_epsilon=float("inf"), delta=0.1, unit="image", record_kind="image", n_units=4, batch_size=2, max_steps=8)
    return task, PrivateGradient(discriminator, plan, seed=0)


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.named_parameters()}


def test_the_generator_moves_only_on_every_kth_discriminator_step() -> None:
    task, gradient = _task(discriminator_steps=3, generator_ema=None)
    for step in range(7):
        generator_before, discriminator_before = _weights(task.generator), _weights(task.private_module)
        metrics = task.private_step(np.array([0, 2]), step, gradient)
        generator_moved = any(not torch.equal(generator_before[n], t) for n, t in task.generator.named_parameters())
        assert generator_moved == (step in (2, 5)) == ("generator_loss" in metrics), step
        assert any(not torch.equal(discriminator_before[n], t) for n, t in task.private_module.named_parameters())


def test_k_discriminator_steps_per_generator_step_are_what_the_accountant_counts(phantom: ImageDataset, tmp_path: Path) -> None:
    model = ACGAN(4.0, max_steps=7, discriminator_steps=3, run_dir=tmp_path / "run", **TINY).fit(phantom)
    report = model.privacy_report()
    assert report.steps == 7
    args = (16 / len(phantom), report.noise_multiplier, 7, report.delta)
    assert pld_epsilon(*args) <= report.epsilon <= 1.05 * rdp_epsilon(*args) <= 1.05 * 4.0  # dp-accounting, not privmed
    task_state = RunDirectory(tmp_path / "run").load_checkpoint()["task"]
    adam_steps = {name: {float(s["step"]) for s in task_state[name]["state"].values()} for name in ("generator_optimizer", "discriminator_optimizer")}
    assert adam_steps == {"generator_optimizer": {2.0}, "discriminator_optimizer": {7.0}}
    assert any("3 discriminator steps per generator step" in note and "7 discriminator steps, 2 generator steps" in note for note in report.notes)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["params"]["discriminator_steps"] == 3


def test_the_moving_average_is_the_exponential_average_of_the_generator_after_each_of_its_steps() -> None:
    decay = 0.8
    task, gradient = _task(discriminator_steps=2, generator_ema=decay)
    expected: dict[str, torch.Tensor] | None = None
    for step in range(8):
        task.private_step(np.array([1, 3]), step, gradient)
        if step % 2 == 1:  # a generator step: fold its weights in (the first one starts the average)
            current = _weights(task.generator)
            expected = current if expected is None else {n: decay * expected[n] + (1 - decay) * current[n] for n in current}
    averaged = dict(task.average.named_parameters())
    for name, tensor in expected.items():
        torch.testing.assert_close(averaged[name].detach(), tensor, rtol=1e-5, atol=1e-6)
    assert not torch.equal(averaged["layers.0.weight"], task.generator.layers[0].weight)  # not simply the last generator
    for (name, buffer), raw in zip(task.average.named_buffers(), task.generator.buffers()):
        torch.testing.assert_close(buffer, raw, msg=name)  # BatchNorm statistics: copied from the generator


def test_a_fitted_loaded_and_resumed_model_samples_from_the_moving_average(phantom: ImageDataset, tmp_path: Path) -> None:
    options = dict(max_steps=6, checkpoint_every=3, reproducible=True, discriminator_steps=2, generator_ema=0.5, **TINY)
    reference = ACGAN(4.0, run_dir=tmp_path / "whole", **options).fit(phantom)
    state = RunDirectory(tmp_path / "whole").load_checkpoint()["task"]
    raw = ConditionalGenerator(2, 1, phantom.spatial_shape[0], 16, 8)
    raw.load_state_dict(state["generator"])
    for name, tensor in reference.generator_.state_dict().items():
        torch.testing.assert_close(tensor, state["generator_ema"][name], rtol=0, atol=0)
    assert not torch.equal(reference.generator_.layers[0].weight, raw.layers[0].weight)
    latent, labels = torch.randn(4, 16, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 0, 1])
    from_average = acgan.generate_images(reference.generator_, latent, acgan.one_hot(labels, 2))
    assert not torch.allclose(from_average, acgan.generate_images(raw, latent, acgan.one_hot(labels, 2)))
    loaded = ACGAN.load(tmp_path / "whole")
    for name, tensor in loaded.generator_.state_dict().items():
        torch.testing.assert_close(tensor, state["generator_ema"][name], rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.sample(5, seed=2).images, reference.sample(5, seed=2).images)

    def kill(row: dict) -> None:
        raise _Killed

    with pytest.raises(_Killed):
        ACGAN(4.0, run_dir=tmp_path / "killed", on_epoch=kill, **options).fit(phantom)
    resumed = ACGAN.from_run(tmp_path / "killed").fit(phantom)  # the average continues from the checkpoint's
    for name, tensor in reference.generator_.state_dict().items():
        torch.testing.assert_close(resumed.generator_.state_dict()[name], tensor, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"discriminator_steps": 0}, "discriminator_steps must be an integer >= 1"),
        ({"discriminator_steps": 2.5}, "discriminator_steps must be an integer >= 1"),
        ({"generator_ema": 1.0}, r"generator_ema .* must lie in \[0, 1\)"),
        ({"generator_ema": -0.1}, r"generator_ema .* must lie in \[0, 1\)"),
    ],
)
def test_bad_recipe_options_are_refused_before_anything_is_written(
    phantom: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict, message: str
) -> None:
    monkeypatch.setenv("PRIVMED_LEDGER", str(tmp_path / "ledger.json"))
    with pytest.raises(PrivmedError, match=message):
        ACGAN(1.0, max_steps=2, run_dir=tmp_path / "run", **options, **TINY).fit(phantom)
    assert not (tmp_path / "run").exists() and not (tmp_path / "ledger.json").exists()


def _gradient_norm_of_a_step_on_generated_rows_only(clip_generated: bool) -> tuple[float, float]:
    """The discriminator's DP gradient norm after one step whose Poisson batch holds no real row, and the bound
    that clipping each generated row to C gives it plus the noise's expected norm (sigma C / B sqrt(d))."""
    torch.manual_seed(0)
    generator, discriminator = ConditionalGenerator(2, 1, 28, latent_dim=16, base_channels=8), ACDiscriminator(2, 1, 28, base_channels=8)
    task = acgan._ACGANTask(
        generator, discriminator, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), np.arange(4),
        n_fake=8, learning_rate=1e-2, class_weight=1.0, class_loss_on_generated=False, seed=0, clip_generated=clip_generated,
    )
    plan = plan_training(target_epsilon=1e5, delta=1e-3, unit="image", record_kind="image", n_units=4, batch_size=2, max_steps=1, max_grad_norm=1e-3)
    gradient = PrivateGradient(discriminator, plan, seed=0)
    norms = []
    backward = gradient.backward

    def recorded(losses: torch.Tensor, unit_ids: torch.Tensor):
        stats = backward(losses, unit_ids)
        norms.append(float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in discriminator.parameters() if p.grad is not None))))
        return stats

    gradient.backward = recorded
    task.private_step(np.zeros(0, dtype=np.int64), 0, gradient)
    gradient.close()
    dimension = sum(p.numel() for p in discriminator.parameters())
    noise = plan.noise_multiplier * plan.max_grad_norm / plan.expected_batch_units * math.sqrt(dimension)
    return norms[0], 8 * plan.max_grad_norm / plan.expected_batch_units + 1.2 * noise


def test_clip_generated_bounds_the_generated_rows_gradient_like_real_units() -> None:
    clipped, bound = _gradient_norm_of_a_step_on_generated_rows_only(clip_generated=True)
    assert clipped <= bound
    unclipped, _ = _gradient_norm_of_a_step_on_generated_rows_only(clip_generated=False)
    assert unclipped > 10 * bound  # seed 001's scaling: the generated rows' mean gradient, far above what a real unit may give


def test_clip_generated_is_stated_as_a_departure_and_leaves_epsilon_to_the_accountant(phantom: ImageDataset) -> None:
    model = ACGAN(2.0, max_steps=3, clip_generated=True, **TINY).fit(phantom)
    report = model.privacy_report()
    assert any("generated row's discriminator gradient is clipped" in note for note in report.notes)
    assert report.steps == 3  # generated rows clipped as units beyond the private ones add no accounted step or unit
    args = (16 / len(phantom), report.noise_multiplier, 3, report.delta)
    assert pld_epsilon(*args) <= report.epsilon <= 1.05 * rdp_epsilon(*args) <= 1.05 * 2.0  # dp-accounting, not privmed
