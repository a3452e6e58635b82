"""Flows: exact inverses, log-determinants that match autograd, conditioning, rebuilding from config."""

from __future__ import annotations

import pytest
import torch

from privmed.errors import DataError, PrivmedError
from privmed.models.flows import ConditionalINN, Glow, InvertibleFlow, TabularFlow, build_flow
from privmed.models.flows.layers import ActNorm


def _randomize(flow: InvertibleFlow, seed: int = 0) -> InvertibleFlow:
    """Move every parameter off its initial value: zero-initialised couplings would be the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return flow.eval()


def _inputs(flow: InvertibleFlow, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    if isinstance(flow, TabularFlow):
        x = torch.randn(n, flow.n_features, generator=generator, dtype=torch.float64)
    else:
        x = torch.rand(n, *flow.image_shape, generator=generator, dtype=torch.float64)
    c = torch.randint(0, flow.n_classes, (n,), generator=generator) if flow.conditional else None
    return x, c


FLOWS = {
    "glow": lambda: Glow((1, 8, 8), levels=2, depth=2, hidden_channels=8),
    "glow-gin": lambda: Glow((2, 4, 4), levels=1, depth=3, hidden_channels=8, coupling="gin"),
    "cinn-glow": lambda: ConditionalINN((1, 8, 8), n_classes=3, levels=2, depth=2, hidden_channels=8, coupling="glow"),
    "cinn-gin": lambda: ConditionalINN((1, 8, 8), n_classes=3, levels=2, depth=2, hidden_channels=8, coupling="gin"),
    "tabular-glow": lambda: TabularFlow(5, depth=3, hidden_features=8, n_classes=2),
    "tabular-gin": lambda: TabularFlow(5, depth=3, hidden_features=8, coupling="gin"),
}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_decode_inverts_encode(name: str) -> None:
    flow = _randomize(FLOWS[name]().double())
    x, c = _inputs(flow, 6)
    z = flow.encode(x, c)
    assert z.shape == (6, flow.latent_dim)
    assert (flow.decode(z, c) - x).abs().max() < 1e-4
    assert (z - x.reshape(6, -1)).abs().max() > 1e-2  # the flow is not the identity


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_log_det_matches_autograd_jacobian(name: str) -> None:
    flow = _randomize(FLOWS[name]().double())
    x, c = _inputs(flow, 1)
    _, log_det = flow(x, c)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow.encode(v.reshape(x.shape), c).reshape(-1), x.reshape(-1))
    sign, expected = torch.linalg.slogdet(jacobian)
    assert sign != 0
    assert log_det.item() == pytest.approx(expected.item(), abs=1e-6)
    if "gin" in name:  # volume preserving up to the ActNorm scales: the same log-det for every input
        other, _ = _inputs(flow, 1, seed=9)
        assert flow(other, c)[1].item() == pytest.approx(log_det.item(), abs=1e-9)


def test_log_prob_is_change_of_variables() -> None:
    flow = _randomize(FLOWS["cinn-glow"]().double())
    x, c = _inputs(flow, 4)
    z, log_det = flow(x, c)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=1)
    assert torch.allclose(flow.log_prob(x, c), normal + log_det)


def test_condition_changes_the_latent_and_is_required() -> None:
    flow = _randomize(FLOWS["cinn-gin"]().double())
    x, _ = _inputs(flow, 2)
    z0 = flow.encode(x, torch.tensor([0, 0]))
    z1 = flow.encode(x, torch.tensor([1, 1]))
    assert (z0 - z1).abs().max() > 1e-3
    with pytest.raises(DataError, match="conditional"):
        flow.encode(x)
    with pytest.raises(DataError, match="0..2"):
        flow.encode(x, torch.tensor([0, 3]))


def test_sample_gives_images_in_range() -> None:
    flow = _randomize(FLOWS["cinn-glow"]())
    images = flow.sample(5, torch.arange(5) % 3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 1


def test_build_flow_rebuilds_from_config() -> None:
    flow = _randomize(FLOWS["cinn-glow"]())
    copy = build_flow(flow.config)
    copy.load_state_dict(flow.state_dict())
    copy.eval()
    x, c = _inputs(flow, 3)
    assert torch.equal(copy.encode(x.float(), c), flow.encode(x.float(), c))
    with pytest.raises(PrivmedError, match="unknown flow kind"):
        build_flow({"kind": "realnvp"})


def test_image_size_must_allow_the_squeezes() -> None:
    with pytest.raises(PrivmedError, match="divisible by 8"):
        Glow((1, 28, 28), levels=3)


def test_actnorm_standardizes_first_training_batch() -> None:
    layer = ActNorm(3).train()
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.2]).view(1, 3, 1, 1) + 3.0
    y, _ = layer(x)
    per_channel = y.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std(dim=1), torch.ones(3), atol=1e-4)
    assert bool(layer.initialized)
