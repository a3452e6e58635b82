"""Segmentation utility of a release (seed 000): train a U-Net on image + label pairs, test on real images.

The same MONAI ``UNet`` and the same schedule are used whatever the training pairs are (real,
synthetic at any epsilon), so Dice and bAHD on a real test set measure only the training data.

Preprocessing, applied identically to training, synthetic and test images
(:func:`privmed.evaluate.features.preprocess_images`): one channel (green channel of RGB fundus
photographs, 1-channel images unchanged), then CLAHE with a fixed 32-pixel kernel.

Scale. Training uses random square patches of ``patch_size`` pixels cut from the training records
(records smaller than that train at their own size, rounded down to a multiple of 8). Patches keep the
pixel scale of their source image, so a model trained on patches is applied to test images at their
own size. When the training records are whole images (``record_kind == "image"``) of another size
than a test image, the test image is resampled (bilinear) to the training image size before
inference, or by an explicit ``test_scale``; the probability map is resampled back and the metrics
are always computed on the test image's own grid against its own ground truth.

Inference covers the whole image with :func:`monai.inferers.sliding_window_inference` (patch size as
trained, 25 % overlap, Gaussian blending), thresholded at 0.5; Dice and bAHD
(:mod:`privmed.evaluate.segmentation_metrics`) are computed inside the field-of-view mask when the
test set has one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from PIL import Image

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.evaluate.features import preprocess_images
from privmed.evaluate.segmentation_metrics import balanced_average_hausdorff, compute_masked_dice
from privmed.fileio import atomic_path, write_atomic, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "SegmentationConfig",
    "SegmentationReport",
    "SegmentationScores",
    "evaluate_segmentation",
    "observer_scores",
    "predict",
    "score_model",
    "segmentation_utility",
    "train_unet",
    "training_patch_size",
]

StepCallback = Callable[[int, int, float], None]
"""Called after each training step with (step, total steps, loss)."""

PREPROCESSING = (
    "one channel (green of RGB, 1-channel as is), CLAHE with a fixed 32-pixel kernel; random square training "
    "patches at the source pixel scale; whole-image sliding-window inference (25% overlap, Gaussian blending), "
    "threshold 0.5; test images resampled to the training image size only when training records are whole "
    "images of another size; metrics on each test image's own grid, inside its field-of-view mask"
)


@dataclass(frozen=True)
class SegmentationConfig:
    """The U-Net and its schedule; the same for every training set that is compared."""

    steps: int = 8000
    patch_size: int = 96
    batch_size: int = 16
    learning_rate: float = 1e-3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 2
    dropout: float = 0.0
    seed: int = 0
    clahe: bool = True
    overlap: float = 0.25
    test_scale: float | None = None
    device: str = "cpu"
    """Where the U-Net trains and predicts (``cuda`` on a GPU); the patches are drawn on the CPU either way,
    so the schedule is the same, but a GPU's kernels are not bit-identical to the CPU's."""

    @property
    def divisor(self) -> int:
        """Patch sides must be multiples of this (one halving per U-Net level)."""
        return 2 ** (len(self.channels) - 1)

    def network(self) -> UNet:
        """A fresh U-Net: 1 input channel (the preprocessed image), 1 output logit (vessel)."""
        return UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=self.channels,
            strides=(2,) * (len(self.channels) - 1),
            num_res_units=self.num_res_units,
            dropout=self.dropout,
        )


@dataclass
class SegmentationScores:
    """Per-image Dice and bAHD of one model (or observer) on one test set."""

    model: str
    test: str
    sources: list[str]
    dice: list[float]
    bahd: list[float]

    def summary(self) -> dict[str, Any]:
        """Mean and sample SD over images; bAHD over images where it is finite (see ``n_bahd_undefined``)."""
        dice = np.asarray(self.dice, dtype=float)
        bahd = np.asarray(self.bahd, dtype=float)
        finite = bahd[np.isfinite(bahd)]
        return {
            "model": self.model,
            "test": self.test,
            "n_images": int(dice.size),
            "dice_mean": float(dice.mean()) if dice.size else math.nan,
            "dice_sd": float(dice.std(ddof=1)) if dice.size > 1 else 0.0,
            "bahd_mean": float(finite.mean()) if finite.size else math.nan,
            "bahd_sd": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            "n_bahd_undefined": int(bahd.size - finite.size),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One CSV row per image."""
        return [
            {"model": self.model, "test": self.test, "source": s, "dice": d, "bahd": b, "bahd_defined": math.isfinite(b)}
            for s, d, b in zip(self.sources, self.dice, self.bahd)
        ]


def _require_labels(data: ImageDataset, role: str) -> None:
    if data.segmentations is None:
        raise DataError(f"{data.name}: the {role} set has no segmentation labels")
    if data.images.ndim != 4:
        raise DataError(f"{data.name}: segmentation evaluation takes 2D images, got shape {data.images.shape}")
    if len(data) == 0:
        raise DataError(f"{data.name}: the {role} set is empty")


def training_patch_size(data: ImageDataset, config: SegmentationConfig) -> int:
    """``config.patch_size``, or the largest multiple of the U-Net divisor that fits the smallest record side."""
    side = min(config.patch_size, *data.spatial_shape)
    side -= side % config.divisor
    if side < 2 * config.divisor:
        raise DataError(f"{data.name}: records of {data.spatial_shape} pixels are too small for a U-Net patch (need {2 * config.divisor})")
    return side


def _config_key(config: SegmentationConfig, data: ImageDataset) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the configuration and the training pairs (8-bit images, labels)."""
    digest = hashlib.sha256()
    for array in (np.round(data.images * 255).astype(np.uint8), data.segmentations):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    settings = {k: v for k, v in asdict(config).items() if k != "device"}  # a run may resume on another device
    return {"config": settings, "train_pairs": digest.hexdigest()}


def train_unet(
    train: ImageDataset,
    config: SegmentationConfig,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 250,
    progress: StepCallback | None = None,
) -> UNet:
    """Train the configured U-Net on random patches of ``train`` (image + label pairs).

    Each step draws ``batch_size`` records uniformly with a random patch position, random flips and
    transposition; the loss is Dice + cross-entropy (MONAI ``DiceCELoss``), Adam with a cosine decay
    of the learning rate to zero. With ``checkpoint``, the full training state is written there
    atomically every ``checkpoint_every`` steps and an interrupted run with the same configuration
    and data resumes from it exactly.
    """
    _require_labels(train, "training")
    patch = training_patch_size(train, config)
    images = torch.from_numpy(preprocess_images(train, clahe=config.clahe))
    labels = torch.from_numpy(train.segmentations.astype(np.float32))
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = config.network().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.steps, 1))
    loss_function = DiceCELoss(sigmoid=True)
    rng = np.random.default_rng(config.seed)
    start = 0
    key = _config_key(config, train)
    checkpoint_path = Path(checkpoint) if checkpoint is not None else None
    if checkpoint_path is not None and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)  # load_state_dict moves it to the device
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng.bit_generator.state = state["rng"]
            start = int(state["step"])
            logger.info("resuming U-Net training from step %d of %d (%s)", start, config.steps, checkpoint_path)
        else:
            logger.warning("%s was written for another configuration or training set; training from scratch", checkpoint_path)

    height, width = train.spatial_shape
    model.train()
    for step in range(start + 1, config.steps + 1):
        index = rng.integers(0, len(train), size=config.batch_size)
        top = rng.integers(0, height - patch + 1, size=config.batch_size)
        left = rng.integers(0, width - patch + 1, size=config.batch_size)
        flips = rng.random((config.batch_size, 3)) < 0.5
        batch_images, batch_labels = [], []
        for i, y, x, flip in zip(index, top, left, flips):
            pair = torch.stack([images[i, 0, y : y + patch, x : x + patch], labels[i, 0, y : y + patch, x : x + patch]])
            if flip[0]:
                pair = pair.flip(-1)
            if flip[1]:
                pair = pair.flip(-2)
            if flip[2]:
                pair = pair.transpose(-1, -2)
            batch_images.append(pair[0:1])
            batch_labels.append(pair[1:2])
        loss = loss_function(model(torch.stack(batch_images).to(device)), torch.stack(batch_labels).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress(step, config.steps, loss.item())
        if checkpoint_path is not None and (step % checkpoint_every == 0 or step == config.steps):
            state = {
                "key": key,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng.bit_generator.state,
            }
            with atomic_path(checkpoint_path) as tmp:
                torch.save(state, tmp)
    model.eval()
    return model


def _resample(array: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(array.shape[-2:]) == size:
        return array
    return F.interpolate(array, size=size, mode="bilinear", align_corners=False)


def _inference_size(test_shape: tuple[int, ...], train: ImageDataset | None, config: SegmentationConfig) -> tuple[int, int]:
    height, width = test_shape
    if config.test_scale is not None:
        return max(1, round(height * config.test_scale)), max(1, round(width * config.test_scale))
    if train is not None and train.record_kind == "image" and train.spatial_shape != tuple(test_shape):
        return train.spatial_shape  # whole images of another size: same field of view, so same scale
    return height, width


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    test: ImageDataset,
    config: SegmentationConfig,
    patch_size: int,
    train: ImageDataset | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Binary predictions (N, 1, H, W) on each whole test image, and the preprocessed images used.

    ``train`` (its record kind and size) decides whether test images are resampled (module docstring).
    """
    model.eval()
    device = next(model.parameters()).device
    predictions = np.zeros((len(test), 1, *test.spatial_shape), dtype=np.uint8)
    prepared = np.zeros((len(test), 1, *test.spatial_shape), dtype=np.float32)
    for i in range(len(test)):
        single = torch.from_numpy(test.images[i : i + 1])
        size = _inference_size(test.spatial_shape, train, config)
        image = torch.from_numpy(preprocess_images(_resample(single, size).numpy(), clahe=config.clahe))
        logits = sliding_window_inference(
            image.to(device), roi_size=(patch_size, patch_size), sw_batch_size=32, predictor=model, overlap=config.overlap, mode="gaussian"
        )
        probability = _resample(torch.sigmoid(logits).cpu(), test.spatial_shape)
        predictions[i] = (probability[0] > 0.5).numpy().astype(np.uint8)
        prepared[i] = _resample(image, test.spatial_shape)[0].numpy()
    return predictions, prepared


def _score(model_name: str, test_name: str, predictions: np.ndarray, test: ImageDataset) -> SegmentationScores:
    truth = test.segmentations
    fov = test.masks if test.masks is not None else np.ones_like(truth)
    dice = compute_masked_dice(torch.from_numpy(predictions), torch.from_numpy(truth), torch.from_numpy(fov))
    bahd = [balanced_average_hausdorff(p[0], t[0], m[0]) for p, t, m in zip(predictions, truth, fov)]
    return SegmentationScores(model_name, test_name, [str(s) for s in test.sources], dice[:, 0].tolist(), bahd)


def score_model(
    model: torch.nn.Module,
    test: ImageDataset,
    config: SegmentationConfig,
    patch_size: int,
    model_name: str,
    test_name: str,
    train: ImageDataset | None = None,
) -> tuple[SegmentationScores, np.ndarray, np.ndarray]:
    """Predict every test image and score it; returns scores, binary predictions and preprocessed images."""
    _require_labels(test, "test")
    predictions, prepared = predict(model, test, config, patch_size, train=train)
    return _score(model_name, test_name, predictions, test), predictions, prepared


def observer_scores(observer: ImageDataset, reference: ImageDataset, test_name: str, name: str = "second observer") -> SegmentationScores:
    """A human reference line: a second observer's labels scored against the reference labels."""
    _require_labels(observer, "observer")
    _require_labels(reference, "test")
    if observer.segmentations.shape != reference.segmentations.shape:
        raise DataError(f"{observer.name}: observer labels {observer.segmentations.shape} do not match test labels {reference.segmentations.shape}")
    if not np.array_equal(observer.sources, reference.sources):
        raise DataError(f"{observer.name}: observer labels are for other images than {reference.name}")
    return _score(name, test_name, observer.segmentations, reference)


def overlay(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 error map as in seed 000 (Fig. 7): red true positive, green false positive, yellow false negative."""
    gray = (np.clip(image, 0, 1) * 0.6 * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    predicted, actual = prediction > 0, truth > 0
    if fov is not None:
        predicted, actual = predicted & (fov > 0), actual & (fov > 0)
    rgb[predicted & actual] = (220, 30, 30)
    rgb[predicted & ~actual] = (40, 200, 40)
    rgb[~predicted & actual] = (240, 220, 30)
    return rgb


def _write_png(path: Path, rgb: np.ndarray) -> None:
    write_atomic(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class _Trained:
    name: str
    model: torch.nn.Module
    train: ImageDataset
    patch_size: int


@dataclass
class SegmentationReport:
    """Everything ``evaluate segmentation`` writes to ``segmentation.json``."""

    model: str
    config: dict[str, Any]
    preprocessing: str
    results: list[dict[str, Any]] = field(default_factory=list)
    training_sets: dict[str, dict[str, Any]] = field(default_factory=dict)


def evaluate_segmentation(
    train: ImageDataset,
    tests: dict[str, ImageDataset],
    out_dir: str | os.PathLike[str],
    config: SegmentationConfig = SegmentationConfig(),
    reference_train: ImageDataset | None = None,
    observers: dict[str, ImageDataset] | None = None,
    train_name: str | None = None,
    n_overlays: int = 4,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> SegmentationReport:
    """Train on ``train``, score on each real test set, write the report to ``out_dir``.

    ``reference_train`` (the real training set) trains a second U-Net with the same configuration:
    the reference line. ``observers`` maps a test set name to a second observer's labels for it (the
    human reference). Writes ``segmentation.json`` (means and SDs), ``per_image.csv``,
    ``overlays/*.png`` (first ``n_overlays`` images per model and test set) and the trained weights
    (``unet_*.pt``, also the checkpoint an interrupted run resumes from).
    """
    for test_name, test in tests.items():
        _require_labels(test, f"test ({test_name})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    main_name = train_name or f"U-Net trained on {train.name}"
    to_train = [(main_name, train, "unet_train.pt")]
    if reference_train is not None:
        to_train.append((f"U-Net trained on {reference_train.name} (real reference)", reference_train, "unet_reference.pt"))

    trained: list[_Trained] = []
    for name, data, weights in to_train:
        callback = (lambda step, total, loss, _name=name: progress(_name, step, total, loss)) if progress else None
        model = train_unet(data, config, checkpoint=out / weights, progress=callback)
        trained.append(_Trained(name, model, data, training_patch_size(data, config)))

    report = SegmentationReport(model=main_name, config=asdict(config), preprocessing=PREPROCESSING)
    per_image: list[dict[str, Any]] = []
    for item in trained:
        report.training_sets[item.name] = {
            "dataset": item.train.name,
            "records": len(item.train),
            "record_kind": item.train.record_kind,
            "spatial_shape": list(item.train.spatial_shape),
            "patch_size": item.patch_size,
        }
        for test_name, test in tests.items():
            scores, predictions, prepared = score_model(item.model, test, config, item.patch_size, item.name, test_name, train=item.train)
            report.results.append(scores.summary())
            per_image += scores.rows()
            tag = _safe(f"{'train' if item.name == main_name else 'reference'}_{test_name}")
            for i in range(min(n_overlays, len(test))):
                fov = None if test.masks is None else test.masks[i, 0]
                rgb = overlay(prepared[i, 0], predictions[i, 0], test.segmentations[i, 0], fov)
                _write_png(out / "overlays" / f"{tag}_{_safe(str(test.sources[i]))}.png", rgb)
    for test_name, observer in (observers or {}).items():
        scores = observer_scores(observer, tests[test_name], test_name)
        report.results.append(scores.summary())
        per_image += scores.rows()

    write_text_atomic(out / "per_image.csv", _csv_text(per_image))
    write_json_atomic(out / "segmentation.json", _json_safe(asdict(report)))
    return report


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def segmentation_utility(train: ImageDataset, test: ImageDataset, steps: int, patch_size: int, seed: int) -> dict[str, Any]:
    """Train the U-Net on ``train`` for ``steps`` and score it on ``test``: the demo's utility line.

    Returns ``{"dice": mean, "dice_sd", "bahd": mean over finite values, "bahd_sd", "n_images",
    "n_bahd_undefined", "patch_size"}``. Nothing is written to disk.
    """
    config = SegmentationConfig(steps=steps, patch_size=patch_size, seed=seed)
    model = train_unet(train, config)
    patch = training_patch_size(train, config)
    scores, _, _ = score_model(model, test, config, patch, f"U-Net trained on {train.name}", test.name, train=train)
    summary = scores.summary()
    return {
        "dice": summary["dice_mean"],
        "dice_sd": summary["dice_sd"],
        "bahd": summary["bahd_mean"],
        "bahd_sd": summary["bahd_sd"],
        "n_images": summary["n_images"],
        "n_bahd_undefined": summary["n_bahd_undefined"],
        "patch_size": patch,
    }
