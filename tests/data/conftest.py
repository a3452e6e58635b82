"""Small files in every format privmed reads, written fresh for each test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Write ``pixels`` with Pillow (format from the suffix) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def drive_like(tmp_path: Path) -> Path:
    """A DRIVE-shaped folder: RGB TIFF images, GIF labels (0/255) and masks, a 2nd observer as 0/1."""
    rng = np.random.default_rng(0)
    root = tmp_path / "drive"
    for split, numbers in (("training", (21, 22, 23)), ("test", (1, 2))):
        for number in numbers:
            label = (rng.random((12, 10)) > 0.7).astype(np.uint8)
            mask = np.zeros((12, 10), np.uint8)
            mask[1:-1, 1:-1] = 255
            write_image(root / split / "images" / f"{number:02d}_{split}.tif", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
            write_image(root / split / "1st_manual" / f"{number:02d}_manual1.gif", label * 255)
            write_image(root / split / "mask" / f"{number:02d}_{split}_mask.gif", mask)
            if split == "test":
                write_image(root / split / "2nd_manual" / f"{number:02d}_manual2.gif", label)
    return root
