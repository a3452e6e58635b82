"""Diversity: the real-vs-synthetic classifier AUC with its BCa interval, and the UMAP projection."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from privmed.data import load
from privmed.errors import DataError
from privmed.evaluate.diversity import diversity_report, real_vs_synthetic_auc, umap_projection, write_diversity_report


@pytest.fixture(scope="module")
def real():
    return load("phantom-classes:train", n=120)


def test_classifier_separates_an_obviously_different_release(real) -> None:
    synthetic = replace(real, images=np.clip(1.0 - real.images, 0, 1), name="inverted")
    interval, n_test = real_vs_synthetic_auc(real, synthetic, epochs=3, n_resamples=2000, seed=0)
    assert n_test == 72
    assert interval.auc > 0.9 and interval.low > 0.5
    assert interval.n_resamples == 2000


def test_classifier_cannot_separate_the_same_distribution(real) -> None:
    same = load("phantom-classes:test", n=120)
    interval, _ = real_vs_synthetic_auc(real, same, epochs=3, n_resamples=2000, seed=0)
    assert 0.3 < interval.auc < 0.7
    assert interval.low < 0.5 < interval.high


def test_mismatched_sizes_are_refused(real) -> None:
    with pytest.raises(DataError):
        real_vs_synthetic_auc(real, load("phantom-classes:test", n=20, size=32))


@pytest.mark.slow
def test_umap_report_fits_real_only_and_projects_synthetic(real, tmp_path) -> None:
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(3), 20)
    real_features = rng.normal(size=(60, 8)) + 10.0 * np.eye(8)[clusters]
    copies = np.arange(0, 60, 6)
    projection = umap_projection(real_features, real_features[copies] + 1e-3, seed=0)
    assert projection.real.shape == (60, 2) and projection.synthetic.shape == (10, 2)
    # A near copy of a real point lands in that point's cluster of the real map (fitted on real rows only).
    centres = np.stack([projection.real[clusters == c].mean(axis=0) for c in range(3)])
    landed = np.linalg.norm(projection.synthetic[:, None] - centres[None], axis=2).argmin(axis=1)
    assert np.array_equal(landed, clusters[copies])
    report, projection = diversity_report(real, load("phantom-classes:test", n=60), encoder_steps=10, epochs=1, n_resamples=200)
    paths = write_diversity_report(tmp_path, report, projection, real.class_names)
    assert json.loads(paths["diversity"].read_text())["n_synthetic"] == 60
    assert paths["umap"].read_bytes()[:4] == b"\x89PNG"
