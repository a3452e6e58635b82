"""Offline feature extractors for fidelity metrics (FID, KID, nearest neighbours, t-SNE/UMAP).

privmed downloads no weights at run time, so the Inception-v3 of the FID literature is available only
from a local file the user passes. The default is a :class:`DomainEncoder`: a small convolutional
autoencoder privmed trains on the *real reference data* and saves beside the results, so that the
same encoder can score later releases. Its features are the encoder's pooled bottleneck activations.
Figures computed with different extractors (or with two differently trained domain encoders) are not
comparable; every report names its extractor.

The module also holds the preprocessing that makes real and synthetic images comparable
(:func:`preprocess_images`): one channel (the green channel of RGB, where retinal vessels have the
highest contrast; 1-channel images as they are), optionally CLAHE with a kernel of fixed size in
pixels, so that a 64-pixel synthetic patch and a 565-pixel fundus photograph are equalised alike.

Typical use::

    encoder = DomainEncoder(in_channels=1, image_size=64).fit(real_images, steps=300, seed=0)
    encoder.save(out / "domain_encoder.pt")
    real_features = encoder.features(real_images)            # (N, encoder.num_features)
    extractor = load_feature_extractor(out / "domain_encoder.pt")   # or a TorchScript Inception file
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from skimage.exposure import equalize_adapthist
from torch import nn

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivmedError
from privmed.fileio import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "CLAHE_KERNEL_SIZE",
    "DomainEncoder",
    "FeatureExtractor",
    "InceptionFeatures",
    "load_feature_extractor",
    "preprocess_images",
    "single_channel",
]

CLAHE_KERNEL_SIZE = 32
"""CLAHE tile size in pixels, fixed so that images of every size are equalised at the same scale."""

CLAHE_CLIP_LIMIT = 0.01
"""CLAHE clip limit (scikit-image's default)."""

StepCallback = Callable[[int, int, float], None]
"""Called during training with (step, total steps, loss)."""


def _as_images(data: ImageDataset | np.ndarray) -> np.ndarray:
    images = data.images if isinstance(data, ImageDataset) else np.asarray(data, dtype=np.float32)
    if images.ndim != 4:
        raise DataError(f"expected 2D images of shape (N, C, H, W), got shape {images.shape}")
    return images


def single_channel(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, 1, H, W): the green channel of RGB(A), a 1-channel image unchanged."""
    if images.shape[1] == 1:
        return images.astype(np.float32, copy=False)
    if images.shape[1] in (3, 4):
        return images[:, 1:2].astype(np.float32)
    raise DataError(f"cannot reduce {images.shape[1]}-channel images to one channel: expected 1, 3 (RGB) or 4 (RGBA)")


def preprocess_images(data: ImageDataset | np.ndarray, clahe: bool = True) -> np.ndarray:
    """One channel (:func:`single_channel`), then CLAHE per image with a fixed pixel kernel; float32 in [0, 1]."""
    images = single_channel(_as_images(data))
    if not clahe:
        return images
    out = np.empty_like(images)
    for i, image in enumerate(images[:, 0]):
        kernel = (min(CLAHE_KERNEL_SIZE, image.shape[0]), min(CLAHE_KERNEL_SIZE, image.shape[1]))
        out[i, 0] = equalize_adapthist(np.clip(image, 0.0, 1.0), kernel_size=kernel, clip_limit=CLAHE_CLIP_LIMIT)
    return out


class FeatureExtractor(nn.Module):
    """A frozen network mapping float images (N, C, H, W) in [0, 1] to features (N, num_features).

    It is what torchmetrics' ``FrechetInceptionDistance(feature=...)`` and
    ``KernelInceptionDistance(feature=...)`` accept (they read ``num_features``).
    """

    name: str
    num_features: int

    @torch.no_grad()
    def features(self, data: ImageDataset | np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Features of every image, as float64 (N, num_features)."""
        images = _as_images(data)
        self.eval()
        chunks = [self(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
        if not chunks:
            return np.zeros((0, self.num_features))
        return torch.cat(chunks).double().numpy()


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: features of one image must not depend on the rest of its batch.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
        nn.GroupNorm(min(8, out_channels), out_channels),
        nn.LeakyReLU(0.2),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class DomainEncoder(FeatureExtractor):
    """A small convolutional autoencoder trained on real reference images; its encoder gives features.

    Images are resized to ``image_size`` (bilinear) so any input size works. The features are the
    global mean and standard deviation of each bottleneck channel (``num_features = 2 * width[-1]``):
    first and second moments of texture statistics, cheap and stable for Fréchet distances on a few
    hundred images. Training minimises the mean squared reconstruction error with Adam.
    """

    name = "domain"

    def __init__(self, in_channels: int = 1, image_size: int = 64, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        if image_size % (2 ** len(widths)):
            raise PrivmedError(f"image_size {image_size} must be divisible by {2 ** len(widths)}")
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.widths = tuple(int(w) for w in widths)
        self.num_features = 2 * self.widths[-1]
        self.trained_on: dict[str, Any] = {}
        channels = (self.in_channels, *self.widths)
        self.encoder = nn.Sequential(*[_block(a, b) for a, b in zip(channels[:-1], channels[1:])])
        layers: list[nn.Module] = []
        for a, b in zip(reversed(channels[1:]), reversed(channels[:-1])):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        layers[-1] = nn.Sigmoid()
        self.decoder = nn.Sequential(*layers)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        if images.shape[1] != self.in_channels:
            raise DataError(f"the domain encoder was trained on {self.in_channels}-channel images, got {images.shape[1]} channels")
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        code = self.encoder(self._prepare(images))
        return torch.cat([code.mean(dim=(2, 3)), code.std(dim=(2, 3))], dim=1)

    def fit(
        self,
        data: ImageDataset | np.ndarray,
        steps: int = 300,
        batch_size: int = 32,
        learning_rate: float = 2e-3,
        seed: int = 0,
        progress: StepCallback | None = None,
    ) -> DomainEncoder:
        """Train the autoencoder on ``data`` (the real reference images); returns ``self``."""
        images = _as_images(data)
        if len(images) < 2:
            raise DataError("the domain encoder needs at least 2 real images to train on")
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tensor = self._prepare(torch.from_numpy(np.ascontiguousarray(images))).detach()
        optimizer = torch.optim.Adam(self.parameters(), lr=learning_rate)
        self.train()
        loss = torch.zeros(())
        for step in range(1, steps + 1):
            batch = tensor[rng.integers(0, len(tensor), size=min(batch_size, len(tensor)))]
            if rng.random() < 0.5:
                batch = batch.flip(-1)
            loss = F.mse_loss(self.decoder(self.encoder(batch)), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(step, steps, loss.item())
        self.eval()
        self.trained_on = {"images": int(len(images)), "steps": int(steps), "seed": int(seed), "final_loss": loss.item()}
        if isinstance(data, ImageDataset):
            self.trained_on["dataset"] = data.name
        logger.info("domain encoder trained on %d images, reconstruction MSE %.4f", len(images), loss.item())
        return self

    def describe(self) -> dict[str, Any]:
        """What a report needs to name this extractor."""
        return {"name": self.name, "num_features": self.num_features, "image_size": self.image_size, "trained_on": self.trained_on}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write architecture, weights and training facts to ``path`` atomically."""
        state = {
            "kind": "privmed.DomainEncoder",
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "widths": list(self.widths),
            "trained_on": self.trained_on,
            "state_dict": self.state_dict(),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DomainEncoder:
        """Read an encoder written by :meth:`save`."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
            raise DataError(f"{path}: not a readable domain encoder file ({str(exc).splitlines()[0]})") from None
        if not isinstance(state, dict) or state.get("kind") != "privmed.DomainEncoder":
            raise DataError(f"{path}: not a privmed domain encoder file")
        encoder = cls(state["in_channels"], state["image_size"], tuple(state["widths"]))
        encoder.load_state_dict(state["state_dict"])
        encoder.trained_on = dict(state["trained_on"])
        return encoder.eval()


class InceptionFeatures(FeatureExtractor):
    """Inception-v3 pool3 features (2048) from a local network file; nothing is downloaded.

    The file must hold a TorchScript module (or a ``torch.export`` program, ``.pt2``) taking uint8 images (N, 3, H, W) in [0, 255] and
    resizing them itself, such as the FID Inception network distributed with NVIDIA's StyleGAN2-ADA
    (``inception-2015-12-05.pt``, called with ``return_features=True``). 1-channel images are
    repeated to three channels.
    """

    name = "inception-v3"
    num_features = 2048

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = str(path)
        try:
            if self.path.endswith(".pt2"):
                self.network = torch.export.load(self.path).module()
            else:
                with warnings.catch_warnings():  # TorchScript is deprecated, but it is how FID Inception files ship
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.network = torch.jit.load(self.path, map_location="cpu").eval()
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(f"{path}: not a TorchScript (.pt) or torch.export (.pt2) Inception-v3 file ({exc})") from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        pixels = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
        try:
            features = self.network(pixels, return_features=True)
        except RuntimeError:
            features = self.network(pixels)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise DataError(f"{self.path}: expected (N, {self.num_features}) pool3 features, got shape {tuple(features.shape)}")
        return features

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "num_features": self.num_features, "weights": self.path}


def load_feature_extractor(name_or_path: str | os.PathLike[str]) -> FeatureExtractor:
    """A saved :class:`DomainEncoder` file, or a TorchScript Inception-v3 file, by path.

    The name ``"domain"`` alone is refused here: a domain encoder must first be trained on real
    data (:meth:`DomainEncoder.fit`).
    """
    path = Path(name_or_path)
    if str(name_or_path) == "domain":
        raise PrivmedError("the domain encoder is trained on the real data first: use DomainEncoder(...).fit(real)")
    if not path.is_file():
        raise DataError(f"{path}: no such feature extractor file (give a saved domain encoder or a TorchScript Inception-v3)")
    if _is_network_archive(path):
        return InceptionFeatures(path)
    return DomainEncoder.load(path)


def _is_network_archive(path: Path) -> bool:
    """True for a TorchScript or torch.export archive (it holds code), False for a saved state file."""
    if path.suffix == ".pt2":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())
