"""``privmed evaluate attack``, ``privmed evaluate diversity`` and ``privmed audit`` on phantom data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privmed.cli import app
from privmed.data import load
from privmed.data.writers import save
from privmed.privacy.report import PrivacyReport

runner = CliRunner()
FAST = ["--encoder-steps", "10", "--resamples", "200", "--embedding-dim", "8"]


@pytest.fixture(scope="module")
def leaky_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Members saved as a dataset, and a 'release' folder holding those very images with a privacy.json."""
    root = tmp_path_factory.mktemp("attack")
    members = load("phantom-classes:train", n=40)
    members_path = save(members, root / "members.npz")
    release_dir = root / "release"
    save(members, release_dir / "images.npz")
    PrivacyReport(mechanism="laplace", accountant="laplace", unit="image", n_units=40, epsilon=1.0, delta=0.0).to_json(release_dir / "privacy.json")
    return members_path, release_dir / "images.npz"


def test_attack_reports_leak_with_dp_bound(leaky_release: tuple[Path, Path], tmp_path: Path) -> None:
    members, release = leaky_release
    out = tmp_path / "attack"
    args = ["evaluate", "attack", "--members", str(members), "--non-members", "phantom-classes:test", "--release", str(release), "--out", str(out), *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "attack.json").read_text())
    assert payload["privacy"]["epsilon"] == 1.0 and payload["privacy"]["unit"] == "image"
    assert payload["release"]["attacks"]["pairwise-pixel"]["auc"] > 0.95
    assert payload["controls"]["fresh-non-members"]["attacks"]["pairwise-pixel"]["auc"] < 0.7
    assert (out / "roc.png").is_file() and (out / "roc_controls.png").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already holds an attack.json" in again.output


def test_attack_with_unreadable_release_writes_nothing(leaky_release: tuple[Path, Path], tmp_path: Path) -> None:
    members, _ = leaky_release
    out = tmp_path / "attack"
    result = runner.invoke(app, ["evaluate", "attack", "--members", str(members), "--non-members", "phantom-classes:test",
                                 "--release", str(tmp_path / "missing.npz"), "--out", str(out), *FAST])
    assert result.exit_code == 1
    assert "error" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_audit_finds_memorization_and_respects_pixel_ldp(tmp_path: Path) -> None:
    memorize = tmp_path / "memorize.json"
    memorize.write_text(json.dumps({"method": "memorize", "data": "phantom-classes:test", "canaries": 60}))
    result = runner.invoke(app, ["audit", str(memorize), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "audit.json").read_text())
    assert found["correct"] == found["guesses"] == 30
    assert found["epsilon_lower_bound"] > 1.0 and found["consistent"] is None

    private = tmp_path / "ldp"
    private.mkdir()
    (private / "config.json").write_text(json.dumps({"method": "pixel-ldp", "epsilon": 1.0, "data": "phantom-classes:test", "canaries": 60}))
    result = runner.invoke(app, ["audit", str(private)])
    assert result.exit_code == 0, result.output
    audited = json.loads((private / "audit.json").read_text())
    assert audited["claimed_epsilon"] == 1.0 and audited["consistent"] is True


def test_audit_of_a_dp_acgan_scores_its_mislabelled_canaries_with_the_discriminator(tmp_path: Path) -> None:
    options = {"max_steps": 3, "batch_size": 16, "generator_channels": 8, "discriminator_channels": 8, "latent_dim": 16}
    config = tmp_path / "acgan.json"
    config.write_text(json.dumps({"method": "acgan", "epsilon": 2.0, "data": "phantom-classes:test", "canaries": 40, "options": options,
                                  "run_dir": str(tmp_path / "runs")}))
    result = runner.invoke(app, ["audit", str(config)])
    assert result.exit_code == 0, result.output
    audited = json.loads((tmp_path / "audit.json").read_text())
    claim = PrivacyReport.from_json(tmp_path / "runs" / "run-0" / "privacy.json")
    assert audited["score"] == "model" and audited["canaries"] == 40 and audited["guesses"] == 20
    assert audited["claimed_epsilon"] == pytest.approx(claim.epsilon) and audited["delta"] == pytest.approx(claim.delta)
    assert audited["epsilon_lower_bound"] <= audited["claimed_epsilon"] and audited["consistent"] is True
    assert claim.n_units == 256 - 40 + audited["included"]  # canaries are cut from the data, half of them put back


def test_audit_refuses_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"method": "teleport", "data": "phantom-classes:test"}))
    result = runner.invoke(app, ["audit", str(config)])
    assert result.exit_code == 1 and "cannot audit method" in result.output
    assert not (tmp_path / "audit.json").exists()
    config.write_text(json.dumps({"method": "acgan", "epsilon": 1.0, "data": "phantom-classes:test", "options": {"max_step": 3}}))
    result = runner.invoke(app, ["audit", str(config)])
    assert result.exit_code == 1 and "unknown AC-GAN option" in result.output
    assert not (tmp_path / "audit.json").exists()


@pytest.mark.slow
def test_diversity_writes_auc_and_umap(tmp_path: Path) -> None:
    out = tmp_path / "diversity"
    result = runner.invoke(app, ["evaluate", "diversity", "--real", "phantom-classes:test", "--synthetic", "phantom-classes:test", "--out", str(out),
                                 "--epochs", "1", "--encoder-steps", "5", "--resamples", "200", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "diversity.json").read_text())
    assert payload["n_real"] == payload["n_synthetic"] == 256
    assert payload["auc_low"] <= 0.5 + 0.1  # identical sets cannot be told apart
    assert (out / "umap.png").is_file()
