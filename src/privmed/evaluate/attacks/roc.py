"""ROC analysis of a membership-inference attack, drawn beside the best ROC curve (epsilon, delta)-DP allows.

The bound itself is a privacy theorem (:func:`privmed.privacy.hypothesis.dp_roc_bound`); drawing it beside
the attacks' curves shows at a glance how far a release is from what its guarantee permits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from privmed.errors import PrivmedError
from privmed.evaluate.classifier import roc_auc_ci
from privmed.fileio import write_atomic
from privmed.privacy.hypothesis import dp_roc_bound

__all__ = [
    "LOW_FPR_TARGETS",
    "SEED_CANDIDATES",
    "SEED_CUTOFFS",
    "RocResult",
    "cutoff_table",
    "plot_roc_curves",
    "roc_analysis",
    "scaled_cutoffs",
    "tpr_at_fpr",
]

LOW_FPR_TARGETS = (0.001, 0.01)
"""False-positive rates at which the true-positive rate is reported (0.1% and 1%)."""

SEED_CUTOFFS = (50, 333)
"""Top-k cut-offs of seed 001's Table S1 (for 1000 candidates: the top 5% and the top third)."""

SEED_CANDIDATES = 1000
"""Number of candidates seed 001's cut-offs refer to; other sizes scale them."""


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The best true-positive rate among thresholds whose false-positive rate is at most ``target``."""
    allowed = np.asarray(fpr) <= target + 1e-12
    return float(np.max(np.asarray(tpr)[allowed])) if allowed.any() else 0.0


@dataclass
class RocResult:
    """One attack's ROC curve with AUC (BCa bootstrap interval) and its true-positive rate at low FPR."""

    auc: float
    auc_low: float
    auc_high: float
    confidence: float
    n_resamples: int
    tpr_at_fpr: dict[str, float]
    fpr: list[float] = field(repr=False)
    tpr: list[float] = field(repr=False)

    def to_dict(self, curve: bool = True) -> dict[str, Any]:
        payload = asdict(self)
        if not curve:
            payload.pop("fpr")
            payload.pop("tpr")
        return payload


def roc_analysis(
    is_member: np.ndarray,
    scores: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> RocResult:
    """ROC curve of ``scores`` (higher = more likely a member) against membership, AUC with a BCa interval."""
    labels = np.asarray(is_member).astype(np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise PrivmedError(f"{scores.size} attack scores for {labels.size} candidates")
    if not np.isfinite(scores).all():
        raise PrivmedError("attack scores must be finite")
    interval = roc_auc_ci(labels, scores, confidence=confidence, n_resamples=n_resamples, seed=seed)
    fpr, tpr, _ = roc_curve(labels, scores)
    return RocResult(
        auc=interval.auc,
        auc_low=interval.low,
        auc_high=interval.high,
        confidence=confidence,
        n_resamples=n_resamples,
        tpr_at_fpr={f"{target:g}": tpr_at_fpr(fpr, tpr, target) for target in LOW_FPR_TARGETS},
        fpr=[float(v) for v in fpr],
        tpr=[float(v) for v in tpr],
    )


def scaled_cutoffs(n_candidates: int, cutoffs: Sequence[int] = SEED_CUTOFFS) -> list[int]:
    """Seed 001's top-k cut-offs, scaled down in proportion when there are fewer than 1000 candidates."""
    scale = min(1.0, n_candidates / SEED_CANDIDATES)
    return sorted({max(1, min(n_candidates, round(k * scale))) for k in cutoffs})


def cutoff_table(is_member: np.ndarray, scores: np.ndarray, cutoffs: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """For the top-k scored candidates: how many are members, against the share expected by chance.

    Ties at the cut-off are broken by candidate order (a stable sort), so the table is reproducible.
    """
    labels = np.asarray(is_member).astype(bool).reshape(-1)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    rows = []
    for k in cutoffs if cutoffs is not None else scaled_cutoffs(labels.size):
        top = labels[order[:k]]
        rows.append({"top_k": int(k), "members": int(top.sum()), "member_fraction": float(top.mean()), "chance_fraction": float(labels.mean())})
    return rows


def plot_roc_curves(
    path: str | Path,
    curves: Mapping[str, RocResult],
    *,
    epsilon: float | None = None,
    delta: float = 0.0,
    unit: str | None = None,
    title: str = "Membership inference",
) -> Path:
    """Write the attacks' ROC curves (linear and log axes) with the (epsilon, delta)-DP bound, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 5))
    grid = np.concatenate([np.logspace(-5, 0, 400), np.linspace(0, 1, 400)])
    grid.sort()
    for axis, log in zip(axes, (False, True)):
        for name, result in curves.items():
            axis.plot(result.fpr, result.tpr, label=f"{name} (AUC {result.auc:.3f})", linewidth=1.3)
        if epsilon is not None:
            label = f"DP bound, epsilon={epsilon:g}, delta={delta:.1e}" + (f" per {unit}" if unit else "")
            axis.plot(grid, dp_roc_bound(grid, epsilon, delta), "k--", label=label, linewidth=1.5)
        axis.plot([1e-5, 1], [1e-5, 1], color="grey", linestyle=":", linewidth=1.0, label="chance")
        axis.set_xlabel("false-positive rate")
        axis.set_ylabel("true-positive rate")
        if log:
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlim(1e-3, 1)
            axis.set_ylim(1e-3, 1.02)
        else:
            axis.set_xlim(0, 1)
            axis.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    plt.close(figure)
    return Path(path)
