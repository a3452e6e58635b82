"""ROC analysis of attacks: curves under the DP bound, low-FPR rates, top-k tables, and the BCa interval's coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

from privmed.errors import PrivmedError
from privmed.evaluate.attacks.roc import cutoff_table, plot_roc_curves, roc_analysis, scaled_cutoffs, tpr_at_fpr
from privmed.privacy.hypothesis import dp_roc_bound


def _under_bound(member: np.ndarray, scores: np.ndarray, epsilon: float) -> bool:
    """Every point of the empirical ROC lies under the bound, allowing 4 standard errors on each rate."""
    fpr, tpr, _ = roc_curve(member, scores)
    n_pos, n_neg = member.sum(), (~member).sum()
    slack_fpr = 4 * np.sqrt(fpr * (1 - fpr) / n_neg + 1 / n_neg**2)
    slack_tpr = 4 * np.sqrt(tpr * (1 - tpr) / n_pos + 1 / n_pos**2)
    return bool(np.all(tpr - slack_tpr <= dp_roc_bound(fpr + slack_fpr, epsilon)))


def test_randomized_response_roc_lies_under_its_bound() -> None:
    """An epsilon-DP randomized response on membership: its empirical ROC respects the bound (up to sampling)."""
    epsilon, n = 1.0, 20_000
    rng = np.random.default_rng(0)
    member = rng.random(n) < 0.5
    keep = rng.random(n) < math.exp(epsilon) / (1 + math.exp(epsilon))
    reported = np.where(keep, member, ~member).astype(float)
    assert _under_bound(member, reported, epsilon)
    assert not _under_bound(member, reported, epsilon / 2)  # the check has power: half the epsilon is violated
    # The mechanism attains the bound's corner: TPR e^eps/(1+e^eps) at FPR 1/(1+e^eps).
    corner = 1 / (1 + math.exp(epsilon))
    assert dp_roc_bound(corner, epsilon) == pytest.approx(1 - corner)


def test_laplace_mechanism_roc_lies_under_its_bound() -> None:
    epsilon, n = 2.0, 20_000
    rng = np.random.default_rng(1)
    member = rng.random(n) < 0.5
    released = member + rng.laplace(scale=1 / epsilon, size=n)
    assert _under_bound(member, released, epsilon)
    assert not _under_bound(member, released, epsilon / 2)


def test_tpr_at_fpr_takes_the_best_rate_within_the_budget() -> None:
    fpr = np.array([0.0, 0.0005, 0.002, 0.01, 0.5, 1.0])
    tpr = np.array([0.0, 0.10, 0.20, 0.30, 0.9, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.001) == 0.10
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.30


def test_cutoff_table_counts_members_in_the_top_scores() -> None:
    member = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    rows = cutoff_table(member, scores, cutoffs=[1, 3])
    assert [row["members"] for row in rows] == [1, 2]
    assert rows[1]["member_fraction"] == pytest.approx(2 / 3)
    assert rows[0]["chance_fraction"] == pytest.approx(1 / 3)
    assert scaled_cutoffs(1000) == [50, 333]
    assert scaled_cutoffs(300) == [15, 100]


def test_bca_interval_covers_a_known_auc_in_most_simulations() -> None:
    """Scores N(d, 1) for members and N(0, 1) for others have AUC Phi(d / sqrt 2)."""
    shift = 1.0
    true_auc = norm.cdf(shift / math.sqrt(2))
    rng = np.random.default_rng(7)
    covered = 0
    for simulation in range(40):
        member = np.repeat([True, False], [40, 80])
        scores = rng.normal(size=member.size) + shift * member
        result = roc_analysis(member, scores, n_resamples=2000, seed=simulation)
        assert result.auc_low <= result.auc <= result.auc_high
        covered += result.auc_low <= true_auc <= result.auc_high
    assert covered / 40 >= 0.85


def test_roc_analysis_refuses_mismatched_scores_and_plot_is_written(tmp_path) -> None:
    with pytest.raises(PrivmedError):
        roc_analysis(np.array([1, 0, 1]), np.array([0.1, 0.2]))
    result = roc_analysis(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.3]), n_resamples=100)
    path = plot_roc_curves(tmp_path / "roc.png", {"attack": result}, epsilon=1.0, delta=1e-5, unit="image")
    assert path.read_bytes()[:4] == b"\x89PNG"
