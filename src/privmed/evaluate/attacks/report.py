"""Run every membership-inference attack on a release, with its two controls, and write the report.

Candidates follow seed 001: one third members (images the release was trained on), two thirds
non-members. Each attack scores every candidate (higher = more likely a member); its ROC curve,
AUC with a BCa bootstrap interval, true-positive rate at FPR 0.1% and 1%, and seed 001's top-k
cut-off table are reported. Two controls calibrate the reading: the same attacks against a copy of
the members as the "release" (a release that memorised everything: AUC near 1) and against fresh
non-member images (a release that saw none of the candidates: AUC near 0.5).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError, PrivmedError
from privmed.evaluate.attacks.density_ratio import DensityRatioAttack
from privmed.evaluate.attacks.distribution import EMBEDDING_PERCENTILE, PIXEL_PERCENTILE, distribution_scores
from privmed.evaluate.attacks.embedding import AttackEmbedding
from privmed.evaluate.attacks.model_score import MemberScorer, model_scores
from privmed.evaluate.attacks.pairwise import pairwise_scores
from privmed.evaluate.attacks.roc import RocResult, cutoff_table, plot_roc_curves, roc_analysis
from privmed.fileio import write_json_atomic
from privmed.privacy.report import PrivacyReport

logger = logging.getLogger(__name__)

__all__ = ["AttackReport", "CandidateSet", "ReleaseAttack", "attack_release", "run_attacks", "select_candidates", "write_attack_report"]

StageCallback = Callable[[str], None]
"""Called with the name of each stage as it starts (for a progress display)."""


@dataclass(frozen=True)
class CandidateSet:
    """Candidate images with their membership truth, and the non-members left over for the controls."""

    candidates: ImageDataset
    is_member: np.ndarray
    spare_non_members: ImageDataset | None


@dataclass
class ReleaseAttack:
    """Every attack against one release: ROC results, top-k tables, and the neighbourhood radii used."""

    release: str
    n_release: int
    results: dict[str, RocResult]
    cutoffs: dict[str, list[dict[str, Any]]]
    radii: dict[str, float]

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        return {
            "release": self.release,
            "n_release": self.n_release,
            "attacks": {name: result.to_dict(curve=curves) for name, result in self.results.items()},
            "cutoffs": self.cutoffs,
            "radii": self.radii,
        }


@dataclass
class AttackReport:
    """What ``privmed evaluate attack`` writes to attack.json."""

    n_members: int
    n_non_members: int
    release: ReleaseAttack
    controls: dict[str, ReleaseAttack]
    privacy: dict[str, Any] | None
    embedding: dict[str, Any]
    seed: int
    notes: list[str] = field(default_factory=list)

    def best_auc(self) -> tuple[str, float]:
        """The strongest attack on the release and its AUC."""
        name = max(self.release.results, key=lambda key: self.release.results[key].auc)
        return name, self.release.results[name].auc

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": {"members": self.n_members, "non_members": self.n_non_members},
            "privacy": self.privacy,
            "release": self.release.to_dict(),
            "controls": {name: control.to_dict(curves=False) for name, control in self.controls.items()},
            "embedding": self.embedding,
            "seed": self.seed,
            "notes": self.notes,
        }


def _check_shapes(reference: ImageDataset, *others: ImageDataset) -> None:
    for data in others:
        if data.images.shape[1:] != reference.images.shape[1:]:
            raise DataError(
                f"{data.name}: images of shape {data.images.shape[1:]} cannot be compared with {reference.name}'s {reference.images.shape[1:]}"
            )


def _concatenate(first: ImageDataset, second: ImageDataset, name: str) -> ImageDataset:
    labels = None
    if first.labels is not None and second.labels is not None:
        labels = np.concatenate([first.labels, second.labels])
    return ImageDataset(
        images=np.concatenate([first.images, second.images]),
        subjects=np.concatenate([first.subjects, second.subjects]),
        sources=np.concatenate([first.sources, second.sources]),
        labels=labels,
        name=name,
        record_kind=first.record_kind,
    )


def select_candidates(members: ImageDataset, non_members: ImageDataset, *, keep_spare: bool, seed: int = 0) -> CandidateSet:
    """Draw k members and 2k non-members (seed 001's thirds), k as large as the data allows.

    With ``keep_spare`` a third of the non-members is held back (for the reference density and
    the fresh-data control when no reference set is given).
    """
    _check_shapes(members, non_members)
    usable = len(non_members) // 3 if keep_spare else len(non_members) // 2
    k = min(len(members), usable)
    if k < 2:
        raise PrivmedError(f"too few images for an attack: {len(members)} members and {len(non_members)} non-members give {k} member candidates (need 2)")
    rng = np.random.default_rng(seed)
    member_idx = np.sort(rng.choice(len(members), size=k, replace=False))
    shuffled = rng.permutation(len(non_members))
    chosen, spare = np.sort(shuffled[: 2 * k]), np.sort(shuffled[2 * k :])
    candidates = _concatenate(members.subset(member_idx), non_members.subset(chosen), name="candidates")
    is_member = np.concatenate([np.ones(k, dtype=bool), np.zeros(2 * k, dtype=bool)])
    return CandidateSet(candidates, is_member, non_members.subset(spare) if spare.size else None)


def attack_release(
    candidates: CandidateSet,
    release: ImageDataset,
    embedding: AttackEmbedding,
    *,
    reference: ImageDataset | None = None,
    member_scores: np.ndarray | None = None,
    density: str = "kde",
    n_resamples: int = 2000,
    seed: int = 0,
) -> ReleaseAttack:
    """Score the candidates against one release with every applicable attack."""
    _check_shapes(candidates.candidates, release)
    pixels_candidates, pixels_release = candidates.candidates.images, release.images
    embedded_candidates, embedded_release = embedding.transform(candidates.candidates), embedding.transform(release)
    scores: dict[str, np.ndarray] = {
        "pairwise-pixel": pairwise_scores(pixels_candidates, pixels_release),
        "pairwise-embedding": pairwise_scores(embedded_candidates, embedded_release),
    }
    radii: dict[str, float] = {}
    scores["distribution-pixel"], radii["pixel"] = distribution_scores(pixels_candidates, pixels_release, PIXEL_PERCENTILE, seed=seed)
    scores["distribution-embedding"], radii["embedding"] = distribution_scores(embedded_candidates, embedded_release, EMBEDDING_PERCENTILE, seed=seed)
    if reference is not None and len(reference) >= 2 and len(release) >= 2:
        attack = DensityRatioAttack(density=density, seed=seed).fit(embedded_release, embedding.transform(reference))
        scores["density-ratio"] = attack.score(embedded_candidates)
    if member_scores is not None:
        scores["model-score"] = np.asarray(member_scores, dtype=np.float64)
    results = {name: roc_analysis(candidates.is_member, values, n_resamples=n_resamples, seed=seed) for name, values in scores.items()}
    cutoffs = {name: cutoff_table(candidates.is_member, values) for name, values in scores.items()}
    return ReleaseAttack(release.name, len(release), results, cutoffs, radii)


def _privacy_summary(privacy: PrivacyReport | None) -> dict[str, Any] | None:
    if privacy is None:
        return None
    return {"epsilon": "inf" if math.isinf(privacy.epsilon) else privacy.epsilon, "delta": privacy.delta, "unit": privacy.unit, "summary": privacy.summary_line()}


def run_attacks(
    members: ImageDataset,
    non_members: ImageDataset,
    release: ImageDataset,
    *,
    reference: ImageDataset | None = None,
    model_dir: str | Path | None = None,
    scorer: MemberScorer | None = None,
    privacy: PrivacyReport | None = None,
    embedding: AttackEmbedding | None = None,
    density: str = "kde",
    n_resamples: int = 2000,
    seed: int = 0,
    on_stage: StageCallback | None = None,
) -> AttackReport:
    """Attack ``release`` and the two controls; ``members`` are the images the release was trained on."""
    stage = on_stage or (lambda name: None)
    notes: list[str] = []
    candidates = select_candidates(members, non_members, keep_spare=reference is None, seed=seed)
    pool = reference if reference is not None else candidates.spare_non_members
    if pool is not None:
        _check_shapes(candidates.candidates, pool)
    if reference is None:
        notes.append("no reference set given: the non-members not drawn as candidates serve as reference and fresh-data control")
    stage("embedding")
    embedding = embedding or AttackEmbedding(seed=seed)
    embedding.fit(candidates.candidates if pool is None else _concatenate(candidates.candidates, pool, name="attacker-real"))
    member_scores = None
    if model_dir is not None:
        stage("model scores")
        member_scores = model_scores(model_dir, candidates.candidates, scorer)
    stage("release")
    main = attack_release(candidates, release, embedding, reference=pool, member_scores=member_scores, density=density, n_resamples=n_resamples, seed=seed)
    controls: dict[str, ReleaseAttack] = {}
    stage("control: copy of the members")
    copy = replace(members, name="control: copy of the members")
    controls["members-copy"] = attack_release(candidates, copy, embedding, reference=pool, density=density, n_resamples=n_resamples, seed=seed)
    if pool is not None and len(pool) >= 4:
        stage("control: fresh non-members")
        half = len(pool) // 2
        fresh, fresh_reference = replace(pool.subset(np.arange(half)), name="control: fresh non-members"), pool.subset(np.arange(half, len(pool)))
        controls["fresh-non-members"] = attack_release(candidates, fresh, embedding, reference=fresh_reference, density=density, n_resamples=n_resamples, seed=seed)
    else:
        notes.append("too few spare non-members (need 4) for the fresh-data control; give --reference")
    if privacy is None:
        notes.append("no privacy report found for the release: the ROC curves carry no DP bound")
    report = AttackReport(
        n_members=int(candidates.is_member.sum()),
        n_non_members=int((~candidates.is_member).sum()),
        release=main,
        controls=controls,
        privacy=_privacy_summary(privacy),
        embedding=embedding.describe(),
        seed=seed,
        notes=notes,
    )
    name, auc = report.best_auc()
    logger.info("strongest attack on %s: %s, AUC %.3f", release.name, name, auc)
    return report


def write_attack_report(out_dir: str | Path, report: AttackReport, privacy: PrivacyReport | None = None) -> dict[str, Path]:
    """Write attack.json, roc.png (release, with the DP bound) and roc_controls.png to ``out_dir``."""
    out = Path(out_dir)
    epsilon = privacy.epsilon if privacy is not None else None
    delta = privacy.delta if privacy is not None else 0.0
    unit = privacy.unit if privacy is not None else None
    paths = {"attack": write_json_atomic(out / "attack.json", report.to_dict())}
    paths["roc"] = plot_roc_curves(out / "roc.png", report.release.results, epsilon=epsilon, delta=delta, unit=unit, title=f"Membership inference on {report.release.release}")
    control_curves = {f"{name}: {attack}": result for name, control in report.controls.items() for attack, result in control.results.items()}
    paths["roc_controls"] = plot_roc_curves(out / "roc_controls.png", control_curves, title="Controls: members copy (should be ~1) and fresh non-members (~0.5)")
    return paths
