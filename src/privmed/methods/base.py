"""The protocol every privmed method follows, in the spirit of scikit-learn estimators.

Hyperparameters go to ``__init__`` (stored unchanged); ``fit(data)`` learns and returns ``self``;
a generative method then ``sample(n)``s, a privatizing one ``privatize(data)``s; and every method
states its guarantee with ``privacy_report()``. What was learned ends in an underscore.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from privmed.data.dataset import ImageDataset
from privmed.errors import NotFittedError, PrivmedError
from privmed.privacy.report import PrivacyReport


class PrivateMethod(ABC):
    """A method that releases something derived from private data under a DP guarantee."""

    @abstractmethod
    def fit(self, data: ImageDataset) -> Self:
        """Learn from ``data`` (the private set, or public data for a privatizer's network)."""

    @abstractmethod
    def privacy_report(self) -> PrivacyReport:
        """The guarantee of what this method has released so far."""

    def _check_fitted(self, *attributes: str) -> None:
        missing = [a for a in attributes if getattr(self, a, None) is None]
        if missing:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(data) first")


class GenerativeMethod(PrivateMethod):
    """Trains a generator under DP; every sample inherits its guarantee by post-processing."""

    @abstractmethod
    def sample(self, n: int, seed: int | None = None) -> ImageDataset:
        """Draw ``n`` synthetic records."""


class PrivatizingMethod(PrivateMethod):
    """Releases a noisy copy of each record (local DP per record)."""

    @abstractmethod
    def privatize(self, data: ImageDataset, seed: int | None = None) -> ImageDataset:
        """Return the privatized copy of ``data``."""


def class_index(names: list[str], class_label: int | str) -> int:
    """A class given by index or name -> its index among ``names`` (a :class:`PrivmedError` names the known classes)."""
    if isinstance(class_label, str) and class_label in names:
        return names.index(class_label)
    try:
        index = int(class_label)
    except ValueError:
        index = -1
    if not 0 <= index < len(names):
        raise PrivmedError(f"unknown class {class_label!r}: use an index 0..{len(names) - 1} or a name ({', '.join(names)})")
    return index
