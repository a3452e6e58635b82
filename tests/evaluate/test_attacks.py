"""Membership-inference attacks: distances, neighbour counts, density ratio, model scores, full runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from privmed.data import load
from privmed.errors import PrivmedError
from privmed.evaluate.attacks import (
    AttackEmbedding,
    DensityRatioAttack,
    load_member_scorer,
    model_scores,
    nearest_distances,
    neighbour_counts,
    run_attacks,
    select_candidates,
    write_attack_report,
)
from privmed.evaluate.attacks.distribution import distance_percentile
from privmed.methods.pixel_ldp import PixelLDP
from privmed.methods.registry import METHODS, MethodKind, MethodSpec


def test_nearest_distances_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    candidates, release = rng.random((30, 1, 4, 4)), rng.random((50, 1, 4, 4))
    expected = cdist(candidates.reshape(30, -1), release.reshape(50, -1)).min(axis=1)
    np.testing.assert_allclose(nearest_distances(candidates, release), expected)
    with pytest.raises(PrivmedError):
        nearest_distances(candidates, release[:, :, :2])


def test_neighbour_counts_and_percentile_radius() -> None:
    rng = np.random.default_rng(1)
    candidates, release = rng.random((20, 3)), rng.random((40, 3))
    distances = cdist(candidates, release)
    radius = distance_percentile(candidates, release, 1.0)
    assert radius == pytest.approx(np.percentile(distances, 1.0))
    np.testing.assert_array_equal(neighbour_counts(candidates, release, 0.3), (distances <= 0.3).sum(axis=1))


def test_density_ratio_flags_points_the_release_overfits() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(400, 2))
    members = rng.normal(size=(20, 2))
    release = np.concatenate([members + 0.05 * rng.normal(size=(20, 2)) for _ in range(10)])  # piles up on members
    others = rng.normal(size=(20, 2))
    for density in ("kde", "gmm"):
        scores = DensityRatioAttack(density=density, n_components=10).fit(release, reference).score(np.concatenate([members, others]))
        assert scores[:20].mean() > scores[20:].mean()
    with pytest.raises(PrivmedError):
        DensityRatioAttack(density="histogram")


def test_candidates_are_a_third_members(tmp_path) -> None:
    members, non_members = load("phantom-classes:train", n=30), load("phantom-classes:test", n=90)
    chosen = select_candidates(members, non_members, keep_spare=True, seed=0)
    assert chosen.is_member.sum() == 30 and (~chosen.is_member).sum() == 60
    assert len(chosen.spare_non_members) == 30
    with pytest.raises(PrivmedError):
        select_candidates(members.subset([0]), non_members, keep_spare=False)


@pytest.fixture(scope="module")
def phantom_split():
    train = load("phantom-classes:train", n=120)
    return train.subset(np.arange(40)), load("phantom-classes:test", n=150), train.subset(np.arange(40, 120))


def _attack(members, non_members, release, **options):
    return run_attacks(members, non_members, release, embedding=AttackEmbedding(dim=8, encoder_steps=15), n_resamples=200, **options)


def test_copy_of_members_is_exposed_and_independent_data_is_not(phantom_split, tmp_path) -> None:
    members, non_members, independent = phantom_split
    leaked = _attack(members, non_members, members)
    for name in ("pairwise-pixel", "pairwise-embedding"):
        assert leaked.release.results[name].auc > 0.95
    assert leaked.release.cutoffs["pairwise-pixel"][0]["member_fraction"] == 1.0
    safe = _attack(members, non_members, independent)
    for name, result in safe.release.results.items():
        assert 0.4 <= result.auc <= 0.6, name
    assert safe.controls["members-copy"].results["pairwise-pixel"].auc > 0.95
    assert 0.35 <= safe.controls["fresh-non-members"].results["pairwise-pixel"].auc <= 0.65
    paths = write_attack_report(tmp_path, safe)
    payload = json.loads(paths["attack"].read_text())
    assert payload["candidates"] == {"members": 40, "non_members": 80}
    assert set(payload["release"]["attacks"]) >= {"pairwise-pixel", "distribution-embedding", "density-ratio"}
    assert paths["roc"].read_bytes()[:4] == b"\x89PNG"


def test_model_score_protocol_is_found_through_the_run_config(phantom_split, tmp_path, monkeypatch) -> None:
    members, non_members, _ = phantom_split
    known = members.images.reshape(len(members), -1)

    def score_members(model_dir, data):
        return -cdist(data.images.reshape(len(data), -1), known).min(axis=1)

    spec = MethodSpec(name="memorizing-standin", cls=PixelLDP, kind=MethodKind.GENERATIVE, title="stand-in", member_scorer=score_members)
    monkeypatch.setitem(METHODS, spec.name, spec)
    (tmp_path / "config.json").write_text(json.dumps({"method": "memorizing-standin"}))
    assert load_member_scorer(tmp_path) is score_members
    assert model_scores(tmp_path, members).max() == 0.0
    report = _attack(members, non_members, non_members.subset(np.arange(10)), model_dir=tmp_path)
    assert report.release.results["model-score"].auc > 0.95
    (tmp_path / "config.json").write_text(json.dumps({"method": "pixel-ldp"}))
    with pytest.raises(PrivmedError, match="no model-score attack"):
        load_member_scorer(tmp_path)
