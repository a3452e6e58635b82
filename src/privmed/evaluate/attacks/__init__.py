"""Membership-inference attacks on a release (seed 001's pairwise and distribution attacks, a
DOMIAS-style density ratio, model scores), and their ROC analysis (drawn beside the DP bound of :mod:`privmed.privacy.hypothesis`)."""

from privmed.evaluate.attacks.density_ratio import DensityRatioAttack
from privmed.evaluate.attacks.distribution import distribution_scores, neighbour_counts
from privmed.evaluate.attacks.embedding import AttackEmbedding
from privmed.evaluate.attacks.model_score import MemberScorer, load_member_scorer, model_scores
from privmed.evaluate.attacks.pairwise import nearest_distances, pairwise_scores
from privmed.evaluate.attacks.report import AttackReport, attack_release, run_attacks, select_candidates, write_attack_report
from privmed.evaluate.attacks.roc import RocResult, cutoff_table, plot_roc_curves, roc_analysis, tpr_at_fpr

__all__ = [
    "AttackEmbedding",
    "AttackReport",
    "DensityRatioAttack",
    "MemberScorer",
    "RocResult",
    "attack_release",
    "cutoff_table",
    "distribution_scores",
    "load_member_scorer",
    "model_scores",
    "nearest_distances",
    "neighbour_counts",
    "pairwise_scores",
    "plot_roc_curves",
    "roc_analysis",
    "run_attacks",
    "select_candidates",
    "tpr_at_fpr",
    "write_attack_report",
]
