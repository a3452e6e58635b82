"""Pure-epsilon accounting of Laplace releases by basic composition."""

from __future__ import annotations

import math

from privmed.errors import PrivacyError
from privmed.privacy.accountants.base import PrivacyAccountant, check_step_count
from privmed.privacy.report import LAPLACE_MECHANISM


class LaplaceAccountant(PrivacyAccountant):
    """Sums the epsilons of pure-DP releases (basic composition, Dwork & Roth 2014, Thm 3.16).

    The history holds ``(epsilon, count)`` with consecutive identical releases merged. Advanced
    composition would need a delta and only pays off for many releases; privmed makes few.
    """

    mechanism = "laplace"
    release_mechanism = LAPLACE_MECHANISM

    def step(self, *, epsilon: float, num_steps: int = 1) -> None:  # type: ignore[override]
        """Record ``num_steps`` releases, each ``epsilon``-DP."""
        epsilon = float(epsilon)
        if not math.isfinite(epsilon) or epsilon <= 0:
            raise PrivacyError(f"epsilon must be a positive number, got {epsilon}")
        check_step_count(num_steps)
        if num_steps == 0:
            return
        if self.history and self.history[-1][0] == epsilon:
            last = self.history.pop()
            self.history.append((epsilon, last[1] + int(num_steps)))
        else:
            self.history.append((epsilon, int(num_steps)))

    def get_epsilon(self, delta: float = 0.0) -> float:
        """The pure epsilon spent so far; ``delta`` is ignored (it is 0 for pure DP)."""
        return float(math.fsum(epsilon * count for epsilon, count in self.history))

    @property
    def steps(self) -> int:
        return sum(count for _, count in self.history)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = [(float(epsilon), int(count)) for epsilon, count in self.history]
