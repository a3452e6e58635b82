"""The seed-000 generator and critic: shapes, layer layout, and fitness for DP-SGD."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privmed.errors import PrivmedError
from privmed.models.wgan import Critic, Generator, split_sample
from privmed.privacy.dpsgd import DPGradient, validate_module


@pytest.mark.parametrize("image_size", [32, 64, 96, 128])
def test_generator_and_critic_fit_every_supported_size(image_size: int) -> None:
    torch.manual_seed(0)
    generator = Generator(latent_dim=16, image_size=image_size, base_channels=4)
    critic = Critic(image_size=image_size, base_channels=4)
    samples = generator(torch.randn(3, 16))
    assert samples.shape == (3, 2, image_size, image_size)
    assert samples.min() >= 0 and samples.max() <= 1
    assert critic(samples).shape == (3, 1)


def test_96_pixel_nets_have_the_paper_layer_counts() -> None:
    generator = Generator(image_size=96, base_channels=4)
    critic = Critic(image_size=96, base_channels=4)
    generator_layers = [m for m in generator.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    assert [type(m) for m in generator_layers] == [nn.Linear] + [nn.ConvTranspose2d] * 5 + [nn.Conv2d]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in generator_layers[1:-1])
    convolutions = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert len(convolutions) == 6
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in convolutions)
    assert isinstance(critic.score, nn.Linear)
    assert {m.negative_slope for m in critic.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_critic_is_accepted_by_dp_sgd_and_its_unclipped_gradient_is_the_plain_one(norm: str) -> None:
    torch.manual_seed(1)
    critic = Critic(image_size=32, base_channels=4, norm=norm).double()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    validate_module(critic)
    rows = torch.rand(5, 2, 32, 32, dtype=torch.float64)
    expected = torch.autograd.grad(critic(rows).sum(), list(critic.parameters()))
    engine = DPGradient(critic, max_grad_norm=1e9, noise_multiplier=0.0, expected_batch_units=1.0)
    with engine.capture():
        losses = critic(rows).squeeze(1)
    engine.backward(losses, torch.arange(5))
    for parameter, grad in zip(critic.parameters(), expected):
        torch.testing.assert_close(parameter.grad, grad, rtol=1e-9, atol=1e-12)


def test_generator_with_batchnorm_is_refused_as_a_dp_critic() -> None:
    with pytest.raises(PrivmedError, match="BatchNorm2d"):
        validate_module(Generator(image_size=32, base_channels=4))


@pytest.mark.parametrize("image_size", [16 * 9, 50, 8])
def test_unsupported_sizes_are_refused(image_size: int) -> None:
    with pytest.raises(PrivmedError, match=f"image_size {image_size}"):
        Critic(image_size=image_size)
    with pytest.raises(PrivmedError, match=f"image_size {image_size}"):
        Generator(image_size=image_size)


def test_unknown_critic_norm_is_refused() -> None:
    with pytest.raises(PrivmedError, match="batch"):
        Critic(norm="batch")


def test_split_sample_thresholds_the_label_channel() -> None:
    samples = torch.tensor([[[[0.2, 0.7]], [[0.49, 0.51]]]])
    images, labels = split_sample(samples)
    assert torch.equal(images, samples[:, :1])
    assert labels.dtype == torch.uint8
    assert labels.tolist() == [[[[0, 1]]]]
    with pytest.raises(PrivmedError):
        split_sample(samples, label_channels=2)
