"""The one-backward DP-SGD engine against plain autograd, run unit by unit, and against Opacus."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import pytest
import torch
from opacus import GradSampleModule
from torch import Tensor, nn

from privmed.errors import PrivacyError
from privmed.privacy.dpsgd import ClippingStats, DPGradient, validate_module

Loss = Callable[[Tensor], Tensor]


def small_critic(inplace: bool = True) -> nn.Module:
    """Conv + GroupNorm + Linear; the in-place activation checks the engine's first-layer leaf."""
    return nn.Sequential(
        nn.Conv2d(2, 4, kernel_size=3, stride=2, padding=1),
        nn.GroupNorm(2, 4),
        nn.LeakyReLU(0.2, inplace=inplace),
        nn.Conv2d(4, 6, kernel_size=4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 1),
    )


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, 3))


def critic_loss(scores: Tensor) -> Tensor:
    return scores.squeeze(-1)


def mlp_loss(outputs: Tensor) -> Tensor:
    return (outputs - 0.3).pow(2).sum(-1)


def parameter_gradients(model: nn.Module, rows: Tensor, loss: Loss) -> list[Tensor]:
    """Plain autograd gradient of the summed loss of ``rows``."""
    parameters = list(model.parameters())
    if rows.shape[0] == 0:
        return [torch.zeros_like(p) for p in parameters]
    return list(torch.autograd.grad(loss(model(rows)).sum(), parameters))


def reference_gradients(model: nn.Module, rows: Tensor, loss: Loss, unit_ids: Tensor, clip: float, expected: float) -> tuple[list[Tensor], Tensor]:
    """DP-SGD by microbatches: each unit's gradient separately, clipped, summed, plus the public rows."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    norms = []
    for unit in torch.unique(unit_ids[unit_ids >= 0]):
        grads = parameter_gradients(model, rows[unit_ids == unit], loss)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        norms.append(norm)
        factor = min(1.0, clip / float(norm))
        total = [t + factor * g / expected for t, g in zip(total, grads)]
    public = parameter_gradients(model, rows[unit_ids == -1], loss)
    return [t + g for t, g in zip(total, public)], torch.stack(norms) if norms else torch.zeros(0)


def engine_gradients(model: nn.Module, batches: Sequence[Tensor], loss: Loss, unit_ids: Tensor, **options) -> tuple[list[Tensor], ClippingStats]:
    """The engine's gradient of ``model`` (left untouched) for rows given as one or several forwards."""
    options = {"noise_multiplier": 0.0, "expected_batch_units": 4.0, "seed": 0} | options
    owned = copy.deepcopy(model)
    engine = DPGradient(owned, **options)
    with engine.capture():
        losses = torch.cat([loss(owned(batch)) for batch in batches])
    stats = engine.backward(losses, unit_ids)
    return [p.grad for p in owned.parameters()], stats


def between_middle_norms(norms: Tensor) -> float:
    """A clipping bound that clips about half of the units and ties with none."""
    ordered = norms.sort().values
    return float(ordered[len(ordered) // 2 - 1 : len(ordered) // 2 + 1].mean())


RECORD_UNITS = torch.tensor([0, 1, 2, 3, 4, 5, -1, -1])
GROUPED_UNITS = torch.tensor([7, 7, 0, 5, 0, 7, -1, 2])


def assert_close_lists(actual: Sequence[Tensor], expected: Sequence[Tensor], tol: float = 1e-9) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol)


@pytest.mark.parametrize("strategy", ["auto", "ghost", "materialize"])
@pytest.mark.parametrize("unit_ids", [RECORD_UNITS, GROUPED_UNITS], ids=["record", "grouped"])
@pytest.mark.parametrize(
    ("make_model", "loss", "row_shape"),
    [(small_critic, critic_loss, (2, 8, 8)), (small_mlp, mlp_loss, (5,))],
    ids=["critic", "mlp"],
)
def test_gradient_equals_microbatch_dp_sgd(make_model, loss, row_shape, unit_ids: Tensor, strategy: str) -> None:
    torch.manual_seed(0)
    model = make_model().double()
    rows = torch.randn(len(unit_ids), *row_shape, dtype=torch.float64)
    _, norms = reference_gradients(model, rows, loss, unit_ids, clip=1e9, expected=1.0)
    clip = between_middle_norms(norms)
    expected_grads, _ = reference_gradients(model, rows, loss, unit_ids, clip=clip, expected=4.0)
    # Two forwards in one capture, like a critic's real and fake halves.
    grads, stats = engine_gradients(model, [rows[:5], rows[5:]], loss, unit_ids, max_grad_norm=clip, norm_strategy=strategy)
    assert_close_lists(grads, expected_grads)
    assert stats.n_units == len(norms)
    assert stats.mean_norm == pytest.approx(float(norms.mean()), rel=1e-9)
    assert stats.clipped_fraction == pytest.approx(float((norms > clip).double().mean()))


def test_float32_gradient_matches_to_1e5() -> None:
    torch.manual_seed(1)
    model = small_critic()
    rows = torch.randn(8, 2, 8, 8)
    expected_grads, _ = reference_gradients(model, rows, critic_loss, GROUPED_UNITS, clip=0.5, expected=4.0)
    grads, _ = engine_gradients(model, [rows], critic_loss, GROUPED_UNITS, max_grad_norm=0.5)
    assert_close_lists(grads, expected_grads, tol=1e-5)


def test_no_unit_gradient_exceeds_the_clipping_bound() -> None:
    torch.manual_seed(2)
    model = small_critic().double()
    rows = torch.randn(8, 2, 8, 8, dtype=torch.float64) * 5
    clip = 0.05
    clipped = 0
    for unit in torch.unique(GROUPED_UNITS[GROUPED_UNITS >= 0]):
        members = rows[GROUPED_UNITS == unit]
        grads, stats = engine_gradients(model, [members], critic_loss, torch.full((len(members),), int(unit)), max_grad_norm=clip, expected_batch_units=1.0)
        norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        assert norm <= clip * (1 + 1e-9)
        clipped += stats.clipped_fraction == 1.0
        if stats.clipped_fraction == 1.0:
            assert norm == pytest.approx(clip, rel=1e-9)
    assert clipped > 0


@pytest.mark.parametrize(
    ("layer", "row_shape"),
    [
        (nn.Conv1d(3, 4, kernel_size=3, stride=2, padding=2, dilation=2), (3, 11)),
        (nn.Conv2d(4, 6, kernel_size=3, padding="same", padding_mode="reflect", groups=2), (4, 6, 5)),
        (nn.Conv3d(2, 3, kernel_size=(2, 3, 2), stride=(1, 2, 2), padding=1, bias=False), (2, 4, 5, 4)),
        (nn.InstanceNorm2d(3, affine=True), (3, 4, 4)),
        (nn.Linear(4, 3), (6, 4)),
    ],
    ids=["conv1d-dilated", "conv2d-grouped-reflect", "conv3d", "instancenorm", "linear-sequence"],
)
@pytest.mark.parametrize("strategy", ["ghost", "materialize"])
def test_layer_zoo_matches_microbatch(layer: nn.Module, row_shape: tuple[int, ...], strategy: str) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten()).double()
    rows = torch.randn(len(GROUPED_UNITS), *row_shape, dtype=torch.float64)
    loss = lambda out: (out - 0.1).pow(2).sum(-1)  # noqa: E731
    expected_grads, _ = reference_gradients(model, rows, loss, GROUPED_UNITS, clip=0.3, expected=4.0)
    grads, _ = engine_gradients(model, [rows], loss, GROUPED_UNITS, max_grad_norm=0.3, norm_strategy=strategy)
    assert_close_lists(grads, expected_grads)


def test_embedding_with_padding_index_matches_microbatch() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Embedding(6, 3, padding_idx=0), nn.Flatten(), nn.Linear(12, 1)).double()
    tokens = torch.randint(0, 6, (len(GROUPED_UNITS), 4))
    expected_grads, _ = reference_gradients(model, tokens, critic_loss, GROUPED_UNITS, clip=0.2, expected=4.0)
    grads, _ = engine_gradients(model, [tokens], critic_loss, GROUPED_UNITS, max_grad_norm=0.2)
    assert_close_lists(grads, expected_grads)
    assert torch.all(grads[0][0] == 0)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_per_sample_gradients_match_opacus_grad_sample_module() -> None:
    torch.manual_seed(5)
    model = small_critic(inplace=False).double()  # Opacus's hooks refuse in-place activations
    rows = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    sampled = GradSampleModule(copy.deepcopy(model), batch_first=True, loss_reduction="sum", force_functorch=False)
    critic_loss(sampled(rows)).sum().backward()
    opacus_rows = [p.grad_sample for p in sampled.parameters()]
    # One private row per call, no clipping, no scaling: the engine's gradient is that row's gradient.
    for index in range(len(rows)):
        grads, _ = engine_gradients(model, [rows[index : index + 1]], critic_loss, torch.tensor([0]), max_grad_norm=1e9, expected_batch_units=1.0)
        assert_close_lists(grads, [g[index] for g in opacus_rows])
    # The whole batch at once, clipped with norms taken from Opacus's per-sample gradients.
    opacus_norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in opacus_rows))
    clip = between_middle_norms(opacus_norms)
    factors = (clip / opacus_norms).clamp(max=1.0)
    expected_grads = [torch.tensordot(factors, g, dims=1) / 4.0 for g in opacus_rows]
    grads, stats = engine_gradients(model, [rows], critic_loss, torch.arange(6), max_grad_norm=clip)
    assert_close_lists(grads, expected_grads)
    assert stats.mean_norm == pytest.approx(float(opacus_norms.mean()), rel=1e-9)


def noise_only(seed: int | None, shape: tuple[int, int] = (100, 100), **options) -> tuple[DPGradient, list[Tensor]]:
    model = nn.Linear(*shape)
    engine = DPGradient(model, max_grad_norm=2.0, noise_multiplier=1.5, expected_batch_units=3.0, seed=seed, **options)
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return engine, [p.grad.clone() for p in model.parameters()]


def test_noise_has_the_calibrated_std_and_is_reproducible_from_seed() -> None:
    engine, grads = noise_only(seed=11)
    values = torch.cat([g.flatten() for g in grads])
    assert float(values.std()) == pytest.approx(1.5 * 2.0 / 3.0, rel=0.03)
    assert abs(float(values.mean())) < 0.03
    _, again = noise_only(seed=11)
    _, other = noise_only(seed=12)
    assert_close_lists(again, grads, tol=0)
    assert not torch.equal(other[0], grads[0])


def test_noise_drawn_ahead_in_the_background_is_the_noise_drawn_in_turn() -> None:
    def three_steps(prefetch: bool) -> list[Tensor]:
        model = nn.Linear(30, 20)
        engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=2.0, seed=5, prefetch=prefetch)
        grads = []
        for _ in range(3):
            engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
            grads.append(model.weight.grad.clone())
        engine.close()
        return grads

    ahead, in_turn = three_steps(True), three_steps(False)
    assert_close_lists(ahead, in_turn, tol=0)
    assert not torch.equal(ahead[0], ahead[1]) and not torch.equal(ahead[1], ahead[2])  # every step draws afresh


def test_noise_state_round_trip_resumes_the_same_draws() -> None:
    model = nn.Linear(4, 2)
    engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=2.0, seed=3)
    state = engine.state_dict()
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    first = model.weight.grad.clone()
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert not torch.equal(model.weight.grad, first)
    later = engine.state_dict()  # taken while the third step's noise is drawn ahead
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    third = model.weight.grad.clone()
    engine.load_state_dict(state)
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert torch.equal(model.weight.grad, first)
    engine.load_state_dict(later)
    engine.backward(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert torch.equal(model.weight.grad, third)


def test_batch_of_public_rows_only_gets_their_plain_gradient_and_no_units() -> None:
    torch.manual_seed(6)
    model = small_critic()
    rows = torch.randn(4, 2, 8, 8)
    expected_grads = parameter_gradients(model, rows, critic_loss)
    grads, stats = engine_gradients(model, [rows], critic_loss, torch.full((4,), -1), max_grad_norm=1.0)
    assert_close_lists(grads, expected_grads, tol=1e-5)
    assert stats == ClippingStats(n_units=0, clipped_fraction=0.0, mean_norm=0.0)


def test_empty_batch_gets_noise_only() -> None:
    model = small_mlp()
    engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_units=2.0, seed=0)
    with engine.capture():
        losses = mlp_loss(model(torch.zeros(0, 5)))
    stats = engine.backward(losses, torch.zeros(0, dtype=torch.long))
    assert stats.n_units == 0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


def test_outside_capture_the_module_is_plain_and_passes_gradients_to_its_input() -> None:
    model = small_critic()
    DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=2.0, seed=0)
    rows = torch.randn(3, 2, 8, 8, requires_grad=True)
    model(rows).sum().backward()
    assert rows.grad is not None and rows.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


def test_close_gives_the_parameters_back_to_autograd() -> None:
    model = small_mlp()
    engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=2.0)
    engine.close()
    assert all(p.requires_grad for p in model.parameters())


def test_a_layer_applied_twice_per_row_is_refused() -> None:
    layer = nn.Linear(3, 3)
    engine = DPGradient(layer, max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_units=1.0)
    with engine.capture():
        losses = layer(layer(torch.randn(2, 3))).sum(-1)
    with pytest.raises(PrivacyError, match="saw 4 rows"):
        engine.backward(losses, torch.arange(2))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 1)), r"layer '1' \(BatchNorm2d\) mixes the rows"),
        (nn.Sequential(nn.Linear(2, 2), nn.InstanceNorm1d(2, track_running_stats=True)), r"layer '1' \(InstanceNorm1d\) keeps running statistics"),
        (nn.Sequential(nn.Linear(2, 2), nn.PReLU()), r"layer '1' \(PReLU\) has trainable parameters"),
        (nn.Sequential(nn.ConvTranspose2d(2, 2, 2)), r"layer '0' \(ConvTranspose2d\)"),
    ],
    ids=["batchnorm", "instancenorm-running-stats", "prelu", "conv-transpose"],
)
def test_modules_unfit_for_per_unit_clipping_are_refused_by_name(model: nn.Module, message: str) -> None:
    with pytest.raises(PrivacyError, match=message):
        validate_module(model)
    with pytest.raises(PrivacyError, match=message):
        DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0)
    assert all(p.requires_grad for p in model.parameters())


def test_shared_parameters_are_refused() -> None:
    first = nn.Linear(2, 2)
    second = nn.Linear(2, 2)
    second.weight = first.weight
    with pytest.raises(PrivacyError, match="shares a parameter"):
        validate_module(nn.Sequential(first, second))


@pytest.mark.parametrize(
    "options",
    [{"max_grad_norm": 0.0}, {"noise_multiplier": -1.0}, {"expected_batch_units": 0.0}, {"norm_strategy": "fast"}],
)
def test_invalid_settings_are_refused(options: dict) -> None:
    settings = {"max_grad_norm": 1.0, "noise_multiplier": 1.0, "expected_batch_units": 1.0} | options
    with pytest.raises(PrivacyError):
        DPGradient(nn.Linear(2, 2), **settings)


def test_mismatched_unit_ids_are_refused() -> None:
    model = nn.Linear(2, 1)
    engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0)
    with engine.capture():
        losses = model(torch.randn(3, 2)).squeeze(-1)
    with pytest.raises(PrivacyError, match="unit_ids"):
        engine.backward(losses, torch.arange(2))


def test_backward_without_a_captured_forward_is_refused() -> None:
    model = nn.Linear(2, 1)
    engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_units=1.0)
    losses = model(torch.randn(3, 2, requires_grad=True)).squeeze(-1)
    with pytest.raises(PrivacyError, match="capture"):
        engine.backward(losses, torch.arange(3))


def test_an_input_changed_in_place_after_the_forward_is_detected() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    engine = DPGradient(model, max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_units=1.0)
    with engine.capture():
        hidden = model[0](torch.randn(3, 2))
        losses = model[1](hidden).squeeze(-1)
    with torch.no_grad():
        hidden.mul_(2)  # autograd saved no copy of it (the weights need no gradient), so only the engine can tell
    with pytest.raises(RuntimeError, match=r"input of layer '1' \(Linear\) was modified in place"):
        engine.backward(losses, torch.arange(3))
