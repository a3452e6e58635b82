"""The privacy report: every field survives JSON, and the summary line states the unit."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from privmed.errors import PrivacyError
from privmed.privacy.report import DPSGD_MECHANISM, LAPLACE_MECHANISM, PrivacyReport


def full_report() -> PrivacyReport:
    return PrivacyReport(
        mechanism=DPSGD_MECHANISM,
        accountant="rdp",
        unit="patch",
        n_units=1234,
        epsilon=8.0,
        delta=1e-5,
        sample_rate=0.01,
        noise_multiplier=1.1,
        laplace_scale=0.5,
        sensitivity=2.0,
        max_grad_norm=1.0,
        steps=10000,
        seed=42,
        reproducible=True,
        notes=["critic only is private", "patches overlap"],
        group_privacy={"unit": "patient", "records_per_unit": 3, "epsilon": 24.0, "delta": 0.01},
        dataset="drive",
        public_data=["class labels"],
        created="2026-01-01T00:00:00+00:00",
        versions={"privmed": "0.1.0"},
    )


def test_every_field_survives_the_json_round_trip(tmp_path: Path) -> None:
    report = full_report()
    defaults = PrivacyReport(mechanism="m", accountant="a", unit="u", n_units=1, epsilon=1.0, delta=0.0)
    for field in dataclasses.fields(PrivacyReport):
        assert getattr(report, field.name) != getattr(defaults, field.name), f"{field.name} is not exercised"
    path = report.to_json(tmp_path / "run" / "privacy.json")
    assert json.loads(path.read_text()) == report.to_dict()
    assert PrivacyReport.from_json(path) == report
    assert [p.name for p in path.parent.iterdir()] == ["privacy.json"]  # no temporary file left behind


def test_versions_and_creation_time_are_filled_in() -> None:
    report = PrivacyReport(mechanism=LAPLACE_MECHANISM, accountant="laplace", unit="image", n_units=10, epsilon=1.0, delta=0.0)
    assert {"privmed", "torch", "opacus", "dp-accounting", "numpy"} <= set(report.versions)
    assert report.versions["opacus"] != "not installed"
    assert report.created.startswith("20") and "T" in report.created


def test_summary_line_states_epsilon_delta_unit_and_accountant() -> None:
    assert full_report().summary_line() == "(epsilon=8.00, delta=1.0e-05)-DP per patch, DP-SGD, RDP accountant"
    laplace = PrivacyReport(mechanism=LAPLACE_MECHANISM, accountant="laplace", unit="image", n_units=5, epsilon=0.5, delta=0.0)
    assert laplace.summary_line() == "epsilon=0.50-DP per image, Laplace, basic composition"


def test_infinite_epsilon_round_trips_and_says_no_guarantee(tmp_path: Path) -> None:
    report = dataclasses.replace(full_report(), epsilon=math.inf)
    assert report.to_dict()["epsilon"] == "inf"
    assert PrivacyReport.from_json(report.to_json(tmp_path / "privacy.json")).epsilon == math.inf
    assert "no DP guarantee" in report.summary_line()


def test_bad_report_files_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(PrivacyError, match="missing.json"):
        PrivacyReport.from_json(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(PrivacyError, match="broken.json"):
        PrivacyReport.from_json(broken)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({**full_report().to_dict(), "epsilon_typo": 1}))
    with pytest.raises(PrivacyError, match="epsilon_typo"):
        PrivacyReport.from_json(extra)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"mechanism": "Laplace"}))
    with pytest.raises(PrivacyError, match="incomplete"):
        PrivacyReport.from_json(partial)


def test_plural_of_unit_words() -> None:
    from privmed.privacy.units import plural

    assert [plural(w) for w in ("patch", "image", "patient", "epoch", "slice")] == ["patches", "images", "patients", "epochs", "slices"]
    assert plural("patch", 1) == "patch"
