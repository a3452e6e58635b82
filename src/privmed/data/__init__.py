"""The data layer: one dataset type, readers for medical formats, writers, patches and phantoms."""

from privmed.data import phantom
from privmed.data.dataset import ImageDataset
from privmed.data.loading import load, load_splits, parse_ref
from privmed.data.patches import extract_patches
from privmed.data.writers import save

__all__ = ["ImageDataset", "extract_patches", "load", "load_splits", "parse_ref", "phantom", "save"]
