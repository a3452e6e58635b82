"""CADP: per-image L1 clipping, Laplace scale 2S/epsilon, and the release's log-density ratio bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from privmed.data.dataset import ImageDataset
from privmed.errors import NotFittedError, PrivacyError
from privmed.methods.cadp import CADP, clip_l1
from privmed.models.flows import ConditionalINN
from privmed.privacy.mechanisms import laplace_scale


def _flow() -> ConditionalINN:
    flow = ConditionalINN((1, 4, 4), n_classes=2, levels=1, depth=2, hidden_channels=4, coupling="glow").double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return flow.eval()


def _dataset(n: int = 6, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, 1, 4, 4)).astype(np.float32)
    segmentations = (images > 0.5).astype(np.uint8)
    subjects = [f"p{i // 2}" for i in range(n)]
    sources = [f"img{i}" for i in range(n)]
    return ImageDataset(images=images, subjects=subjects, sources=sources, labels=np.arange(n) % 2, segmentations=segmentations, name="toy")


def _laplace_log_density(value: torch.Tensor, centre: torch.Tensor, scale: float) -> torch.Tensor:
    return (-(value - centre).abs() / scale - np.log(2 * scale)).sum(dim=1)


def test_clip_l1_is_per_image() -> None:
    latents = torch.tensor([[3.0, -4.0, 1.0], [0.1, 0.2, -0.1], [100.0, 0.0, 0.0]])
    clipped = clip_l1(latents, radius=2.0)
    norms = clipped.abs().sum(dim=1)
    assert bool((norms <= 2.0 + 1e-6).all())
    assert torch.equal(clipped[1], latents[1])  # inside the ball: untouched, whatever the other rows hold
    assert torch.allclose(clipped[0], latents[0] * 2.0 / 8.0)
    assert torch.allclose(norms[[0, 2]], torch.tensor([2.0, 2.0]))


def test_noise_scale_is_twice_the_clip_over_epsilon() -> None:
    method = CADP(_flow(), epsilon=0.5, clip=3.0)
    assert method.sensitivity == 6.0
    assert method.noise_scale == pytest.approx(laplace_scale(6.0, 0.5)) == pytest.approx(12.0)
    paper = CADP(_flow(), epsilon=0.5, clip=3.0, paper_scale=True)
    assert paper.noise_scale == pytest.approx(3.0 / 0.5)
    assert paper.release_epsilon == pytest.approx(1.0)


@pytest.mark.parametrize("paper_scale", [False, True])
@torch.no_grad()
def test_log_density_ratio_of_the_release(paper_scale: bool) -> None:
    """For two images, the noisy latent's Laplace log-density ratio stays within the reported epsilon."""
    flow, epsilon, clip = _flow(), 1.0, 2.0
    method = CADP(flow, epsilon, clip, paper_scale=paper_scale)
    labels = torch.tensor([0, 0])
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    # The worst neighbour: an input whose latent points the opposite way, so the clipped latents are 2S apart.
    x_prime = flow.decode(-3.0 * flow.encode(x, labels[:1]), labels[:1])
    centres = clip_l1(flow.encode(torch.cat([x, x_prime]), labels), clip)
    assert (centres[0] - centres[1]).abs().sum().item() == pytest.approx(2 * clip, rel=1e-6)
    released = method.noisy_latents(flow.encode(x, labels[:1]).repeat(5000, 1), seed=7)
    released = torch.cat([released, centres[:1] + 10 * torch.sign(centres[:1] - centres[1:])])  # where the ratio peaks
    ratio = _laplace_log_density(released, centres[0], method.noise_scale) - _laplace_log_density(released, centres[1], method.noise_scale)
    assert ratio.abs().max().item() <= method.release_epsilon + 1e-9
    assert ratio.abs().max().item() == pytest.approx(method.release_epsilon)  # the bound is tight
    if paper_scale:
        assert ratio.abs().max().item() > 1.9 * epsilon  # the seed's scale does not give its nominal epsilon


def test_privatize_with_public_labels_drops_segmentations_ids_and_reports() -> None:
    data = _dataset()
    method = CADP(_flow(), epsilon=2.0, clip=1.0)
    with pytest.raises(NotFittedError):
        method.privacy_report()
    released = method.privatize(data, seed=1, public_labels=True)
    assert released.images.shape == data.images.shape
    assert released.images.min() >= 0 and released.images.max() <= 1
    assert not np.allclose(released.images, data.images)
    assert np.array_equal(released.labels, data.labels)
    assert not set(released.subjects) & set(data.subjects) and not set(released.sources) & set(data.sources)
    assert released.segmentations is None
    assert released.metadata["privatized_by"] == "cadp"
    report = method.privacy_report()
    assert (report.mechanism, report.accountant, report.unit, report.delta) == ("Laplace", "laplace", "image", 0.0)
    assert report.epsilon == pytest.approx(2.0)
    assert report.laplace_scale == pytest.approx(1.0) and report.sensitivity == pytest.approx(2.0)
    assert report.public_data and "labels" in report.public_data[0]
    assert any("patient with k" in note for note in report.notes)
    assert np.array_equal(method.privatize(data, seed=1).images, released.images)
    assert method.privacy_report().epsilon == pytest.approx(4.0)  # two releases compose


def test_paper_scale_reports_twice_the_nominal_epsilon() -> None:
    method = CADP(_flow(), epsilon=1.5, clip=1.0, paper_scale=True)
    method.privatize(_dataset(), seed=0, public_labels=True)
    report = method.privacy_report()
    assert report.epsilon == pytest.approx(3.0)
    assert "twice the nominal" in report.notes[0]


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(PrivacyError):
        CADP(_flow(), epsilon=0.0, clip=1.0)
    with pytest.raises(PrivacyError, match="radius"):
        CADP(_flow(), epsilon=1.0, clip=-1.0)


def test_table_rows_are_privatized_with_a_tabular_flow() -> None:
    from privmed.methods.flow_training import FlowTrainer
    from privmed.models.flows import TabularFlow

    rng = np.random.default_rng(0)
    sex = torch.from_numpy(rng.integers(0, 2, size=64))
    rows = torch.from_numpy(rng.normal(size=(64, 3)) * 10 + 50).float() + sex[:, None].float()
    flow = TabularFlow(3, depth=2, hidden_features=8, n_classes=2)
    FlowTrainer(flow, epochs=2, batch_size=32, n_bins=None).fit_tensors(rows, sex)
    method = CADP(flow, epsilon=1.0, clip=1.0)
    released = method.privatize_records(rows, sex, seed=0)
    assert released.shape == rows.shape and torch.isfinite(released).all()
    assert not torch.allclose(released, rows)
    report = method.privacy_report()
    assert report.unit == "record" and report.epsilon == pytest.approx(1.0)


def test_a_conditional_flow_needs_public_or_randomized_labels() -> None:
    """Finding 5: CADP decodes with the label, so the label leaks unless it is public or randomized."""
    data = _dataset()
    with pytest.raises(PrivacyError, match="public-labels"):
        CADP(_flow(), epsilon=2.0, clip=1.0).privatize(data, seed=1)


def test_randomized_labels_add_their_epsilon() -> None:
    data = replace(_dataset(), class_names=("a", "b"))
    method = CADP(_flow(), epsilon=2.0, clip=1.0)
    released = method.privatize(data, seed=1, label_epsilon=0.5)
    assert released.labels is not None and method.privacy_report().epsilon == pytest.approx(2.5)
    assert method.release_epsilon == pytest.approx(2.5) and not method.privacy_report().public_data
