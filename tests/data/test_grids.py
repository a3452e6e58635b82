"""Sample grids: each tile is the record's image beside its label, laid out row by row."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from privmed.data.dataset import ImageDataset
from privmed.data.grids import pair_grid, save_pair_grid
from privmed.errors import DataError


def _pairs(n: int, size: int = 8, channels: int = 1) -> ImageDataset:
    rng = np.random.default_rng(0)
    ids = np.array([f"s{i}" for i in range(n)])
    return ImageDataset(
        images=rng.random((n, channels, size, size), dtype=np.float32),
        segmentations=(rng.random((n, 1, size, size)) > 0.5).astype(np.uint8),
        subjects=ids,
        sources=ids,
    )


def test_tiles_hold_image_beside_label_at_their_grid_position() -> None:
    data = _pairs(5)
    grid = pair_grid(data, n=5, columns=2, padding=1)
    # 3 rows of tiles 8 high, 2 columns of tiles 16 wide (image + label), 1-pixel gaps.
    assert grid.shape == (3 * 8 + 4, 2 * 16 + 3, 3)
    top, left = 1 + 2 * 9, 1  # record 4: third row, first column
    image_tile = grid[top : top + 8, left : left + 8, 0]
    label_tile = grid[top : top + 8, left + 8 : left + 16, 0]
    np.testing.assert_array_equal(image_tile, np.round(data.images[4, 0] * 255).astype(np.uint8))
    np.testing.assert_array_equal(label_tile, data.segmentations[4, 0] * 255)
    # The unused last cell stays background.
    assert (grid[top : top + 8, 1 + 17 : 1 + 33] == 255).all()


def test_rgb_images_keep_their_colours() -> None:
    data = _pairs(1, channels=3)
    grid = pair_grid(data, n=1, columns=1, padding=0)
    np.testing.assert_array_equal(grid[:, :8], np.round(np.moveaxis(data.images[0], 0, -1) * 255).astype(np.uint8))


def test_saved_png_matches_the_grid_scaled(tmp_path) -> None:
    data = _pairs(4)
    path = save_pair_grid(data, tmp_path / "grid.png", n=4, columns=4, scale=2)
    saved = np.asarray(Image.open(path))
    expected = pair_grid(data, n=4, columns=4)
    np.testing.assert_array_equal(saved[::2, ::2], expected)
    assert saved.shape[:2] == (2 * expected.shape[0], 2 * expected.shape[1])


def test_empty_data_is_refused_and_nothing_written(tmp_path) -> None:
    empty = _pairs(2).subset(np.array([], dtype=np.int64))
    with pytest.raises(DataError, match="no records"):
        save_pair_grid(empty, tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()
