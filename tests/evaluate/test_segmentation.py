"""U-Net segmentation utility: training, whole-image inference, scale handling, report files."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.evaluate.features import preprocess_images
from privmed.evaluate.segmentation import (
    SegmentationConfig,
    evaluate_segmentation,
    observer_scores,
    predict,
    score_model,
    segmentation_utility,
    train_unet,
)
from privmed.evaluate.segmentation_metrics import compute_masked_dice

TINY = dict(channels=(8, 16, 32), num_res_units=1, batch_size=8)


def line_images(n: int, size: int = 48, seed: int = 0, rgb: bool = False) -> ImageDataset:
    """Dark straight 'vessels' on a noisy bright background, with exact labels and a FOV mask."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 1, size, size), np.uint8)
    for i in range(n):
        for _ in range(3):
            position = rng.integers(4, size - 4)
            if rng.random() < 0.5:
                labels[i, 0, position - 1 : position + 2, :] = 1
            else:
                labels[i, 0, :, position - 1 : position + 2] = 1
    gray = np.where(labels == 1, 0.3, 0.7) + rng.normal(0, 0.05, labels.shape)
    images = np.clip(gray, 0, 1).astype(np.float32)
    if rgb:
        images = np.concatenate([np.full_like(images, 0.5), images, np.full_like(images, 0.2)], axis=1)
    masks = np.ones_like(labels)
    masks[:, :, :2, :] = 0
    names = [f"{seed}-{i}" for i in range(n)]
    return ImageDataset(images=images, segmentations=labels, masks=masks, subjects=names, sources=names, name=f"lines{seed}")


def test_green_channel_is_used_for_rgb() -> None:
    rgb = line_images(2, rgb=True)
    gray = line_images(2)
    assert np.allclose(preprocess_images(rgb, clahe=False), gray.images)
    assert preprocess_images(rgb).shape == (2, 1, 48, 48)


def test_unet_learns_lines_and_scores_on_whole_images() -> None:
    train, test = line_images(6, seed=1), line_images(3, size=64, seed=2)
    trained_config = SegmentationConfig(steps=80, patch_size=32, channels=(8, 16, 32), num_res_units=0, batch_size=8, learning_rate=1e-2)
    trained, _, _ = score_model(train_unet(train, trained_config), test, trained_config, 32, "trained", "t", train=train)
    untrained_config = SegmentationConfig(steps=1, patch_size=32, channels=(8, 16, 32), num_res_units=0, batch_size=8)
    untrained, _, _ = score_model(train_unet(train, untrained_config), test, untrained_config, 32, "untrained", "t", train=train)
    assert trained.summary()["dice_mean"] > 0.75
    assert trained.summary()["dice_mean"] > untrained.summary()["dice_mean"] + 0.2
    assert 0 <= trained.summary()["bahd_mean"] < 2.0


def test_segmentation_utility_summarises_the_scores() -> None:
    result = segmentation_utility(line_images(3, seed=1), line_images(2, size=40, seed=2), steps=3, patch_size=96, seed=0)
    assert result["patch_size"] == 48  # records of 48 pixels train at their own size
    assert result["n_images"] == 2 and 0.0 <= result["dice"] <= 1.0
    assert {"dice", "dice_sd", "bahd", "bahd_sd", "n_bahd_undefined"} <= set(result)


def test_small_records_train_at_their_own_size() -> None:
    config = SegmentationConfig(steps=2, patch_size=96, **TINY)
    model = train_unet(line_images(3, size=40), config)
    predictions, _ = predict(model, line_images(1, size=70), config, patch_size=40)
    assert predictions.shape == (1, 1, 70, 70)


def test_records_too_small_are_refused() -> None:
    with pytest.raises(DataError, match="too small"):
        train_unet(line_images(2, size=12), SegmentationConfig(steps=1))


def test_whole_image_training_resamples_test_images() -> None:
    config = SegmentationConfig(steps=40, patch_size=32, **TINY)
    train = line_images(6, size=32, seed=3)
    test = line_images(2, size=32, seed=4)
    upsampled = ImageDataset(
        images=test.images.repeat(2, axis=2).repeat(2, axis=3),
        segmentations=test.segmentations.repeat(2, axis=2).repeat(2, axis=3),
        subjects=test.subjects,
        sources=test.sources,
    )
    model = train_unet(train, config)
    small, _ = predict(model, test, config, 32, train=train)
    large, _ = predict(model, upsampled, config, 32, train=train)
    assert large.shape == (2, 1, 64, 64)
    # Resampled to the training size, the 2x image gives the 2x prediction of the small one, up to
    # the bilinear upsampling of the probabilities at vessel borders.
    agreement = (large == small.repeat(2, axis=2).repeat(2, axis=3)).mean()
    assert agreement > 0.85
    small_scores = compute_masked_dice(torch.from_numpy(small), torch.from_numpy(test.segmentations)).mean()
    large_scores = compute_masked_dice(torch.from_numpy(large), torch.from_numpy(upsampled.segmentations)).mean()
    assert abs(float(small_scores) - float(large_scores)) < 0.05


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path) -> None:
    config = SegmentationConfig(steps=8, patch_size=32, **TINY)
    train = line_images(3)
    uninterrupted = train_unet(train, config)

    def crash(step: int, total: int, loss: float) -> None:
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_unet(train, config, checkpoint=tmp_path / "unet.pt", checkpoint_every=4, progress=crash)
    assert torch.load(tmp_path / "unet.pt", weights_only=False)["step"] == 4
    steps_run = []
    resumed = train_unet(train, config, checkpoint=tmp_path / "unet.pt", checkpoint_every=4, progress=lambda step, _total, _loss: steps_run.append(step))
    assert steps_run == [5, 6, 7, 8]
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_checkpoint_resumes_on_another_device(tmp_path) -> None:
    """The device is not part of the checkpoint key: a run stopped on one device goes on from its step on another."""
    config = SegmentationConfig(steps=8, patch_size=32, **TINY)
    train = line_images(3)

    def crash(step: int, total: int, loss: float) -> None:
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_unet(train, config, checkpoint=tmp_path / "unet.pt", checkpoint_every=4, progress=crash)
    steps_run = []
    moved = SegmentationConfig(steps=8, patch_size=32, device="cpu:0", **TINY)
    model = train_unet(train, moved, checkpoint=tmp_path / "unet.pt", checkpoint_every=4, progress=lambda step, _total, _loss: steps_run.append(step))
    assert steps_run == [5, 6, 7, 8]
    assert next(model.parameters()).device == torch.device("cpu")


def test_observer_identical_labels_score_perfectly() -> None:
    test = line_images(2)
    scores = observer_scores(test, test, "t").summary()
    assert scores["dice_mean"] == pytest.approx(1.0) and scores["bahd_mean"] == 0.0


def test_observer_for_other_images_is_refused() -> None:
    with pytest.raises(DataError, match="other images"):
        observer_scores(line_images(2, seed=5), line_images(2, seed=6), "t")


def test_report_files_and_empty_ground_truth(tmp_path) -> None:
    test = line_images(3, seed=7)
    labels = test.segmentations.copy()
    labels[2] = 0  # one test image with no vessel at all
    test = ImageDataset(images=test.images, segmentations=labels, masks=test.masks, subjects=test.subjects, sources=test.sources, name="t")
    observer = ImageDataset(images=test.images, segmentations=test.segmentations, masks=test.masks, subjects=test.subjects, sources=test.sources)
    config = SegmentationConfig(steps=30, patch_size=32, **TINY)
    report = evaluate_segmentation(
        line_images(4), {"t": test}, tmp_path, config, reference_train=line_images(4, seed=9), observers={"t": observer}, n_overlays=2
    )
    summary = json.loads((tmp_path / "segmentation.json").read_text())
    assert [r["model"] for r in summary["results"]] == [report.model, "U-Net trained on lines9 (real reference)", "second observer"]
    main = summary["results"][0]
    assert main["n_images"] == 3 and main["n_bahd_undefined"] == 1  # prediction on an empty ground truth
    rows = list(csv.DictReader((tmp_path / "per_image.csv").open()))
    assert len(rows) == 9
    empty = [r for r in rows if r["source"] == test.sources[2] and r["model"] == report.model][0]
    assert empty["bahd_defined"] == "False" and math.isinf(float(empty["bahd"]))
    finite = [float(r["bahd"]) for r in rows if r["model"] == report.model and r["bahd_defined"] == "True"]
    assert main["bahd_mean"] == pytest.approx(np.mean(finite))
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 4
    assert (tmp_path / "unet_train.pt").exists() and (tmp_path / "unet_reference.pt").exists()


def test_unlabelled_test_set_is_refused(tmp_path) -> None:
    test = line_images(2)
    unlabelled = ImageDataset(images=test.images, subjects=test.subjects, sources=test.sources, name="nolabels")
    with pytest.raises(DataError, match="nolabels"):
        evaluate_segmentation(line_images(2), {"x": unlabelled}, tmp_path, SegmentationConfig(steps=1, patch_size=32, **TINY))
    assert not (tmp_path / "segmentation.json").exists()
