"""DP-GLOW: the box, the scale sum(w)/epsilon, the log-density ratio bound, and the seed's calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privmed.data.dataset import ImageDataset
from privmed.errors import NotFittedError, PrivacyError
from privmed.methods.dpglow import DPGLOW
from privmed.models.flows import Glow
from privmed.privacy.mechanisms import laplace_scale


def _flow(channels: int = 1) -> Glow:
    flow = Glow((channels, 4, 4), levels=1, depth=2, hidden_channels=4).double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return flow.eval()


def _images(n: int, seed: int, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _fitted(epsilon: float = 1.0, alpha: float = 0.4, channels: int = 1) -> DPGLOW:
    flow = _flow(channels)
    return DPGLOW(flow, epsilon, alpha).fit(flow.encode(_images(200, 0, channels)))


def test_box_and_noise_scale() -> None:
    flow = _flow()
    latents = flow.encode(_images(100, 0)).detach()
    method = DPGLOW(flow, epsilon=2.0, alpha=0.5).fit(latents)
    low, high = latents.min(dim=0).values, latents.max(dim=0).values
    assert torch.allclose(method.centre_.double(), (low + high) / 2, atol=1e-6)
    assert torch.allclose(method.width_.double(), 0.5 * (high - low), atol=1e-6)
    assert method.sensitivity == pytest.approx(float((0.5 * (high - low)).sum()), rel=1e-6)
    assert method.noise_scale == pytest.approx(laplace_scale(method.sensitivity, 2.0))
    assert method.noise_scale == pytest.approx(method.sensitivity / 2.0)


def test_released_latents_stay_in_the_box() -> None:
    method = _fitted(epsilon=5.0)
    test_images = _images(50, 1) * 3 - 1  # partly outside the training range
    released = method.privatize_records(test_images, seed=0)
    latents = method.flow.encode(released)
    half = method.width_.double() / 2
    assert bool((latents >= method.centre_.double() - half - 1e-6).all())
    assert bool((latents <= method.centre_.double() + half + 1e-6).all())


@torch.no_grad()
def test_log_density_ratio_of_the_release() -> None:
    method = _fitted(epsilon=1.0)
    centre, half = method.centre_.double(), method.width_.double() / 2
    # Two inputs whose clipped latents sit at opposite corners of the box: the worst case.
    corner = method.flow.decode((centre + 2 * half * torch.sign(torch.randn(centre.shape, generator=torch.Generator().manual_seed(2))))[None])
    opposite = method.flow.decode(2 * centre - method.flow.encode(corner))
    clipped = torch.clamp(method.flow.encode(torch.cat([corner, opposite])), centre - half, centre + half)
    assert (clipped[0] - clipped[1]).abs().sum().item() == pytest.approx(method.sensitivity, rel=1e-5)
    released = method.noisy_latents(method.flow.encode(corner).repeat(5000, 1), seed=3)
    assert not torch.equal(released[0], released[1])
    released = torch.cat([released, clipped[:1] + 10 * torch.sign(clipped[:1] - clipped[1:])])  # where the ratio peaks
    ratio = ((released - clipped[1]).abs() - (released - clipped[0]).abs()).sum(dim=1) / method.noise_scale
    assert ratio.abs().max().item() <= 1.0 + 1e-6
    assert ratio.abs().max().item() == pytest.approx(1.0, rel=1e-6)  # the bound is tight


def test_report_sets_our_epsilon_beside_the_seed_conventions() -> None:
    method = _fitted(epsilon=16.0, alpha=0.4)
    data = ImageDataset(images=_images(4, 5).float().numpy(), subjects=list("abcd"), sources=list("abcd"), name="toy")
    released = method.privatize(data, seed=0)
    assert released.images.shape == data.images.shape
    report = method.privacy_report()
    assert report.epsilon == pytest.approx(16.0) and report.unit == "image" and report.delta == 0.0
    seed = method.seed_comparison()
    assert seed["epsilon_per_pixel_seed_convention"] == pytest.approx(1.0)  # 16 / (4*4)
    # The seed's per-dimension noise (max-min, epsilon/(H*W)) with the box is alpha*epsilon-DP for one channel,
    # and its noise is 1/alpha times ours.
    assert seed["seed_true_epsilon"] == pytest.approx(0.4 * 16.0)
    # Independently: the seed's scale per dimension is (max-min) * H*W / epsilon; two box-clipped latents differ
    # by w_k = alpha * (max-min) in dimension k, so the worst log-density ratio is sum_k w_k / scale_k.
    seed_scales = method.range_.double() * 16 / 16.0
    assert float((method.width_.double() / seed_scales).sum()) == pytest.approx(seed["seed_true_epsilon"], rel=1e-6)
    assert seed["seed_noise_ratio"] == pytest.approx(1 / 0.4, rel=1e-5)
    assert any("6.4" in note and "1/alpha=2.5" in note for note in report.notes)


def test_seed_convention_breaks_with_channels() -> None:
    method = _fitted(epsilon=1.0, alpha=0.4, channels=3)
    assert method.seed_comparison()["seed_true_epsilon"] == pytest.approx(1.2)  # alpha * C > 1: more than epsilon


def test_fit_is_required_and_alpha_checked() -> None:
    method = DPGLOW(_flow(), epsilon=1.0)
    with pytest.raises(NotFittedError):
        method.noisy_latents(torch.zeros(1, 16, dtype=torch.float64))
    with pytest.raises(PrivacyError, match="alpha"):
        DPGLOW(_flow(), epsilon=1.0, alpha=1.5)
    with pytest.raises(PrivacyError, match="zero range"):
        DPGLOW(_flow(), epsilon=1.0).fit(torch.zeros(3, 16))
    fitted = DPGLOW(_flow(), epsilon=1.0).fit(np.ones((1, 16)) * np.arange(16) + np.array([[0.0], [1.0]]))
    assert fitted.sensitivity == pytest.approx(0.4 * 16)
