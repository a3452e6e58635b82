"""Classifier utility: AUC and its bootstrap interval, training on phantom images, the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from privmed.data import load
from privmed.errors import DataError, PrivmedError
from privmed.evaluate.classifier import (
    class_scores,
    evaluate_classifier,
    roc_auc,
    roc_auc_ci,
    write_classifier_report,
)
from privmed.models.classifiers import SmallCNN, build_classifier


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return labels, rng.normal(labels * 1.0, 1.0)


def test_auc_matches_scikit_learn_with_ties() -> None:
    labels, scores = _scores(300, 0)
    scores = np.round(scores, 1)  # many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_multiclass_auc_is_macro_one_vs_rest() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert roc_auc(labels, class_scores(probabilities)) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_contains_estimate_and_narrows_with_n() -> None:
    widths = []
    for n in (100, 1600):
        labels, scores = _scores(n, 2)
        interval = roc_auc_ci(labels, scores, n_resamples=500, seed=0)
        assert interval.low <= interval.auc <= interval.high
        widths.append(interval.high - interval.low)
    assert widths[1] < widths[0] / 2  # width ~ 1/sqrt(n): 16x the data, about a quarter of the width


def test_auc_needs_two_classes() -> None:
    with pytest.raises(PrivmedError, match="two classes"):
        roc_auc(np.zeros(10, dtype=int), np.arange(10.0))


def test_networks_use_group_norm_only() -> None:
    for name in ("cnn", "resnet18"):
        network = build_classifier(name, in_channels=1, num_classes=3)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules())
        assert network(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(PrivmedError, match="unknown classifier"):
        build_classifier("vgg", 1, 2)


def test_small_cnn_accepts_other_sizes() -> None:
    assert SmallCNN(in_channels=3, num_classes=2)(torch.rand(2, 3, 64, 48)).shape == (2, 2)


def test_classifier_beats_chance_on_phantom_and_writes_report(tmp_path) -> None:
    train, test = load("phantom-classes:train"), load("phantom-classes:test")
    metrics, probabilities = evaluate_classifier(train, test, epochs=4, batch_size=32, seed=0, n_resamples=300)
    assert metrics.roc_auc > 0.75 and metrics.roc_auc_low > 0.5  # beats chance, interval included
    assert metrics.roc_auc_low <= metrics.roc_auc <= metrics.roc_auc_high
    assert metrics.accuracy == pytest.approx(float((probabilities.argmax(axis=1) == test.labels).mean()))
    assert metrics.n_test == len(test) and probabilities.shape == (len(test), 2)
    paths = write_classifier_report(tmp_path, metrics, test.labels, probabilities)
    written = json.loads(paths["metrics"].read_text())
    assert written["roc_auc"] == pytest.approx(metrics.roc_auc)
    assert paths["roc"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unlabelled_training_data_is_refused() -> None:
    train = load("phantom-classes:train")
    unlabelled = train.subset(np.arange(8))
    object.__setattr__(unlabelled, "labels", None)
    with pytest.raises(DataError, match="class labels"):
        evaluate_classifier(unlabelled, load("phantom-classes:test"), epochs=1)


def test_perfect_separation_gives_a_degenerate_interval_not_nan() -> None:
    labels = np.array([0] * 20 + [1] * 20)
    interval = roc_auc_ci(labels, labels + 0.1 * np.arange(40) / 40, n_resamples=200)
    assert interval.auc == interval.low == interval.high == 1.0
