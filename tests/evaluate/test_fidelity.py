"""FID/KID with the domain encoder, SSIM diversity, nearest-neighbour distances, the fidelity report."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.evaluate.features import DomainEncoder, load_feature_extractor
from privmed.evaluate.fidelity import (
    FidelityConfig,
    embedding_plot,
    evaluate_fidelity,
    fid_kid,
    nearest_neighbour_distances,
    ssim_diversity,
)


def textures(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random stripe patterns in [0, 1], shape (n, 1, size, size)."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(0, 1, size)
    images = [
        0.5 + 0.3 * np.sin(2 * np.pi * rng.uniform(2, 6) * axis[None, :] + rng.uniform(0, 6.3)) * np.cos(2 * np.pi * rng.uniform(1, 3) * axis[:, None])
        for _ in range(n)
    ]
    return np.clip(np.asarray(images)[:, None], 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> DomainEncoder:
    return DomainEncoder(image_size=32).fit(textures(80, seed=1), steps=60, seed=0)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise(encoder: DomainEncoder) -> None:
    real = textures(80, seed=1)
    assert abs(fid_kid(encoder, real, real)["fid"]) < 1e-4
    noise = np.random.default_rng(3).normal(size=real.shape)
    fids = [fid_kid(encoder, real, np.clip(real + s * noise, 0, 1).astype(np.float32))["fid"] for s in (0.05, 0.15, 0.4)]
    assert 0 < fids[0] < fids[1] < fids[2]


def test_kid_against_itself_is_near_zero_and_noise_raises_it(encoder: DomainEncoder) -> None:
    real = textures(80, seed=1)
    noisy = np.clip(real + 0.4 * np.random.default_rng(4).normal(size=real.shape), 0, 1).astype(np.float32)
    same = fid_kid(encoder, real, real, kid_subset_size=40, kid_subsets=20)
    different = fid_kid(encoder, real, noisy, kid_subset_size=40, kid_subsets=20)
    assert different["kid_mean"] > 3 * abs(same["kid_mean"])
    assert different["kid_subset_size"] == 40


def test_encoder_save_load_gives_the_same_features(encoder: DomainEncoder, tmp_path) -> None:
    images = textures(5, seed=2)
    encoder.save(tmp_path / "enc.pt")
    loaded = load_feature_extractor(tmp_path / "enc.pt")
    assert isinstance(loaded, DomainEncoder)
    assert np.allclose(loaded.features(images), encoder.features(images))
    assert loaded.features(images).shape == (5, encoder.num_features)
    assert loaded.describe()["trained_on"]["images"] == 80


def test_unreadable_extractor_file_is_refused(tmp_path) -> None:
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a network")
    with pytest.raises(DataError, match="weights.pt"):
        load_feature_extractor(bad)
    torch.save({"some": "state"}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a privmed domain encoder"):
        load_feature_extractor(tmp_path / "other.pt")
    with pytest.raises(DataError, match="no such"):
        load_feature_extractor(tmp_path / "missing.pt")


def test_ssim_diversity_of_copies_is_one_and_of_noise_is_low() -> None:
    copies = np.repeat(textures(1), 6, axis=0)
    assert ssim_diversity(copies, pairs=20)["ssim_mean"] == pytest.approx(1.0)
    noise = np.random.default_rng(0).random((20, 1, 32, 32)).astype(np.float32)
    result = ssim_diversity(noise, pairs=50)
    assert result["ssim_mean"] < 0.1
    assert result["ms_ssim_scales"] == 2  # 32 pixels support two scales of an 11-pixel window


def test_nearest_neighbour_distance_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    query, reference = rng.random((7, 1, 6, 6)), rng.random((9, 1, 6, 6))
    expected = cdist(query.reshape(7, -1), reference.reshape(9, -1)).min(axis=1) / 6
    assert np.allclose(nearest_neighbour_distances(query, reference), expected)
    assert np.allclose(nearest_neighbour_distances(reference[:3], reference), 0, atol=1e-6)


def test_tsne_plot_is_written(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = embedding_plot({"a": rng.normal(size=(20, 4)), "b": rng.normal(3, 1, size=(20, 4))}, "tsne", tmp_path / "tsne.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _dataset(images: np.ndarray, name: str) -> ImageDataset:
    names = [f"{name}{i}" for i in range(len(images))]
    return ImageDataset(images=images, subjects=names, sources=names, name=name)


def test_fidelity_report_with_rgb_real_and_gray_synthetic(tmp_path) -> None:
    gray = textures(40, seed=1)
    rgb_real = _dataset(np.concatenate([np.zeros_like(gray), gray, np.ones_like(gray)], axis=1), "real")
    synthetic = _dataset(textures(30, seed=9), "synthetic")
    test = _dataset(textures(30, seed=11), "test")
    config = FidelityConfig(encoder_steps=20, encoder_image_size=32, kid_subset_size=20, kid_subsets=5, ssim_pairs=30, plots=False)
    report = evaluate_fidelity(rgb_real, synthetic, tmp_path, test=test, config=config)
    written = json.loads((tmp_path / "fidelity.json").read_text())
    assert written["fid_train"] == pytest.approx(report["fid_train"])
    assert written["extractor"]["name"] == "domain" and (tmp_path / "domain_encoder.pt").exists()
    assert {"fid_test", "kid_train_mean", "kid_test_mean"} <= set(written)
    assert written["nearest_neighbour"]["test_to_train"]["n"] == 30
    assert written["real"]["images_used"] == 40
    # The saved encoder scores a second release on the same scale: same figure for the same data.
    again = evaluate_fidelity(rgb_real, synthetic, tmp_path / "again", test=test, config=FidelityConfig(
        extractor=str(tmp_path / "domain_encoder.pt"), kid_subset_size=20, kid_subsets=5, ssim_pairs=30, plots=False))
    assert again["fid_train"] == pytest.approx(report["fid_train"], rel=1e-6)


class _FakeInception(torch.nn.Module):
    """A TorchScript stand-in with the FID Inception interface: uint8 (N, 3, H, W) -> (N, 2048)."""

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        means = images.float().mean(dim=(1, 2, 3)) / 255.0
        return means[:, None].repeat(1, 2048) * torch.linspace(0.5, 1.5, 2048)[None, :]


def test_inception_file_gives_2048_features_of_gray_images(tmp_path) -> None:
    with warnings.catch_warnings():  # TorchScript is deprecated, yet it is how FID Inception files ship
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(_FakeInception()).save(str(tmp_path / "inception.pt"))
    extractor = load_feature_extractor(tmp_path / "inception.pt")
    assert extractor.name == "inception-v3" and extractor.num_features == 2048
    images = textures(4)
    features = extractor.features(images)
    assert features.shape == (4, 2048)
    expected = np.round(images * 255).mean(axis=(1, 2, 3)) / 255.0
    assert np.allclose(features[:, 1024], expected * float(torch.linspace(0.5, 1.5, 2048)[1024]), atol=1e-5)
