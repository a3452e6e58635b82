"""Sample grids: a quick look at generated (or real) image + label pairs, as one PNG.

Each tile shows a record's image with its segmentation label beside it, so a reader sees at once
whether the labels follow the structures in the images. Volumes show their middle slice.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError
from privmed.fileio import write_atomic

_BACKGROUND = 255


def _as_rgb(array: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8; one channel is shown in gray, three as colour."""
    if array.shape[0] == 3:
        rgb = np.moveaxis(array, 0, -1)
    else:
        rgb = np.repeat(array[0][..., None], 3, axis=-1)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def _middle_slice(array: np.ndarray) -> np.ndarray:
    """(C, *spatial) -> (C, H, W): the middle slice of a volume, a 2D image unchanged."""
    return array[:, array.shape[1] // 2] if array.ndim == 4 else array


def pair_grid(data: ImageDataset, n: int = 16, columns: int = 4, padding: int = 2) -> np.ndarray:
    """An (H, W, 3) uint8 grid of the first ``n`` records, each image beside its label.

    Records without segmentations are shown alone. Tiles are separated by ``padding`` white pixels.
    """
    if len(data) == 0:
        raise DataError(f"{data.name}: no records to show in a grid")
    if n < 1 or columns < 1 or padding < 0:
        raise DataError(f"grid needs n >= 1, columns >= 1, padding >= 0; got n={n}, columns={columns}, padding={padding}")
    count = min(n, len(data))
    tiles = []
    for index in range(count):
        parts = [_as_rgb(_middle_slice(data.images[index]))]
        if data.segmentations is not None:
            parts.append(_as_rgb(_middle_slice(data.segmentations[index].astype(np.float32))))
        tiles.append(np.concatenate(parts, axis=1))
    tile_h, tile_w = tiles[0].shape[:2]
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.full(
        (rows * tile_h + (rows + 1) * padding, columns * tile_w + (columns + 1) * padding, 3), _BACKGROUND, dtype=np.uint8
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top = padding + row * (tile_h + padding)
        left = padding + column * (tile_w + padding)
        grid[top : top + tile_h, left : left + tile_w] = tile
    return grid


def save_pair_grid(
    data: ImageDataset, path: str | os.PathLike[str], n: int = 16, columns: int = 4, scale: int = 1
) -> Path:
    """Write :func:`pair_grid` of ``data`` to ``path`` as PNG (atomically), enlarged ``scale`` times."""
    grid = pair_grid(data, n=n, columns=columns)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    image = Image.fromarray(grid)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
