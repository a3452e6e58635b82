"""What every reader shares: the reader interface and the value conventions of privmed data.

Conventions (the same for every format):

- Images become float32 in [0, 1]: unsigned 8-bit values are divided by 255, 16-bit by 65535;
  float files must already lie in [0, 1] (volumes, NIfTI and DICOM, are min-max scaled instead).
- Segmentation labels and masks are binarized with ``> 0``. A label file must hold at most two
  distinct values, the smaller being 0 (0/1, 0/255, or all one value); anything else (a
  multi-class label map, a lossy JPEG label with in-between greys) is refused with a DataError,
  because silently thresholding it would change the ground truth.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError

ALL_SPLIT = "all"
"""The split name of a source that has no splits (one file, one folder of images)."""

SPLIT_ALIASES = {"train": "training", "training": "train", "val": "validation", "validation": "val"}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".bmp")


class Reader(ABC):
    """Reads one on-disk format into :class:`ImageDataset` splits."""

    name: str

    @abstractmethod
    def can_read(self, path: Path) -> bool:
        """Whether ``path`` looks like this format (cheap: names and headers, not the pixels)."""

    @abstractmethod
    def splits(self, path: Path) -> list[str]:
        """The split names ``path`` holds (``[ALL_SPLIT]`` when it has none)."""

    @abstractmethod
    def read(self, path: Path, split: str) -> ImageDataset:
        """Read one split (a name returned by :meth:`splits`). Format options are keyword-only."""


def to_unit_range(array: np.ndarray, source: Path | str) -> np.ndarray:
    """Integer pixel values scaled by their type's range, float values checked to lie in [0, 1]."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        top = int(array.max()) if array.size else 0
        if array.size and int(array.min()) < 0:
            raise DataError(f"{source}: negative pixel values; privmed reads unsigned 8- or 16-bit images")
        if array.dtype == np.uint8 or (top <= 255 and array.dtype != np.uint16):
            return array.astype(np.float32) / 255.0
        if top <= 65535:
            return array.astype(np.float32) / 65535.0
        raise DataError(f"{source}: pixel values above 65535; privmed reads 8- or 16-bit images")
    values = array.astype(np.float32)
    if values.size and (not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0):
        raise DataError(f"{source}: floating-point pixel values must lie in [0, 1]; rescale the file first")
    return values


def min_max_scale(array: np.ndarray, source: Path | str) -> np.ndarray:
    """Scale a whole volume to [0, 1] by its own minimum and maximum (a constant volume becomes 0)."""
    values = np.asarray(array, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        raise DataError(f"{source}: the volume contains NaN or infinite values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def binarize(array: np.ndarray, source: Path | str, what: str = "label") -> np.ndarray:
    """Binary uint8 array (``> 0``) after checking the file holds at most 0 and one other value."""
    values = np.unique(np.asarray(array))
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise DataError(f"{source}: a {what} must be binary (0 and one other value), found values {shown}")
    return (np.asarray(array) > 0).astype(np.uint8)


def read_image_file(path: Path, *, label: bool = False) -> np.ndarray:
    """Pixels of a 2D image file as stored: (H, W) or (H, W, C).

    Pillow reads PNG, GIF, JPEG, BMP and most TIFFs (including LZW-compressed, which tifffile cannot
    without imagecodecs); tifffile takes over for TIFFs Pillow cannot open (float, multi-sample).
    For a ``label`` the palette indices of a palette image are kept (DRIVE's 2nd_manual stores 0/1
    indices), and an RGB label with equal channels becomes one channel.
    """
    try:
        with Image.open(path) as image:
            pixels = _pillow_pixels(image, label)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as pillow_error:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise DataError(f"{path}: cannot read the image ({pillow_error})") from None
        pixels = _tifffile_pixels(path)
    if pixels.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2D image, got an array of shape {pixels.shape}")
    if label and pixels.ndim == 3:
        if not (pixels == pixels[..., :1]).all():
            raise DataError(f"{path}: a label image must have one channel (or equal colour channels)")
        pixels = pixels[..., 0]
    return pixels


def _pillow_pixels(image: Image.Image, label: bool) -> np.ndarray:
    mode = image.mode
    if mode == "P" and not label:
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    pixels = np.asarray(image)
    if image.mode in ("LA", "RGBA", "PA"):
        pixels = pixels[..., :-1]
        if pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
    return pixels


def _tifffile_pixels(path: Path) -> np.ndarray:
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many types for a broken or unsupported file
        raise DataError(f"{path}: cannot read the TIFF image ({exc})") from None


def channels_first(pixels: np.ndarray) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, C) -> (C, H, W)."""
    return pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)


def file_key(path: Path) -> str:
    """The matching key of a file: the first number in its name (DRIVE: '21_training' -> '21'), else its stem."""
    stem = strip_suffixes(path.name)
    match = re.search(r"\d+", stem)
    return str(int(match.group())) if match else stem


def record_id(path: Path) -> str:
    """The subject/source id of a file: its first number as written ('01'), else its stem."""
    stem = strip_suffixes(path.name)
    match = re.search(r"\d+", stem)
    return match.group() if match else stem


def strip_suffixes(name: str) -> str:
    """File name without its (possibly double, e.g. ``.nii.gz``) extension."""
    for suffix in (".nii.gz", ".tar.gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def resolve_split(requested: str | None, available: list[str], source: str) -> str:
    """The split to read: the requested one (``train``/``training`` are aliases), or the default.

    With no split given, a source with one split gives it, and a multi-split source gives
    ``train``/``training``.
    """
    if requested is None:
        if len(available) == 1:
            return available[0]
        for default in ("train", "training"):
            if default in available:
                return default
        raise DataError(f"{source} holds the splits {', '.join(available)}: choose one with {source}:SPLIT")
    if requested in available:
        return requested
    alias = SPLIT_ALIASES.get(requested)
    if alias in available:
        return alias
    raise DataError(f"{source} has no split {requested!r}; available: {', '.join(available)}")


def split_folders(root: Path) -> dict[str, Path]:
    """Folders holding an ``images/`` subfolder: ``root`` itself (split 'all') or its split subfolders."""
    if (root / "images").is_dir():
        return {ALL_SPLIT: root}
    children = [child for child in root.iterdir() if (child / "images").is_dir()]
    return {child.name: child for child in sorted(children, key=lambda c: (split_rank(c.name), c.name))}


def split_rank(name: str) -> int:
    """Sort position of a split name: train, then validation, then test, then anything else."""
    order = ("train", "training", "val", "validation", "test")
    return order.index(name) // 2 if name in order else len(order)


def first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first subfolder of ``folder`` named in ``names`` that exists."""
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    return None


def named_subfolder(folder: Path, name: str) -> Path:
    """``folder/name``, or a DataError listing the subfolders that do exist."""
    candidate = folder / name
    if not candidate.is_dir():
        present = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DataError(f"{candidate}: no such folder; {folder} has {', '.join(present) or 'no subfolders'}")
    return candidate
