"""``privmed report``: a self-contained page with the guarantee, its warnings, the ledger total and the evidence."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from privmed.cli import app
from privmed.errors import PrivmedError
from privmed.evaluate.attacks.report import AttackReport, ReleaseAttack
from privmed.evaluate.attacks.roc import RocResult
from privmed.fileio import write_json_atomic
from privmed.privacy.group import group_privacy_report
from privmed.privacy.ledger import BudgetLedger
from privmed.privacy.report import DPSGD_MECHANISM, LAPLACE_MECHANISM, PrivacyReport
from privmed.report.html import build_report, write_report

runner = CliRunner()
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Page(HTMLParser):
    """Checks that every element closes in order, and collects ids, URL attributes and image sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.images: list[str] = []
        self.tags: dict[str, list[dict[str, str | None]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.setdefault(tag, []).append(values)
        self.ids += [v for k, v in attrs if k == "id" and v]
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster", "srcset") and v is not None]
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _report(**changes: object) -> PrivacyReport:
    fields: dict[str, object] = {
        "mechanism": DPSGD_MECHANISM, "accountant": "rdp", "unit": "image", "n_units": 100, "epsilon": 2.0, "delta": 1e-3,
        "sample_rate": 0.1, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "steps": 50, "seed": 0, "dataset": "toy@0123456789abcdef",
    }  # fmt: skip
    fields.update(changes)
    return PrivacyReport(**fields)  # type: ignore[arg-type]


def _release(path: Path, report: PrivacyReport) -> Path:
    path.mkdir(parents=True)
    report.to_json(path / "privacy.json")
    return path


def _warnings(page: str) -> str:
    match = re.search(r'<ul class="warnings">(.*?)</ul>', page, flags=re.DOTALL)
    return match.group(1) if match else ""


@pytest.fixture(scope="module")
def page(releases: dict[str, Path]) -> str:
    return build_report([releases["R"], releases["S"], releases["C"]], ledger=releases["ledger"])


def test_the_page_states_each_release_epsilon_and_unit(page: str, releases: dict[str, Path]) -> None:
    dpwgan = PrivacyReport.from_json(releases["R"] / "privacy.json")
    cadp = PrivacyReport.from_json(releases["C"] / "privacy.json")
    assert f"(epsilon = {dpwgan.epsilon:.3g}, delta = {dpwgan.delta:.2g}) per patch" in page
    assert "epsilon = 5 per image (pure DP, delta = 0)" in page
    assert cadp.unit == "image" and cadp.epsilon == 5.0
    assert page.count('<section id="release-') == 3
    # What a patient gets from the patch-level run: the group-privacy statement of the report itself.
    assert dpwgan.group_privacy is not None and dpwgan.group_privacy["statement"] in page


def test_the_page_is_well_formed_html5_with_a_title_and_language(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    parsed = _parse(page)
    assert parsed.errors == [] and parsed.stack == []
    assert len(parsed.ids) == len(set(parsed.ids))
    title = re.search(r"<title>(.+?)</title>", page)
    assert title is not None and "privmed release report" in title.group(1)


def test_nothing_is_fetched_from_outside_and_every_image_is_an_embedded_png(page: str) -> None:
    parsed = _parse(page)
    assert not [url for url in parsed.urls if re.match(r"(?i)\s*(https?:)?//", url)]
    assert "<script" not in page and "url(" not in page and "@import" not in page
    assert all(url.startswith(("data:", "#")) for url in parsed.urls)
    # R: samples, real examples, training curves; S: samples, real impossible (no ref); C: privatized and originals.
    assert len(parsed.images) >= 6
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            assert image.format == "PNG" and image.width > 0


def test_the_ledger_total_is_the_ledger_spend_for_the_dataset(page: str, releases: dict[str, Path]) -> None:
    ledger = BudgetLedger(releases["ledger"])
    dpwgan = PrivacyReport.from_json(releases["R"] / "privacy.json")
    run_id = json.loads((releases["R"] / "config.json").read_text())["run_id"]
    key = next(e["dataset_key"] for e in ledger.entries() if e["release_id"] == run_id)
    assert "@" not in dpwgan.dataset and key.split("@")[0] == dpwgan.dataset  # privacy.json names the data, the ledger keys it
    epsilon, _ = ledger.spent(key, "patch")
    assert epsilon == pytest.approx(dpwgan.epsilon)
    assert f"Ledger total for {dpwgan.dataset}</strong> per patch (record level): epsilon = {epsilon:.4g}" in page
    cadp_key = next(e["dataset_key"] for e in ledger.entries() if e["release_id"].startswith("cadp-"))
    assert key not in page and cadp_key not in page
    assert f"Ledger total for {cadp_key.split('@')[0]}</strong> per image (image level): epsilon = 5," in page


def test_a_release_missing_from_the_ledger_says_so(tmp_path: Path) -> None:
    release = _release(tmp_path / "rel", _report())
    page = build_report([release], ledger=tmp_path / "ledger.json")
    assert "Ledger total: not in ledger" in page


def test_real_examples_and_training_curves_appear_and_can_be_left_out(releases: dict[str, Path]) -> None:
    full = build_report([releases["R"], releases["C"]], ledger=releases["ledger"])
    assert "real: first 8 of 16 records of phantom" in full
    assert "real: the same 16 records before privatization" in full
    assert 'alt="training curves from metrics.csv"' in full and "Internal document." in full
    shared = build_report([releases["R"], releases["C"]], ledger=releases["ledger"], include_private=False)
    assert "real:" not in shared and "training curves from metrics.csv" not in shared and "Internal document." not in shared
    assert "released: first 16 of 256 records" in shared


@pytest.mark.parametrize(
    ("report", "expected", "level"),
    [
        (_report(unit="patch", n_units=1760, epsilon=8.0, delta=5e-4, group_privacy=group_privacy_report(8.0, 5e-4, 110, "patient", "patch")),
         "Record-level guarantee while patients contribute many records: a patient with 110 patches", "danger"),
        (_report(unit="patch", n_units=1000, epsilon=0.05, delta=1e-6, group_privacy=group_privacy_report(0.05, 1e-6, 4, "patient", "patch")),
         "Record-level guarantee while patients contribute many records: a patient with 4 patches", "caution"),
        (_report(epsilon=math.inf, mechanism="none (non-private reference: no privacy guarantee)", accountant="none"),
         "epsilon = inf: a non-private reference", "danger"),
        (_report(epsilon=20.0), "epsilon = 20 per image: above 10, a weak guarantee", "caution"),
        (_report(mechanism=LAPLACE_MECHANISM, accountant="laplace", epsilon=2500.0, delta=0.0, laplace_scale=0.1, sensitivity=250.0),
         "epsilon = 2.5e+03 per image: above 1000, no meaningful protection", "danger"),
        (_report(delta=0.02), "delta = 0.02 is at least 1/N = 0.01 for N = 100 images", "danger"),
        (_report(mechanism=LAPLACE_MECHANISM, accountant="laplace", epsilon=4.0, delta=0.0,
                 notes=["paper scale: noise S/epsilon with the nominal epsilon=2 as in seed 002"]), "Paper-scale release", "caution"),
    ],
)  # fmt: skip
def test_warnings_appear_when_they_apply(tmp_path: Path, report: PrivacyReport, expected: str, level: str) -> None:
    page = build_report([_release(tmp_path / "rel", report)], ledger=tmp_path / "ledger.json")
    warnings = _warnings(page)
    item = next((li for li in re.findall(r'<li class="(\w+)">(.*?)</li>', warnings, flags=re.DOTALL) if expected in li[1]), None)
    assert item is not None, warnings
    assert item[0] == level


def test_a_strong_image_level_release_has_no_warning(tmp_path: Path) -> None:
    page = build_report([_release(tmp_path / "rel", _report(epsilon=1.0, delta=1e-3))], ledger=tmp_path / "ledger.json")
    assert 'class="danger"' not in page and 'class="caution"' not in page
    assert "at most 2.8% of the images that were used can be recognised" in page  # e^1 * 1% + delta, the DP ROC bound


def test_the_report_notes_are_shown_and_every_text_from_files_is_escaped(tmp_path: Path) -> None:
    hostile = "<script>alert('x')</script> & <img src=https://example.org/x.png>"
    release = _release(tmp_path / "rel<b>", _report(notes=[hostile], dataset="toy<i>@1"))
    page = build_report([release], ledger=tmp_path / "ledger.json")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img" in page
    assert "<script" not in page and "<img src=https" not in page and "rel<b>" not in page and "toy<i>" not in page
    assert _parse(page).errors == []


def _roc(auc: float) -> RocResult:
    return RocResult(auc=auc, auc_low=auc - 0.05, auc_high=auc + 0.05, confidence=0.95, n_resamples=200,
                     tpr_at_fpr={"0.001": 0.0, "0.01": 0.02}, fpr=[0.0, 0.5, 1.0], tpr=[0.0, 0.5, 1.0])  # fmt: skip


def _segmentation(model: str, dice: float, extra: list[dict[str, object]] | None = None) -> dict[str, object]:
    row = {"model": model, "test": "phantom:test", "n_images": 8, "dice_mean": dice, "dice_sd": 0.01, "bahd_mean": 1.0, "bahd_sd": 0.1, "n_bahd_undefined": 0}
    return {"model": model, "config": {}, "preprocessing": "CLAHE", "results": [row, *(extra or [])], "training_sets": {}}


def test_evaluations_are_tabled_with_their_reference_lines(tmp_path: Path) -> None:
    release = _release(tmp_path / "sweep" / "eps1", _report(epsilon=1.0, delta=0.0))
    attack = AttackReport(
        n_members=10, n_non_members=20, release=ReleaseAttack("eps1", 30, {"pairwise-pixel": _roc(0.61)}, {}, {}),
        controls={"members-copy": ReleaseAttack("copy", 10, {"pairwise-pixel": _roc(0.99)}, {}, {})},
        privacy={"epsilon": 1.0, "delta": 0.0, "unit": "image", "summary": ""}, embedding={}, seed=0,
    )  # fmt: skip
    write_json_atomic(release / "attack" / "attack.json", attack.to_dict())
    Image.new("RGB", (40, 30), "white").save(release / "attack" / "roc.png")
    write_json_atomic(release / "utility" / "segmentation.json", _segmentation("U-Net trained on eps1", 0.31))
    real = tmp_path / "sweep" / "real"
    write_json_atomic(real / "segmentation.json", _segmentation("U-Net trained on drive", 0.81))
    other = _release(tmp_path / "sweep" / "eps5", _report(epsilon=5.0))
    write_json_atomic(other / "segmentation.json", _segmentation("U-Net trained on eps5", 0.5))

    page = build_report([release], ledger=tmp_path / "ledger.json")
    references = re.findall(r'<tr class="reference">(.*?)</tr>', page, flags=re.DOTALL)
    # DP bound at FPR 1% for epsilon = 1, delta = 0: min(e * 0.01, 1 - e^-1 * 0.99) = 0.0272.
    bound = min(math.e * 0.01, 1 - math.exp(-1) * 0.99)
    assert any("DP bound, epsilon = 1" in row and f"<td>{bound:.3f}</td>" in row for row in references)
    assert any("members-copy" in row for row in references)
    assert any("U-Net trained on drive (real data, no privacy.json: ../real)" in row and "0.810" in row for row in references)
    assert "U-Net trained on eps5" not in page  # another private release is not a reference line
    assert 'alt="ROC curves with the DP bound"' in page
    assert "Strongest attack: pairwise-pixel, ROC AUC 0.610" in page


def test_a_directory_without_privacy_json_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    good = _release(tmp_path / "good", _report())
    (tmp_path / "bad").mkdir()
    out = tmp_path / "report.html"
    with pytest.raises(PrivmedError, match="not a privmed run or release directory"):
        write_report([good, tmp_path / "bad"], out, ledger=tmp_path / "ledger.json")
    with pytest.raises(PrivmedError, match="no such directory"):
        write_report([tmp_path / "missing"], out, ledger=tmp_path / "ledger.json")
    assert not out.exists() and list(tmp_path.glob("*.html")) == []


def test_cli_writes_the_page_refuses_to_overwrite_and_reports_mistakes(tmp_path: Path) -> None:
    release = _release(tmp_path / "rel", _report())
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(release), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.name in result.output and out.read_text().startswith("<!DOCTYPE html>")
    out.write_text("kept")
    again = runner.invoke(app, ["report", str(release), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output and out.read_text() == "kept"
    replaced = runner.invoke(app, ["report", str(release), "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0 and "epsilon = 2" in out.read_text()
    (tmp_path / "empty").mkdir()
    bad = runner.invoke(app, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "other.html")])
    assert bad.exit_code == 1 and "error:" in bad.output and "no privacy.json" in bad.output
    assert not (tmp_path / "other.html").exists()
    missing_ledger = runner.invoke(app, ["report", str(release), "--out", str(tmp_path / "x.html"), "--ledger", str(tmp_path / "nope.json")])
    assert missing_ledger.exit_code == 1 and "no such budget ledger" in missing_ledger.output


def test_training_curves_read_every_row_of_metrics_csv(releases: dict[str, Path]) -> None:
    with (releases["R"] / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    page = build_report([releases["R"]], ledger=releases["ledger"])
    assert f"{len(rows)} row{'s' if len(rows) != 1 else ''} in metrics.csv" in page


def test_public_labels_large_delta_and_a_voided_guarantee_are_flagged() -> None:
    """Findings 3, 5 and 7 in the report's wording."""
    from privmed.report.guarantee import plain_words, warnings_for

    public = PrivacyReport(mechanism="Laplace", accountant="laplace", unit="image", n_units=20, epsilon=1.0, delta=0.0,
                           laplace_scale=1.0, sensitivity=1.0, public_data=["class labels"])
    assert any(w.level == "caution" and "class labels" in w.text for w in warnings_for(public))
    large = PrivacyReport(mechanism="m", accountant="rdp", unit="image", n_units=20, epsilon=1.0, delta=1 / 21)
    assert any("1/(10N)" in w.text for w in warnings_for(large))
    assert not any("1/(10N)" in w.text for w in warnings_for(dataclasses.replace(large, delta=1e-5)))
    void = dataclasses.replace(public, epsilon=math.inf, notes=["no guarantee: the flow was trained on the private data"])
    assert warnings_for(void)[0].level == "danger" and "No guarantee" in warnings_for(void)[0].text
    assert "no guarantee" in plain_words(void)[0]


def test_vessel_sim_release_and_public_prior_are_described_in_plain_words(tmp_path: Path) -> None:
    from privmed.data.vessel_sim import simulate_vessels
    from privmed.methods.vessel_sim import VesselSimFit
    from privmed.report.guarantee import plain_words

    fitted = VesselSimFit(8.0, reproducible=True, fit_evaluations=2, fit_images=1).fit(simulate_vessels(5, 64, seed=2)).privacy_report()
    words = " ".join(plain_words(fitted))
    assert "one Gaussian release" in words and f"{fitted.noise_multiplier * fitted.sensitivity:.4g}" in words
    prior = " ".join(plain_words(VesselSimFit(0.0).fit().privacy_report()))
    assert "public data only" in prior and "take any one" not in prior
