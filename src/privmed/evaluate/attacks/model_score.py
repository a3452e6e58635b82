"""Model-score attacks: when the trained model itself is available, ask it who it has seen.

A method opts in by registering, as its ``member_scorer`` in :mod:`privmed.methods.registry`, a function::

    def score_members(model_dir: Path, data: ImageDataset) -> np.ndarray: ...

returning one score per image, higher meaning "more likely trained on" (a GAN discriminator's
realness score, a flow's log-likelihood). :func:`load_member_scorer` finds it through the run
directory's ``config.json`` (key ``method``), so every release is attacked the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError

__all__ = ["MemberScorer", "load_member_scorer", "model_scores"]


@runtime_checkable
class MemberScorer(Protocol):
    """What a method provides for model-score attacks."""

    def __call__(self, model_dir: Path, data: ImageDataset) -> np.ndarray: ...


def _method_name(model_dir: Path) -> str:
    config_path = model_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrivmedError(f"{model_dir}: not a run directory (no config.json)") from None
    except json.JSONDecodeError as exc:
        raise PrivmedError(f"{config_path}: not valid JSON ({exc})") from None
    name = config.get("method") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise PrivmedError(f"{config_path}: names no method (key 'method'), so no model score can be computed")
    return name


def load_member_scorer(model_dir: str | Path) -> MemberScorer:
    """The model-score attack registered for the method that trained ``model_dir``."""
    from privmed.methods.registry import get_method

    model_dir = Path(model_dir)
    name = _method_name(model_dir)
    try:
        spec = get_method(name)
    except PrivmedError:
        raise PrivmedError(f"{model_dir}: method {name!r} is not a privmed method") from None
    if spec.member_scorer is None:
        raise PrivmedError(f"method {name!r} offers no model-score attack (no member_scorer in privmed.methods.registry)")
    return spec.member_scorer


def model_scores(model_dir: str | Path, data: ImageDataset, scorer: MemberScorer | None = None) -> np.ndarray:
    """Scores of ``data`` by the model in ``model_dir`` (higher = more likely a member), checked for shape."""
    scorer = scorer or load_member_scorer(model_dir)
    scores = np.asarray(scorer(Path(model_dir), data), dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(data):
        raise PrivmedError(f"{model_dir}: the model gave {scores.shape[0]} scores for {len(data)} images")
    return scores
