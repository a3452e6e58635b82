"""``load(ref)``: from a reference string to an :class:`ImageDataset`.

A reference is ``PATH`` or ``PATH:SPLIT`` (the split follows the last colon, and only counts as one
when the part before it is an existing path or an embedded name), or one of the embedded phantoms
``phantom[:train|test]`` (vessel images with labels), ``phantom-classes[:train|test]`` (two
classes) and ``vessel-sim[:train|test]`` (the public retinal vessel simulator at its defaults), which
need no files. Embedded names win over a file of the same name (write ``./phantom``). A release
directory written by ``privmed generate`` or ``privmed privatize`` names the data inside it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from privmed.data.dataset import ImageDataset
from privmed.data.phantom import make_class_phantom, make_vessel_phantom
from privmed.data.readers import Reader, reader_for
from privmed.data.readers.base import resolve_split
from privmed.data.vessel_sim import make_vessel_sim
from privmed.errors import DataError


@dataclass(frozen=True)
class _Embedded:
    """An embedded dataset: a generator and, per split, its default size and seed (disjoint seeds)."""

    generate: Callable[..., ImageDataset]
    splits: dict[str, tuple[int, int]]
    size: int

    def read(self, split: str, *, n: int | None = None, size: int | None = None) -> ImageDataset:
        count, seed = self.splits[split]
        return self.generate(n or count, size=size or self.size, seed=seed, subject_prefix=split)


EMBEDDED: dict[str, _Embedded] = {
    "phantom": _Embedded(make_vessel_phantom, {"train": (16, 1001), "test": (8, 1002)}, size=96),
    "phantom-classes": _Embedded(make_class_phantom, {"train": (512, 2001), "test": (256, 2002)}, size=28),
    "vessel-sim": _Embedded(make_vessel_sim, {"train": (20, 3001), "test": (20, 3002)}, size=96),
}
"""Embedded refs. Options: ``n`` (images in the split) and ``size`` (pixels per side)."""


RELEASE_DATA = ("data.npz", "data", "images")
"""Where a release directory (``privmed generate`` / ``privatize`` output, with its privacy.json) keeps its data."""


def release_data(path: Path) -> Path:
    """The data inside a release directory (privacy.json beside data.npz, data/ or images/); any other path unchanged."""
    if path.is_dir() and (path / "privacy.json").is_file():
        for name in RELEASE_DATA:
            if (path / name).exists():
                return path / name
    return path


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split a reference into (path or embedded name, split or None)."""
    ref = str(ref)
    if ref in EMBEDDED or Path(ref).exists():
        return ref, None
    head, colon, split = ref.rpartition(":")
    if colon and split and (head in EMBEDDED or Path(head).exists()):
        return head, split
    return ref, None


def _check_options(read: Callable[..., Any], options: dict[str, Any], source: str) -> None:
    accepted = [p.name for p in inspect.signature(read).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise DataError(f"{source}: unknown option {', '.join(unknown)} (options for this source: {allowed})")


def _annotate(data: ImageDataset, ref: str, split: str) -> ImageDataset:
    return replace(data, metadata={**data.metadata, "ref": ref, "split": split})


def _source(ref: str) -> tuple[str, str | None, Reader | _Embedded, list[str]]:
    source, split = parse_ref(ref)
    if source in EMBEDDED:
        return source, split, EMBEDDED[source], list(EMBEDDED[source].splits)
    path = release_data(Path(source))
    reader = reader_for(path)
    return str(path), split, reader, reader.splits(path)


def _read(handler: Reader | _Embedded, source: str, split: str, options: dict[str, Any]) -> ImageDataset:
    _check_options(handler.read, options, source)
    if isinstance(handler, _Embedded):
        return handler.read(split, **options)
    return handler.read(Path(source), split, **options)


def _count_split(source: str, requested: str | None, options: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``NAME:N`` for an embedded source: its train split with N images (``vessel-sim:500``)."""
    if source in EMBEDDED and requested is not None and requested.isdigit():
        if int(requested) < 1:
            raise DataError(f"{source}:{requested}: the number of images must be at least 1")
        return "train", {**options, "n": int(requested)}
    return requested, options


def load(ref: str, **options: Any) -> ImageDataset:
    """Read the dataset ``ref`` names (a multi-split source without a split gives its train split).

    ``options`` go to the format's reader, e.g. ``label_folder="2nd_manual"`` for a DRIVE folder,
    ``volumes=True`` for NIfTI, ``n=``/``size=`` for the phantoms and ``vessel-sim``. An embedded
    source also takes a count for a split: ``vessel-sim:500`` is its train split with 500 images.
    """
    source, requested, handler, available = _source(ref)
    requested, options = _count_split(source, requested, options)
    split = resolve_split(requested, available, source)
    return _annotate(_read(handler, source, split, options), ref, split)


def load_splits(ref: str, **options: Any) -> dict[str, ImageDataset]:
    """Every split of ``ref`` (only the named one if ``ref`` has ``:SPLIT``), keyed by split name."""
    source, requested, handler, available = _source(ref)
    requested, options = _count_split(source, requested, options)
    names = [resolve_split(requested, available, source)] if requested else available
    return {name: _annotate(_read(handler, source, name, options), ref, name) for name in names}
