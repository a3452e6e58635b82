"""Image classifiers for utility evaluations and DP-SGD training.

Both networks use GroupNorm, never BatchNorm: BatchNorm mixes statistics across the rows of a batch,
so per-sample gradients (and with them DP-SGD's clipping) are undefined for it. They take any input
size (global average pooling before the head) and return logits of shape (N, num_classes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.networks.nets import resnet18
from opacus.validators import ModuleValidator
from torch import Tensor, nn

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivmedError
from privmed.models import CLASSIFIER_NAMES

EpochCallback = Callable[[int, int, float], None]
"""Called after each training epoch with (epoch, epochs, mean loss)."""



def _groups(channels: int, preferred: int) -> int:
    """The largest group count <= ``preferred`` that divides ``channels``."""
    return next(g for g in range(min(preferred, channels), 0, -1) if channels % g == 0)


class SmallCNN(nn.Module):
    """A compact convolutional classifier (seed 002's "convolutional blocks and two linear layers").

    ``depth`` blocks of conv3x3-GroupNorm-ReLU, each but the first halving the resolution; channels
    double per block from ``width``. Suits 28x28 to 128x128 images and trains in seconds per epoch
    on a CPU at 28x28.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16, depth: int = 3, groups: int = 8) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise PrivmedError(f"SmallCNN needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        blocks: list[nn.Module] = []
        channels_in = in_channels
        for index in range(depth):
            channels_out = width * 2**index
            stride = 1 if index == 0 else 2
            blocks += [
                nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=stride, padding=1),
                nn.GroupNorm(_groups(channels_out, groups), channels_out),
                nn.ReLU(),
            ]
            channels_in = channels_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(channels_in, channels_in), nn.ReLU(), nn.Linear(channels_in, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def resnet18_classifier(in_channels: int = 1, num_classes: int = 2) -> nn.Module:
    """MONAI's 2D ResNet-18 with every BatchNorm replaced by GroupNorm, so DP-SGD can train it.

    MONAI 1.6 passes its ``norm`` argument only to the stem, not to the residual blocks, so the
    replacement is done afterwards with Opacus's ``ModuleValidator.fix``. The stem is a stride-1 3x3
    convolution without max pooling, which keeps enough resolution for 28x28 inputs.
    """
    network = resnet18(
        spatial_dims=2,
        n_input_channels=in_channels,
        num_classes=num_classes,
        conv1_t_size=3,
        conv1_t_stride=1,
        no_max_pool=True,
        act=("relu", {"inplace": False}),
    )
    return ModuleValidator.fix(network)


def build_classifier(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """A classifier by name: ``"cnn"`` (:class:`SmallCNN`) or ``"resnet18"`` (:func:`resnet18_classifier`)."""
    key = name.strip().lower()
    if key == "cnn":
        return SmallCNN(in_channels=in_channels, num_classes=num_classes)
    if key == "resnet18":
        return resnet18_classifier(in_channels=in_channels, num_classes=num_classes)
    raise PrivmedError(f"unknown classifier {name!r}: use one of {', '.join(CLASSIFIER_NAMES)}")


def labelled_tensors(data: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and class labels as tensors; a :class:`DataError` if the dataset has no labels."""
    if data.labels is None:
        raise DataError(f"{data.name}: a classifier needs class labels, and this dataset has none")
    return torch.from_numpy(data.images), torch.from_numpy(data.labels)


@torch.no_grad()
def predict_proba(network: nn.Module, data: ImageDataset, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, K) of a trained classifier."""
    network.eval()
    images = torch.from_numpy(data.images)
    chunks = [torch.softmax(network(images[i : i + batch_size]), dim=1) for i in range(0, len(data), batch_size)]
    return torch.cat(chunks).numpy().astype(np.float64)
