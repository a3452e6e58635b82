"""Seed-001 AC-GAN networks: shapes at every supported size, the seed's layer counts, DP-SGD readiness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privmed.errors import PrivmedError
from privmed.models.acgan import ACDiscriminator, ConditionalGenerator, build_size, one_hot
from privmed.privacy.dpsgd import validate_module


@pytest.mark.parametrize(("image_size", "built"), [(28, 32), (32, 32), (64, 64), (96, 128), (128, 128)])
def test_both_networks_work_at_every_supported_size(image_size: int, built: int) -> None:
    generator = ConditionalGenerator(3, out_channels=2, image_size=image_size, base_channels=4)
    discriminator = ACDiscriminator(3, in_channels=2, image_size=image_size, base_channels=4)
    with torch.no_grad():
        images = generator(torch.randn(5, 100), one_hot(torch.tensor([0, 1, 2, 0, 1]), 3))
        real_fake, class_logits = discriminator(images)
    assert build_size(image_size) == built
    assert images.shape == (5, 2, image_size, image_size)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert real_fake.shape == (5,) and class_logits.shape == (5, 3)


def test_at_64_pixels_the_networks_have_the_seeds_five_layers() -> None:
    generator = ConditionalGenerator(3, out_channels=9, image_size=64)
    discriminator = ACDiscriminator(3, in_channels=9, image_size=64)
    transposed = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    convolutions = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in transposed] == [512, 256, 128, 64, 9]
    assert transposed[0].in_channels == 100 + 3
    assert [m.out_channels for m in convolutions] == [64, 128, 256, 512, 64]


def test_the_discriminator_has_no_batchnorm_and_dp_sgd_accepts_it() -> None:
    discriminator = ACDiscriminator(4, in_channels=1, image_size=28, base_channels=8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
    validate_module(discriminator)


def test_a_mixed_condition_is_accepted_and_a_misshapen_one_refused() -> None:
    generator = ConditionalGenerator(2, image_size=32, base_channels=4).eval()
    mixed = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    assert generator(torch.randn(2, 100), mixed).shape == (2, 1, 32, 32)
    with pytest.raises(PrivmedError, match="condition must have shape"):
        generator(torch.randn(2, 100), torch.ones(2, 3))


@pytest.mark.parametrize("image_size", [16, 27, 129, 256])
def test_sizes_outside_28_to_128_are_refused(image_size: int) -> None:
    with pytest.raises(PrivmedError, match="28..128"):
        ACDiscriminator(2, image_size=image_size)
