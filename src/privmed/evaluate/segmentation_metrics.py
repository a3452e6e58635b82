"""Segmentation metrics of seed 000: Dice (DSC) and the balanced average Hausdorff distance (bAHD).

Both follow MONAI's pattern: a ``compute_*`` function on batch-first binary tensors (B, 1, *spatial)
returning one value per image, and a :class:`~monai.metrics.CumulativeIterationMetric` class that
accumulates over calls and aggregates. An optional field-of-view ``mask`` restricts both metrics to
the pixels inside it (DRIVE is scored inside its FOV mask).

Empty sets are defined explicitly, per image:

- Dice: 1 when ground truth and prediction are both empty, 0 when exactly one is empty
  (MONAI's ``compute_dice(ignore_empty=False)``).
- bAHD: 0 when both are empty; ``inf`` when exactly one is empty (no point of the empty set to reach,
  and with an empty ground truth the normalisation by its size is undefined). The class aggregates
  over finite values only and reports how many images were left out (``get_not_nans``).

bAHD (Aydin et al. 2021, "On the usage of average Hausdorff distance for segmentation performance
assessment: hidden error when used for ranking", Eur Radiol Exp 5:4; eq. 9 of seed 000)::

    bAHD(G, S) = ( sum_{g in G} min_{s in S} d(g, s) / |G|  +  sum_{s in S} min_{g in G} d(s, g) / |G| ) / 2

Both directed sums are divided by the number of ground-truth points |G| (not |S| for the second, as
the plain average Hausdorff distance would): an over-segmentation is then not diluted by its own size.
Distances are Euclidean, in pixels (voxels) of the grid the masks are given on.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.metrics.metric import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction
from scipy.ndimage import distance_transform_edt

__all__ = [
    "BalancedAverageHausdorffMetric",
    "balanced_average_hausdorff",
    "compute_balanced_average_hausdorff",
    "compute_masked_dice",
]


def _binary(array: torch.Tensor | np.ndarray) -> np.ndarray:
    values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    return values > 0


def balanced_average_hausdorff(prediction: np.ndarray, ground_truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """bAHD of one binary prediction against one binary ground truth (any number of spatial axes).

    Pixels outside ``mask`` (when given) belong to neither set. Returns 0.0 when both sets are empty
    and ``inf`` when exactly one is. Distances come from Euclidean distance transforms: the distance
    of each pixel to the nearest pixel of the other set, which equals the brute-force minimum.
    """
    predicted = _binary(prediction)
    truth = _binary(ground_truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction shape {predicted.shape} differs from ground truth shape {truth.shape}")
    if mask is not None:
        inside = _binary(mask)
        predicted = predicted & inside
        truth = truth & inside
    n_truth = int(truth.sum())
    n_predicted = int(predicted.sum())
    if n_truth == 0 and n_predicted == 0:
        return 0.0
    if n_truth == 0 or n_predicted == 0:
        return float("inf")
    # distance_transform_edt gives each nonzero pixel its distance to the nearest zero pixel.
    to_prediction = distance_transform_edt(~predicted)
    to_truth = distance_transform_edt(~truth)
    truth_to_prediction = float(to_prediction[truth].sum())
    prediction_to_truth = float(to_truth[predicted].sum())
    return (truth_to_prediction / n_truth + prediction_to_truth / n_truth) / 2.0


def _batch_masks(y_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred shape {tuple(y_pred.shape)} differs from y shape {tuple(y.shape)}")
    if y_pred.ndim < 3 or y_pred.shape[1] != 1:
        raise ValueError(f"expected binary masks of shape (B, 1, *spatial), got {tuple(y_pred.shape)}")
    predicted = y_pred > 0
    truth = y > 0
    if mask is not None:
        inside = torch.as_tensor(mask, device=y_pred.device) > 0
        if inside.shape != y_pred.shape:
            raise ValueError(f"mask shape {tuple(inside.shape)} differs from y_pred shape {tuple(y_pred.shape)}")
        predicted = predicted & inside
        truth = truth & inside
    return predicted, truth


def compute_masked_dice(y_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Dice per image, shape (B, 1), of binary (B, 1, *spatial) masks inside an optional FOV ``mask``.

    1.0 when both are empty inside the mask, 0.0 when exactly one is.
    """
    predicted, truth = _batch_masks(torch.as_tensor(y_pred), torch.as_tensor(y), mask)
    return compute_dice(predicted.float(), truth.float(), include_background=True, ignore_empty=False)


def compute_balanced_average_hausdorff(
    y_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """bAHD per image, shape (B, 1), of binary (B, 1, *spatial) masks inside an optional FOV ``mask``."""
    predicted, truth = _batch_masks(torch.as_tensor(y_pred), torch.as_tensor(y), mask)
    values = [balanced_average_hausdorff(p[0].cpu().numpy(), t[0].cpu().numpy()) for p, t in zip(predicted, truth)]
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 1)


class BalancedAverageHausdorffMetric(CumulativeIterationMetric):
    """Accumulate bAHD over batches; ``aggregate`` reduces over the finite values.

    Images where exactly one of prediction and ground truth is empty have an infinite bAHD; they are
    kept in the buffer as ``inf`` and left out of the reduction (``get_not_nans=True`` returns how
    many values were used). Call as ``metric(y_pred, y)`` or ``metric(y_pred, y, mask=fov)``.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return compute_balanced_average_hausdorff(y_pred, y, mask=kwargs.get("mask"))

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor")
        finite = torch.where(torch.isfinite(data), data, torch.full_like(data, float("nan")))
        value, not_nans = do_metric_reduction(finite, reduction or self.reduction)
        return (value, not_nans) if self.get_not_nans else value
