"""Invertible flows: Glow, a conditional INN and a tabular flow, with exact likelihoods.

Every flow is an :class:`InvertibleFlow`: ``encode(x, c=None) -> z`` (flat, standard normal),
``decode(z, c=None) -> x``, ``log_prob(x, c=None)`` in nats, ``sample(n, c=None)``, and ``config``,
from which :func:`build_flow` rebuilds an untrained copy (for loading checkpoints).
"""

from __future__ import annotations

from typing import Any

from privmed.errors import PrivmedError
from privmed.models.flows.base import InvertibleFlow
from privmed.models.flows.cinn import ConditionalINN
from privmed.models.flows.glow import Glow
from privmed.models.flows.tabular import TabularFlow

FLOW_KINDS: dict[str, type[InvertibleFlow]] = {"glow": Glow, "cinn": ConditionalINN, "tabular": TabularFlow}


def build_flow(config: dict[str, Any]) -> InvertibleFlow:
    """A new flow from ``flow.config`` (a ``kind`` plus the constructor arguments)."""
    options = dict(config)
    kind = options.pop("kind", None)
    if kind not in FLOW_KINDS:
        raise PrivmedError(f"unknown flow kind {kind!r}: expected one of {', '.join(FLOW_KINDS)}")
    return FLOW_KINDS[kind](**options)


__all__ = ["FLOW_KINDS", "ConditionalINN", "Glow", "InvertibleFlow", "TabularFlow", "build_flow"]
