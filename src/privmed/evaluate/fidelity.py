"""Fidelity, diversity and memorisation of synthetic images (seed 000, section 3.4-3.5).

- FID and KID (torchmetrics ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with a
  custom feature extractor from :mod:`privmed.evaluate.features`): synthetic against the real
  training set and, when given, against a real test set. A release much closer to train than to
  test has copied its training data.
- SSIM diversity: mean SSIM (and MS-SSIM where the image is large enough) over K random pairs of
  synthetic images, beside the same for real images. A mode-collapsed generator scores near 1.
- Nearest-neighbour distance in pixel space (root mean square over pixels) from each synthetic
  image to the training set, beside the same from each real test image: synthetic images far
  closer to training images than unseen real images are have been memorised.
- t-SNE and UMAP plots of the extractor features of real and synthetic images.

Comparability. Every image goes through :func:`~privmed.evaluate.features.preprocess_images`
(one channel: green of RGB; CLAHE with a fixed 32-pixel kernel). When the real images are whole
images larger than the synthetic records (DRIVE 565x584 against 64x64 synthetic patches), real
patches of the synthetic size are cut first with :func:`privmed.data.extract_patches`, at the pixel
scale the generator was trained on; records of other sizes are then resized to the synthetic size.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.evaluate.features import DomainEncoder, FeatureExtractor, load_feature_extractor, preprocess_images
from privmed.fileio import write_atomic, write_json_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "FidelityConfig",
    "comparable_images",
    "embedding_plot",
    "evaluate_fidelity",
    "fid_kid",
    "nearest_neighbour_distances",
    "ssim_diversity",
]

SSIM_KERNEL = 11
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

PREPROCESSING = (
    "one channel (green of RGB, 1-channel as is); real whole images larger than the synthetic records are cut into "
    "patches of the synthetic size (privmed.data.extract_patches) at their own pixel scale; other sizes resized "
    "(bilinear) to the synthetic size; CLAHE with a fixed 32-pixel kernel"
)


@dataclass(frozen=True)
class FidelityConfig:
    """Sizes and seeds of a fidelity evaluation."""

    extractor: str = "domain"
    clahe: bool = True
    max_images: int = 1000
    real_patches_per_subject: int = 50
    encoder_steps: int = 300
    encoder_image_size: int = 64
    kid_subset_size: int = 100
    kid_subsets: int = 50
    ssim_pairs: int = 1000
    plots: bool = True
    plot_points: int = 300
    seed: int = 0


def _limit(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return images if len(images) <= n else images[np.sort(rng.choice(len(images), size=n, replace=False))]


def comparable_images(data: ImageDataset, side: tuple[int, int], config: FidelityConfig, rng: np.random.Generator) -> np.ndarray:
    """Preprocessed (N, 1, *side) images of ``data`` at the synthetic scale (module docstring)."""
    if data.images.ndim != 4:
        raise DataError(f"{data.name}: fidelity metrics take 2D images, got shape {data.images.shape}")
    if data.record_kind == "image" and all(s > t for s, t in zip(data.spatial_shape, side)) and side[0] == side[1]:
        from privmed.data import extract_patches

        data = extract_patches(data, side[0], config.real_patches_per_subject, seed=int(rng.integers(2**31)))
    images = _limit(data.images, config.max_images, rng)
    if images.shape[-2:] != side:
        tensor = torch.from_numpy(np.ascontiguousarray(images))
        images = F.interpolate(tensor, size=side, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1).numpy()
    return preprocess_images(images, clahe=config.clahe)


def fid_kid(
    extractor: FeatureExtractor, real: np.ndarray, synthetic: np.ndarray, kid_subset_size: int = 100, kid_subsets: int = 50, batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID (mean, SD over subsets) between two sets of float images in [0, 1].

    KID's random subsets are drawn from torch's generator seeded with ``seed`` (torchmetrics draws them
    from the global one, which made KID depend on whatever ran before).
    """
    if len(real) < 2 or len(synthetic) < 2:
        raise DataError("FID needs at least 2 real and 2 synthetic images")
    subset = min(kid_subset_size, len(real), len(synthetic))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    with warnings.catch_warnings():  # KID keeps every feature in memory by design; our sets are small
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=extractor, subsets=kid_subsets, subset_size=subset, normalize=True)
    extractor.eval()
    with torch.no_grad():
        for images, is_real in ((real, True), (synthetic, False)):
            for i in range(0, len(images), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
                fid.update(batch, real=is_real)
                kid.update(batch, real=is_real)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            kid_mean, kid_sd = kid.compute()
        return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_sd": float(kid_sd), "kid_subset_size": subset}


def _ms_ssim_betas(side: int) -> tuple[float, ...] | None:
    """MS-SSIM weights for the scales an image of ``side`` pixels supports (renormalised), or None."""
    # Each scale halves the image; torchmetrics also asks side // (scales - 1)**2 > kernel - 1.
    scales = max(
        (s for s in range(1, len(MS_SSIM_BETAS) + 1) if (SSIM_KERNEL - 1) * 2 ** (s - 1) < side and side // max(1, s - 1) ** 2 > SSIM_KERNEL - 1),
        default=0,
    )
    if scales < 2:
        return None
    betas = np.asarray(MS_SSIM_BETAS[:scales])
    return tuple(float(b) for b in betas / betas.sum())


def ssim_diversity(images: np.ndarray, pairs: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean and SD of SSIM (and MS-SSIM) over ``pairs`` random pairs of distinct images."""
    if len(images) < 2:
        raise DataError("SSIM diversity needs at least 2 images")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(images), size=pairs)
    second = (first + rng.integers(1, len(images), size=pairs)) % len(images)  # never the same image
    a = torch.from_numpy(np.ascontiguousarray(images[first])).float()
    b = torch.from_numpy(np.ascontiguousarray(images[second])).float()
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    result: dict[str, Any] = {"pairs": int(pairs), "ssim_mean": float(ssim.mean()), "ssim_sd": float(ssim.std())}
    betas = _ms_ssim_betas(min(images.shape[-2:]))
    if betas is not None:
        ms = multiscale_structural_similarity_index_measure(a, b, data_range=1.0, reduction="none", betas=betas)
        result.update(ms_ssim_mean=float(ms.mean()), ms_ssim_sd=float(ms.std()), ms_ssim_scales=len(betas))
    return result


def nearest_neighbour_distances(query: np.ndarray, reference: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Per query image, the root-mean-square pixel distance to its nearest reference image."""
    ref = torch.from_numpy(np.ascontiguousarray(reference.reshape(len(reference), -1))).double()
    pixels = ref.shape[1]
    out = []
    for i in range(0, len(query), batch_size):
        q = torch.from_numpy(np.ascontiguousarray(query[i : i + batch_size].reshape(-1, pixels))).double()
        out.append(torch.cdist(q, ref).min(dim=1).values / np.sqrt(pixels))
    return torch.cat(out).numpy() if out else np.zeros(0)


def _distance_summary(distances: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(distances.mean()),
        "median": float(np.median(distances)),
        "p05": float(np.percentile(distances, 5)),
        "min": float(distances.min()),
        "n": int(distances.size),
    }


def embedding_plot(features: dict[str, np.ndarray], method: str, path: str | os.PathLike[str], seed: int = 0) -> Path:
    """A 2D t-SNE (``method="tsne"``) or UMAP (``"umap"``) scatter plot of feature groups, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(features)
    stacked = np.concatenate([features[n] for n in names])
    stacked = (stacked - stacked.mean(0)) / (stacked.std(0) + 1e-8)
    if method == "tsne":
        from sklearn.manifold import TSNE

        embedding = TSNE(n_components=2, perplexity=min(30.0, (len(stacked) - 1) / 3), random_state=seed, init="pca").fit_transform(stacked)
    elif method == "umap":
        import umap

        embedding = umap.UMAP(n_components=2, n_neighbors=min(15, len(stacked) - 1), random_state=seed, n_jobs=1).fit_transform(stacked)
    else:
        raise ValueError(f"unknown embedding method {method!r}: use 'tsne' or 'umap'")
    figure, axes = plt.subplots(figsize=(5, 5), dpi=120)
    start = 0
    for name in names:
        stop = start + len(features[name])
        axes.scatter(embedding[start:stop, 0], embedding[start:stop, 1], s=6, alpha=0.7, label=name)
        start = stop
    axes.set_title(f"{'t-SNE' if method == 'tsne' else 'UMAP'} of extractor features")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
    return Path(path)


def evaluate_fidelity(
    real: ImageDataset,
    synthetic: ImageDataset,
    out_dir: str | os.PathLike[str],
    test: ImageDataset | None = None,
    config: FidelityConfig = FidelityConfig(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare ``synthetic`` with the real training data ``real`` (and ``test``); write ``fidelity.json``.

    ``config.extractor`` is ``"domain"`` (a :class:`DomainEncoder` trained here on the real images
    and saved as ``domain_encoder.pt``), or a path to a saved domain encoder or a TorchScript
    Inception-v3 file. Returns the report written to ``fidelity.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = progress or (lambda message: logger.info(message))
    rng = np.random.default_rng(config.seed)
    side = synthetic.spatial_shape
    if len(side) != 2:
        raise DataError(f"{synthetic.name}: fidelity metrics take 2D images, got spatial shape {side}")
    synthetic_images = comparable_images(synthetic, side, config, rng)
    real_images = comparable_images(real, side, config, rng)
    test_images = comparable_images(test, side, config, rng) if test is not None else None

    if config.extractor == "domain":
        note(f"training the domain encoder on {len(real_images)} real images")
        extractor: FeatureExtractor = DomainEncoder(in_channels=1, image_size=config.encoder_image_size).fit(
            real_images, steps=config.encoder_steps, seed=config.seed
        )
        extractor.trained_on["dataset"] = real.name
        extractor.save(out / "domain_encoder.pt")
    else:
        extractor = load_feature_extractor(config.extractor)

    note("FID and KID")
    report: dict[str, Any] = {
        "extractor": extractor.describe(),
        "note": "FID/KID depend on the feature extractor: compare only figures computed with the same extractor file",
        "preprocessing": PREPROCESSING,
        "config": asdict(config),
        "real": {"dataset": real.name, "images_used": int(len(real_images))},
        "synthetic": {"dataset": synthetic.name, "images_used": int(len(synthetic_images)), "spatial_shape": list(side)},
    }
    train_scores = fid_kid(extractor, real_images, synthetic_images, config.kid_subset_size, config.kid_subsets)
    report.update(fid_train=train_scores["fid"], kid_train_mean=train_scores["kid_mean"], kid_train_sd=train_scores["kid_sd"])
    if test_images is not None:
        report["test"] = {"dataset": test.name, "images_used": int(len(test_images))}
        test_scores = fid_kid(extractor, test_images, synthetic_images, config.kid_subset_size, config.kid_subsets)
        report.update(fid_test=test_scores["fid"], kid_test_mean=test_scores["kid_mean"], kid_test_sd=test_scores["kid_sd"])

    note("SSIM diversity")
    report["diversity"] = {
        "synthetic": ssim_diversity(synthetic_images, config.ssim_pairs, config.seed),
        "real": ssim_diversity(real_images, config.ssim_pairs, config.seed),
    }
    note("nearest-neighbour distances")
    report["nearest_neighbour"] = {"synthetic_to_train": _distance_summary(nearest_neighbour_distances(synthetic_images, real_images))}
    if test_images is not None:
        report["nearest_neighbour"]["test_to_train"] = _distance_summary(nearest_neighbour_distances(test_images, real_images))

    if config.plots:
        note("t-SNE and UMAP plots")
        groups = {"real (train)": real_images, "synthetic": synthetic_images}
        if test_images is not None:
            groups["real (test)"] = test_images
        features = {name: extractor.features(_limit(images, config.plot_points, rng)) for name, images in groups.items()}
        report["plots"] = [embedding_plot(features, method, out / f"{method}.png", config.seed).name for method in ("tsne", "umap")]
    write_json_atomic(out / "fidelity.json", report)
    return report
