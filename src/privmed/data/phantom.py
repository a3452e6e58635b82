"""Synthetic phantoms: the embedded default data, so the demo and the tests need no files.

``make_vessel_phantom`` mimics the green channel of a fundus photograph (DRIVE) or a vessel patch
(seed 000): branching vessel trees, darker than a smooth textured background, inside a circular
field of view, with exact binary vessel labels. ``make_class_phantom`` mimics a small chest X-ray
(PneumoniaMNIST): two classes, "abnormal" carrying a diffuse bright opacity in one lung field.
Both are deterministic given ``seed`` and fast (vectorised numpy/scipy).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError

CLASS_PHANTOM_NAMES = ("normal", "abnormal")


def _check_sizes(n: int, size: int, minimum_size: int) -> None:
    if n < 1:
        raise DataError(f"phantom: the number of images must be at least 1, got {n}")
    if size < minimum_size:
        raise DataError(f"phantom: size must be at least {minimum_size} pixels, got {size}")


def _smooth_texture(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to zero mean and unit standard deviation per image."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma))
    spatial_axes = tuple(range(len(shape) - 2, len(shape)))
    noise -= noise.mean(axis=spatial_axes, keepdims=True)
    return noise / (noise.std(axis=spatial_axes, keepdims=True) + 1e-8)


def _vessel_centerlines(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre-line points (x, y) and radii of a few branching trees grown from an optic-disc-like root."""
    centre = size / 2.0
    disc_angle = rng.uniform(0, 2 * np.pi)
    root = centre + 0.25 * size * np.array([np.cos(disc_angle), np.sin(disc_angle)])
    branches = []
    for trunk_angle in disc_angle + np.pi + rng.uniform(-1.3, 1.3, size=rng.integers(3, 5)):
        branches.append((root[0], root[1], trunk_angle, rng.uniform(0.014, 0.02) * size, 0))
    xs, ys, radii = [], [], []
    while branches:
        x0, y0, angle0, radius0, depth = branches.pop()
        length = max(int(rng.uniform(0.22, 0.42) * size), 4)
        angles = angle0 + np.cumsum(rng.normal(0.0, 0.09, length))
        x = x0 + np.cumsum(np.cos(angles))
        y = y0 + np.cumsum(np.sin(angles))
        radius = np.linspace(radius0, 0.72 * radius0, length)
        xs.append(x)
        ys.append(y)
        radii.append(radius)
        if depth < 3 and radius[-1] > 0.45:
            for side in (-1.0, 1.0):
                split = rng.integers(length // 2, length)
                spread = side * rng.uniform(0.35, 0.8)
                branches.append((x[split], y[split], angles[split] + spread, 0.8 * radius[split], depth + 1))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(radii)


def _rasterize_vessels(xs: np.ndarray, ys: np.ndarray, radii: np.ndarray, size: int) -> np.ndarray:
    """Binary map of pixels within each centre point's radius (nearest centre point decides)."""
    cols = np.rint(xs).astype(int)
    rows = np.rint(ys).astype(int)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    radius_map = np.zeros((size, size))
    np.maximum.at(radius_map, (rows[inside], cols[inside]), radii[inside])
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(radius_map == 0, return_indices=True)
    return (distance <= np.maximum(radius_map[near_rows, near_cols], 0.5)) & (radius_map[near_rows, near_cols] > 0)


def make_vessel_phantom(n_subjects: int, size: int = 96, seed: int = 0, subject_prefix: str = "vessel") -> ImageDataset:
    """Fundus-like vessel images with exact binary vessel labels and a field-of-view disc mask.

    One grayscale image per subject (``subjects`` = ``sources`` = ``f"{subject_prefix}-{i:03d}"``).
    Vessels are darker than the background, as in the green channel of a fundus photograph; the
    background is smooth texture with a bright-centre illumination falloff plus pixel noise.
    """
    _check_sizes(n_subjects, size, 16)
    rng = np.random.default_rng(seed)
    coords = np.arange(size) - (size - 1) / 2.0
    radius_grid = np.hypot(coords[:, None], coords[None, :])
    fov = radius_grid <= 0.46 * size
    vessels = np.zeros((n_subjects, size, size), dtype=bool)
    for i in range(n_subjects):
        vessels[i] = _rasterize_vessels(*_vessel_centerlines(rng, size), size) & fov
    illumination = 0.62 - 0.22 * (radius_grid / (0.46 * size)) ** 2
    texture = _smooth_texture(rng, (n_subjects, 1, size, size), sigma=size / 12)[:, 0]
    contrast = rng.uniform(0.18, 0.28, size=(n_subjects, 1, 1))
    vessel_shade = ndimage.gaussian_filter(vessels.astype(float), sigma=(0, 0.6, 0.6))
    image = illumination + 0.05 * texture - contrast * vessel_shade + rng.normal(0.0, 0.015, vessels.shape)
    image = np.clip(image, 0.0, 1.0) * fov
    ids = np.array([f"{subject_prefix}-{i:03d}" for i in range(n_subjects)])
    return ImageDataset(
        images=image[:, None].astype(np.float32),
        segmentations=vessels[:, None].astype(np.uint8),
        masks=np.broadcast_to(fov, vessels.shape)[:, None].astype(np.uint8),
        subjects=ids,
        sources=ids,
        name="phantom",
        record_kind="image",
        subjects_known=True,
        metadata={"generator": "make_vessel_phantom", "seed": seed, "size": size},
    )


def make_class_phantom(n: int, size: int = 28, seed: int = 0, subject_prefix: str = "chest") -> ImageDataset:
    """Chest-X-ray-like images in two balanced classes, "normal" (0) and "abnormal" (1).

    Every image has two dark lung fields in a brighter body, faint ribs, smooth texture and noise,
    all jittered per image; an abnormal image adds a diffuse bright opacity of random position, size
    and strength (some faint) inside one lung, so the classes are learnable but overlap.
    """
    _check_sizes(n, size, 8)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    grid = (np.arange(size) + 0.5) / size
    rows = grid[None, :, None]
    cols = grid[None, None, :]
    jitter = rng.normal(0.0, 0.025, size=(n, 4, 1, 1))
    lung_rows = 0.52 + jitter[:, 0]
    lungs = np.zeros((n, size, size))
    for side, centre in ((1, 0.30), (2, 0.70)):
        ellipse = ((cols - centre - jitter[:, side]) / 0.17) ** 2 + ((rows - lung_rows) / 0.3) ** 2
        lungs = np.maximum(lungs, np.clip(1.2 - ellipse, 0.0, 1.0))
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (rows * 7.0 + jitter[:, 3] * 4))
    texture = _smooth_texture(rng, (n, 1, size, size), sigma=size / 10)[:, 0]
    image = 0.72 - 0.42 * lungs + 0.06 * ribs * lungs + 0.05 * texture
    chosen_lung = rng.choice([0.30, 0.70], size=(n, 1, 1))
    blob_col = chosen_lung + rng.normal(0.0, 0.05, size=(n, 1, 1))
    blob_row = lung_rows + rng.uniform(-0.15, 0.15, size=(n, 1, 1))
    blob_width = rng.uniform(0.08, 0.16, size=(n, 1, 1))
    strength = rng.uniform(0.08, 0.3, size=(n, 1, 1)) * labels[:, None, None]
    blob = np.exp(-(((rows - blob_row) ** 2 + (cols - blob_col) ** 2) / (2 * blob_width**2)))
    image = image + strength * blob * lungs + rng.normal(0.0, 0.03, size=image.shape)
    ids = np.array([f"{subject_prefix}-{i:04d}" for i in range(n)])
    return ImageDataset(
        images=np.clip(image, 0.0, 1.0)[:, None].astype(np.float32),
        labels=labels.astype(np.int64),
        class_names=CLASS_PHANTOM_NAMES,
        subjects=ids,
        sources=ids,
        name="phantom-classes",
        record_kind="image",
        subjects_known=True,
        metadata={"generator": "make_class_phantom", "seed": seed, "size": size},
    )
