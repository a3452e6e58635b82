"""Dice and bAHD against hand-computed cases and a brute-force bAHD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from privmed.evaluate.segmentation_metrics import (
    BalancedAverageHausdorffMetric,
    balanced_average_hausdorff,
    compute_balanced_average_hausdorff,
    compute_masked_dice,
)


def _batch(*masks: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.stack(masks)[:, None].astype(np.uint8))


def _brute_force_bahd(prediction: np.ndarray, truth: np.ndarray) -> float:
    g = np.argwhere(truth)
    s = np.argwhere(prediction)
    distances = cdist(g, s)
    return (distances.min(axis=1).sum() / len(g) + distances.min(axis=0).sum() / len(g)) / 2


def _square(offset: int = 0) -> np.ndarray:
    mask = np.zeros((10, 10), np.uint8)
    mask[3:6, 3 + offset : 6 + offset] = 1
    return mask


def test_perfect_prediction() -> None:
    truth = _square()
    assert compute_masked_dice(_batch(truth), _batch(truth)).item() == pytest.approx(1.0)
    assert balanced_average_hausdorff(truth, truth) == 0.0


def test_one_pixel_shift() -> None:
    truth, prediction = _square(), _square(offset=1)
    # 3x3 squares overlapping in 3x2 pixels: DSC = 2*6 / (9+9).
    assert compute_masked_dice(_batch(prediction), _batch(truth)).item() == pytest.approx(12 / 18)
    # Three truth pixels (left column) are 1 px from the prediction, three prediction pixels (right
    # column) are 1 px from the truth: (3/9 + 3/9) / 2.
    assert balanced_average_hausdorff(prediction, truth) == pytest.approx(1 / 3)


def test_over_segmentation_is_normalised_by_ground_truth_size() -> None:
    truth = np.zeros((1, 12), np.uint8)
    truth[0, 0] = 1
    prediction = np.zeros_like(truth)
    prediction[0, :4] = 1
    # GT->pred: 0; pred->GT: 1+2+3 = 6, divided by |G| = 1 (not |S| = 4).
    assert balanced_average_hausdorff(prediction, truth) == pytest.approx(3.0)


def test_empty_prediction() -> None:
    truth = _square()
    empty = np.zeros_like(truth)
    assert compute_masked_dice(_batch(empty), _batch(truth)).item() == 0.0
    assert math.isinf(balanced_average_hausdorff(empty, truth))


def test_empty_ground_truth() -> None:
    prediction = _square()
    empty = np.zeros_like(prediction)
    assert compute_masked_dice(_batch(prediction), _batch(empty)).item() == 0.0
    assert math.isinf(balanced_average_hausdorff(prediction, empty))


def test_both_empty() -> None:
    empty = np.zeros((8, 8), np.uint8)
    assert compute_masked_dice(_batch(empty), _batch(empty)).item() == 1.0
    assert balanced_average_hausdorff(empty, empty) == 0.0


def test_mask_excludes_outside_pixels() -> None:
    truth = _square()
    prediction = truth.copy()
    prediction[0, 0] = 1  # a false positive outside the field of view
    fov = np.ones_like(truth)
    fov[0, 0] = 0
    assert compute_masked_dice(_batch(prediction), _batch(truth), _batch(fov)).item() == pytest.approx(1.0)
    assert balanced_average_hausdorff(prediction, truth, fov) == 0.0
    assert balanced_average_hausdorff(prediction, truth) > 0.0


@pytest.mark.parametrize("seed", range(5))
def test_bahd_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.random((17, 13)) < 0.15
    prediction = rng.random((17, 13)) < 0.25
    assert balanced_average_hausdorff(prediction, truth) == pytest.approx(_brute_force_bahd(prediction, truth), rel=1e-12)


def test_bahd_matches_brute_force_in_3d() -> None:
    rng = np.random.default_rng(7)
    truth = rng.random((5, 6, 7)) < 0.1
    prediction = rng.random((5, 6, 7)) < 0.2
    assert balanced_average_hausdorff(prediction, truth) == pytest.approx(_brute_force_bahd(prediction, truth))


def test_metric_class_aggregates_finite_values() -> None:
    truth = _square()
    empty = np.zeros_like(truth)
    metric = BalancedAverageHausdorffMetric(get_not_nans=True)
    metric(_batch(_square(1), truth), _batch(truth, truth))
    metric(_batch(empty), _batch(truth))
    per_image = metric.get_buffer().reshape(-1)
    assert per_image[0].item() == pytest.approx(1 / 3) and per_image[1].item() == 0.0
    assert math.isinf(per_image[2].item())
    value, used = metric.aggregate()
    assert value.item() == pytest.approx(1 / 6)
    assert used.item() == 2


def test_batch_function_shape_and_values() -> None:
    values = compute_balanced_average_hausdorff(_batch(_square(1), _square()), _batch(_square(), _square()))
    assert values.shape == (2, 1)
    assert values[0, 0].item() == pytest.approx(1 / 3) and values[1, 0].item() == 0.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        balanced_average_hausdorff(np.zeros((3, 3)), np.zeros((3, 4)))
