"""The data layer: one dataset type, readers for medical formats, writers, patches and phantoms."""

from privmed.data import phantom
from privmed.data.dataset import ImageDataset
from privmed.data.loading import load, load_splits, parse_ref
from privmed.data.patches import extract_patches, max_patches_per_subject
from privmed.data.writers import save

__all__ = ["ImageDataset", "extract_patches", "load", "max_patches_per_subject", "load_splits", "parse_ref", "phantom", "save"]
