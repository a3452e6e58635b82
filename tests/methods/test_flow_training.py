"""Flow training: bits/dim is the right number, training lowers it, checkpoints resume and reload."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.methods.flow_training import FlowTrainer, bits_per_dim, dequantize, load_trained_flow
from privmed.models.flows import ConditionalINN, Glow
from privmed.runs import RunDirectory


def _blobs(n: int = 48, size: int = 8, seed: int = 0) -> ImageDataset:
    """Two classes of quantized images: a bright square on the left or on the right, with noise."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.2, size=(n, 1, size, size))
    labels = np.arange(n) % 2
    for i, label in enumerate(labels):
        images[i, 0, 2:6, (1 if label == 0 else 4) : (4 if label == 0 else 7)] += 0.7
    images = np.round(np.clip(images, 0, 1) * 255) / 255
    ids = [f"p{i}" for i in range(n)]
    return ImageDataset(images=images.astype(np.float32), subjects=ids, sources=ids, labels=labels, class_names=("left", "right"), name="blobs")


def test_dequantize_stays_in_the_pixel_bin() -> None:
    x = torch.tensor([[0.0, 1.0, 128 / 255]])
    y = dequantize(x, 256, torch.Generator().manual_seed(0))
    bins = torch.floor(y * 256)
    assert torch.equal(bins, torch.round(x * 255))


def test_bits_per_dim_matches_an_independent_computation() -> None:
    # A GIN flow at initialisation is x -> permute(x - 0.5): its density is a standard normal at x - 0.5.
    flow = Glow((1, 4, 4), levels=1, depth=2, hidden_channels=4, coupling="gin")
    images = torch.rand(5, 1, 4, 4)
    measured = bits_per_dim(flow, images, generator=torch.Generator().manual_seed(3))
    deq = dequantize(images, 256, torch.Generator().manual_seed(3)) - 0.5
    log_density = torch.distributions.Normal(0.0, 1.0).log_prob(deq).reshape(5, -1).sum(dim=1)
    expected = (-(log_density - 16 * math.log(256)) / (16 * math.log(2))).mean()
    assert measured == pytest.approx(expected.item(), rel=1e-5)


def test_training_lowers_bits_per_dim_and_resumes(tmp_path) -> None:
    data = _blobs()
    run = RunDirectory(tmp_path / "flow")
    run.create({"test": True})
    flow = ConditionalINN((1, 8, 8), n_classes=2, levels=1, depth=2, hidden_channels=8, coupling="glow")
    before = bits_per_dim(flow, torch.from_numpy(data.images), torch.from_numpy(data.labels))
    FlowTrainer(flow, epochs=2, batch_size=16, learning_rate=5e-3, run_dir=run.path, data_key="blobs-key").fit(data)
    resumed = FlowTrainer(flow, epochs=4, batch_size=16, learning_rate=5e-3, run_dir=run.path, resume=True, data_key="blobs-key").fit(data)
    after = bits_per_dim(flow, torch.from_numpy(data.images), torch.from_numpy(data.labels))
    assert after < before - 0.5
    with run.metrics_path.open() as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [1, 2, 3, 4]
    assert [row["epoch"] for row in resumed.history_] == [1, 2, 3, 4]

    trained = load_trained_flow(run.path)
    assert trained.data_key == "blobs-key"
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    latents = trained.flow.encode(images, labels)
    assert torch.allclose(latents, flow.encode(images, labels), atol=1e-6)
    assert bool((latents >= trained.latent_min - 1e-5).all() and (latents <= trained.latent_max + 1e-5).all())


def test_sample_grid_and_missing_labels(tmp_path) -> None:
    flow = ConditionalINN((1, 8, 8), n_classes=2, levels=1, depth=1, hidden_channels=4)
    trainer = FlowTrainer(flow, epochs=1, batch_size=16)
    unlabelled = _blobs(16)
    unlabelled = ImageDataset(images=unlabelled.images, subjects=unlabelled.subjects, sources=unlabelled.sources)
    with pytest.raises(DataError, match="class labels"):
        trainer.fit(unlabelled)
    path = trainer.save_samples(tmp_path / "samples.png", n=10)
    width, height = Image.open(path).size
    assert width > height > 8  # two rows of eight 8x8 samples
