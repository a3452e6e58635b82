"""The accountant interface every privmed accountant follows (after Opacus's ``IAccountant``).

An accountant keeps a compact ``history`` of the private steps taken so far and turns it into an
epsilon for a given delta. Its ``state_dict`` goes into a checkpoint so a resumed run keeps
accounting from where it stopped instead of from zero.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from privmed.errors import PrivacyError
from privmed.privacy.report import DPSGD_MECHANISM


class PrivacyAccountant(ABC):
    """Tracks the privacy spent by a sequence of private steps or releases.

    ``mechanism`` is the accounting method's registry name ("rdp", "prv", "laplace");
    ``release_mechanism`` names what is being accounted, in words for a :class:`PrivacyReport`.
    """

    mechanism: ClassVar[str]
    release_mechanism: ClassVar[str]

    def __init__(self) -> None:
        self.history: list[tuple[Any, ...]] = []

    @abstractmethod
    def step(self, **parameters: Any) -> None:
        """Record one private step (or several identical ones) with this mechanism's parameters."""

    @abstractmethod
    def get_epsilon(self, delta: float) -> float:
        """The epsilon spent so far at ``delta`` (0.0 before any step)."""

    @property
    @abstractmethod
    def steps(self) -> int:
        """How many steps (or releases) have been recorded."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume accounting: the mechanism name and the history."""
        return {"mechanism": self.mechanism, "history": [list(entry) for entry in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; refuses one written by another accountant."""
        if not isinstance(state, dict) or "mechanism" not in state or "history" not in state:
            raise PrivacyError("accountant state must be a dict with 'mechanism' and 'history' (from state_dict())")
        if state["mechanism"] != self.mechanism:
            raise PrivacyError(
                f"accountant state was written by the {state['mechanism']!r} accountant, not {self.mechanism!r}"
            )
        self.history = [tuple(entry) for entry in state["history"]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps})"


class SubsampledGaussianAccountant(PrivacyAccountant):
    """Base of the DP-SGD accountants: a history of ``(noise_multiplier, sample_rate, num_steps)``.

    Consecutive identical steps are merged into one entry, as Opacus does, so a long run keeps a
    history of a few entries.
    """

    release_mechanism = DPSGD_MECHANISM

    def step(self, *, noise_multiplier: float, sample_rate: float, num_steps: int = 1) -> None:  # type: ignore[override]
        """Record ``num_steps`` Poisson-subsampled Gaussian steps (0 records nothing)."""
        noise_multiplier, sample_rate = float(noise_multiplier), float(sample_rate)
        if not math.isfinite(noise_multiplier) or noise_multiplier <= 0:
            raise PrivacyError(f"noise_multiplier must be a positive number, got {noise_multiplier}")
        if not 0 < sample_rate <= 1:
            raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate}")
        check_step_count(num_steps)
        if num_steps == 0:
            return
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            last = self.history.pop()
            self.history.append((noise_multiplier, sample_rate, last[2] + int(num_steps)))
        else:
            self.history.append((noise_multiplier, sample_rate, int(num_steps)))

    def get_epsilon(self, delta: float) -> float:
        delta = float(delta)
        if not 0 < delta < 1:
            raise PrivacyError(f"delta must be in (0, 1) for DP-SGD accounting, got {delta}")
        if not self.history:
            return 0.0
        # Opacus's RDP conversion can return a slightly negative epsilon when the loss is tiny; epsilon is never below 0.
        return max(0.0, self._epsilon(delta))

    @abstractmethod
    def _epsilon(self, delta: float) -> float:
        """Epsilon of the non-empty history at a valid ``delta``."""

    @property
    def steps(self) -> int:
        return sum(entry[2] for entry in self.history)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.history = [(float(sigma), float(rate), int(count)) for sigma, rate, count in self.history]


def check_step_count(num_steps: int) -> None:
    """Refuse a step count that is not a non-negative whole number."""
    whole = isinstance(num_steps, numbers.Integral) or (isinstance(num_steps, float) and num_steps.is_integer())
    if isinstance(num_steps, bool) or not whole or num_steps < 0:
        raise PrivacyError(f"num_steps must be a non-negative integer, got {num_steps}")
