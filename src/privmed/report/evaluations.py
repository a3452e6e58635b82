"""The evaluation outputs of a release, read into tables with their reference lines and plots.

Each file ``privmed evaluate ...`` or ``privmed audit`` writes has a reader here that turns it into an
:class:`EvaluationBlock`: plain strings (the page escapes them), rows flagged as reference lines, and
the PNGs that came with it. Reference lines come from the file itself (the real-data U-Net, a second
observer, real-data diversity, an attack's controls and the DP bound on its ROC) and from directories
beside the release: a non-private run (privacy.json with epsilon = inf) or an evaluation of real data
(a folder without privacy.json) that holds the same kind of file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privmed.errors import PrivmedError
from privmed.privacy.report import PrivacyReport
from privmed.report.release import read_json

MAX_OVERLAYS = 2
"""Segmentation overlays embedded per evaluation (the folder may hold many)."""


@dataclass
class Table:
    """Rows of display strings; ``reference[i]`` marks row i as a reference line."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    reference: list[bool] = field(default_factory=list)
    caption: str = ""

    def add(self, row: list[str], reference: bool = False) -> None:
        self.rows.append(row)
        self.reference.append(reference)


@dataclass
class EvaluationBlock:
    """One evaluation file as the page shows it."""

    title: str
    source: Path
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: list[tuple[str, Path]] = field(default_factory=list)


@dataclass(frozen=True)
class _Sibling:
    label: str
    payload: dict[str, Any]


def _num(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    if value == "inf":
        return "inf"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    if math.isinf(number):
        return "inf"
    if number == 0:
        return "0"
    return f"{number:.{digits}g}" if abs(number) >= 1000 or (0 < abs(number) < 1e-3) else f"{number:.{digits}f}"


def _eps(value: Any) -> str:
    number = _epsilon(value)
    return "–" if number is None else "inf" if math.isinf(number) else f"{number:.3g}"


def _mean_sd(mean: Any, sd: Any) -> str:
    return _num(mean) if sd is None else f"{_num(mean)} ± {_num(sd)}"


def _interval(result: dict[str, Any], key: str) -> str:
    """``key`` of an evaluation's JSON with its ``key_low`` / ``key_high`` interval."""
    return f"{_num(result.get(key))} [{_num(result.get(f'{key}_low'))}, {_num(result.get(f'{key}_high'))}]"


def _epsilon(value: Any) -> float | None:
    if value == "inf":
        return math.inf
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sibling_references(release: Path, filename: str) -> list[_Sibling]:
    """The same evaluation of a non-private run or of real data, found in a folder beside ``release``.

    A sibling counts when its privacy.json says epsilon = inf (non-private run) or when it has no
    privacy.json at all (not a release: an evaluation of real data); ``filename`` is looked for in it
    and one level below. Private siblings are other releases, not references, and are left out.
    """
    parent = release.resolve().parent
    found: list[_Sibling] = []
    for sibling in sorted(p for p in parent.iterdir() if p.is_dir() and p.resolve() != release.resolve()):
        privacy = sibling / "privacy.json"
        if privacy.is_file():
            try:
                if not math.isinf(PrivacyReport.from_json(privacy).epsilon):
                    continue
            except PrivmedError:
                continue
            kind = "non-private run"
        else:
            kind = "real data, no privacy.json"
        places = [sibling / filename, *sorted(sibling.glob(f"*/{filename}"))]
        for place in places:
            if place.is_file():
                try:
                    found.append(_Sibling(f"{kind}: ../{sibling.name}", read_json(place)))
                except PrivmedError:
                    continue
                break
    return found


def _segmentation(path: Path, payload: dict[str, Any], release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    main = payload.get("model")
    block = EvaluationBlock("Segmentation utility: a U-Net trained on the release, tested on real images", path)
    table = Table(["model", "test set", "images", "Dice (mean ± SD)", "bAHD px (mean ± SD)", "bAHD undefined"])

    def add(result: dict[str, Any], label: str | None, reference: bool) -> None:
        table.add(
            [label or str(result.get("model", "")), str(result.get("test", "")), _num(result.get("n_images"), 0),
             _mean_sd(result.get("dice_mean"), result.get("dice_sd")), _mean_sd(result.get("bahd_mean"), result.get("bahd_sd")),
             _num(result.get("n_bahd_undefined"), 0)],
            reference,
        )

    tests = set()
    for result in payload.get("results", []):
        tests.add(result.get("test"))
        add(result, None, result.get("model") != main)
    for sibling in sibling_references(release, "segmentation.json"):
        for result in sibling.payload.get("results", []):
            if result.get("test") in tests and result.get("model") == sibling.payload.get("model"):
                add(result, f"{result.get('model', '')} ({sibling.label})", True)
    block.tables.append(table)
    ours = next((r for r in payload.get("results", []) if r.get("model") == main), None)
    if ours is not None:
        block.summary = f"Dice {_num(ours.get('dice_mean'))} on {ours.get('test', 'the test set')} (1 = perfect overlap with the reference labels)."
    if not any(table.reference):
        block.notes.append("No reference line found: run `privmed evaluate segmentation --reference-train REAL` to add the real-data U-Net.")
    if payload.get("preprocessing"):
        block.notes.append(f"Preprocessing: {payload['preprocessing']}")
    # The release's own U-Net first (train_*), then the reference model's.
    overlays = sorted((path.parent / "overlays").glob("*.png"), key=lambda p: (not p.name.startswith("train_"), p.name))[:MAX_OVERLAYS]
    block.images += [(f"overlay {p.stem}: prediction vs reference label", p) for p in overlays]
    return block


def _fidelity_row(label: str, payload: dict[str, Any], reference: bool, table: Table) -> None:
    synthetic = payload.get("diversity", {}).get("synthetic", {})
    neighbours = payload.get("nearest_neighbour", {}).get("synthetic_to_train", {})
    table.add(
        [label, _num(payload.get("fid_train")), _num(payload.get("fid_test")),
         _mean_sd(payload.get("kid_train_mean"), payload.get("kid_train_sd")), _num(synthetic.get("ssim_mean")),
         _num(synthetic.get("ms_ssim_mean")), _num(neighbours.get("median"))],
        reference,
    )


def _fidelity(path: Path, payload: dict[str, Any], release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    extractor = payload.get("extractor", {}).get("name", "unknown")
    block = EvaluationBlock(f"Fidelity and diversity (features: {extractor} extractor)", path)
    table = Table(
        ["images", "FID vs train", "FID vs test", "KID vs train", "SSIM between pairs", "MS-SSIM between pairs", "NN distance to train (median)"],
        caption="FID/KID: lower = closer to real. SSIM between random pairs: lower = more diverse (the real row is the reference). "
        "Nearest-neighbour distance: far below the real test images' = copies of training images.",
    )
    _fidelity_row("this release", payload, False, table)
    real = payload.get("diversity", {}).get("real", {})
    test_neighbours = payload.get("nearest_neighbour", {}).get("test_to_train", {})
    if real or test_neighbours:
        table.add(["real images (reference)", "–", "–", "–", _num(real.get("ssim_mean")), _num(real.get("ms_ssim_mean")), _num(test_neighbours.get("median"))], True)
    for sibling in sibling_references(release, "fidelity.json"):
        if sibling.payload.get("extractor", {}).get("name") == extractor:
            _fidelity_row(sibling.label, sibling.payload, True, table)
    block.tables.append(table)
    block.summary = f"FID {_num(payload.get('fid_train'))} against the real training images (extractor: {extractor})."
    if payload.get("note"):
        block.notes.append(str(payload["note"]))
    block.images += [(f"{name} of real and synthetic features", path.parent / name) for name in payload.get("plots", []) if (path.parent / name).is_file()]
    return block


def _metrics(path: Path, payload: dict[str, Any], release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    if "roc_auc" in payload:
        return _classifier(path, payload, release)
    if "auc" in payload and "normal_flow" in payload:
        block = EvaluationBlock("Pathology detection by the likelihood ratio of two flows", path)
        table = Table(["data", "ROC AUC [95% CI]", "images", "abnormal"])
        table.add([str(payload.get("data", "")), _interval(payload, "auc"),
                   _num(payload.get("n_images"), 0), _num(payload.get("n_abnormal"), 0)])
        table.add(["chance", "0.500", "", ""], True)
        block.tables.append(table)
        return block
    return _generic("Metrics", path, payload)


def _classifier(path: Path, payload: dict[str, Any], release: Path) -> EvaluationBlock:
    block = EvaluationBlock("Classification utility: a classifier trained on the release, tested on real images", path)
    table = Table(["model", "trained on", "tested on", "accuracy", "ROC AUC [CI]", "train / test images"])

    def add(label: str, item: dict[str, Any], reference: bool) -> None:
        table.add(
            [label, str(item.get("train", "")), str(item.get("test", "")), _num(item.get("accuracy")),
             _interval(item, "roc_auc"),
             f"{_num(item.get('n_train'), 0)} / {_num(item.get('n_test'), 0)}"],
            reference,
        )

    add(str(payload.get("model", "")), payload, False)
    for sibling in sibling_references(release, "metrics.json"):
        if "roc_auc" in sibling.payload:
            add(f"{sibling.payload.get('model', '')} ({sibling.label})", sibling.payload, True)
    table.add(["chance", "", "", "", "0.500", ""], True)
    block.tables.append(table)
    block.summary = f"ROC AUC {_num(payload.get('roc_auc'))} on real test images (0.5 = chance, 1 = perfect)."
    block.notes += [str(note) for note in payload.get("notes", [])]
    if (path.parent / "roc.png").is_file():
        block.images.append(("ROC curve on the real test images", path.parent / "roc.png"))
    return block


def _attack(path: Path, payload: dict[str, Any], release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    block = EvaluationBlock("Membership inference: can an attacker tell who was in the private data?", path)
    stated = payload.get("privacy") or {}
    epsilon = _epsilon(stated.get("epsilon")) if stated else privacy.epsilon
    delta = float(stated.get("delta", 0.0)) if stated else privacy.delta
    targets = sorted({key for result in payload.get("release", {}).get("attacks", {}).values() for key in result.get("tpr_at_fpr", {})}, key=float)
    table = Table(
        ["attack", "ROC AUC [CI]", *(f"TPR at FPR {float(t):.1%}" for t in targets)],
        caption="The DP bound row is the best any attack can do on a release with the stated (epsilon, delta); an attack above it would contradict the guarantee.",
    )
    best = None
    for name, result in payload.get("release", {}).get("attacks", {}).items():
        table.add([name, _interval(result, "auc"),
                   *(_num(result.get("tpr_at_fpr", {}).get(t)) for t in targets)])
        if best is None or float(result.get("auc", 0)) > best[1]:
            best = (name, float(result.get("auc", 0)))
    if epsilon is not None:
        from privmed.privacy.hypothesis import dp_roc_bound

        label = "DP bound (no guarantee)" if math.isinf(epsilon) else f"DP bound, epsilon = {_eps(epsilon)}, delta = {delta:.2g}"
        table.add([label, "", *(_num(float(dp_roc_bound(float(t), epsilon, delta))) for t in targets)], True)
    table.add(["chance", "0.500", *(_num(float(t)) for t in targets)], True)
    block.tables.append(table)
    controls = Table(["control", "attack", "ROC AUC [CI]"], caption="A copy of the members must be caught (AUC near 1); fresh non-members must not (near 0.5).")
    for control, item in payload.get("controls", {}).items():
        for name, result in item.get("attacks", {}).items():
            controls.add([control, name, _interval(result, "auc")], True)
    if controls.rows:
        block.tables.append(controls)
    if best is not None:
        block.summary = f"Strongest attack: {best[0]}, ROC AUC {_num(best[1])} (0.5 = guessing)."
    candidates = payload.get("candidates", {})
    if candidates:
        block.notes.append(f"{candidates.get('members', '?')} member and {candidates.get('non_members', '?')} non-member candidates.")
    block.notes += [str(note) for note in payload.get("notes", [])]
    figures = (("roc.png", "ROC curves with the DP bound"), ("roc_controls.png", "ROC curves of the controls"))
    block.images += [(caption, path.parent / name) for name, caption in figures if (path.parent / name).is_file()]
    return block


def _diversity(path: Path, payload: dict[str, Any], release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    block = EvaluationBlock("Real or synthetic? A classifier trained to tell them apart", path)
    table = Table(["classifier", "ROC AUC [CI]", "real / synthetic / held-out images"], caption="0.5: the classifier cannot tell the release from real images.")
    table.add([str(payload.get("model", "")), _interval(payload, "auc"),
               f"{_num(payload.get('n_real'), 0)} / {_num(payload.get('n_synthetic'), 0)} / {_num(payload.get('n_test'), 0)}"])
    for sibling in sibling_references(release, "diversity.json"):
        table.add([f"{sibling.payload.get('model', '')} ({sibling.label})", _interval(sibling.payload, "auc"), ""], True)
    table.add(["indistinguishable", "0.500", ""], True)
    block.tables.append(table)
    block.summary = f"Real-vs-synthetic ROC AUC {_num(payload.get('auc'))} (0.5 = indistinguishable, 1 = always told apart)."
    block.notes += [str(note) for note in payload.get("notes", [])]
    if (path.parent / "umap.png").is_file():
        block.images.append(("UMAP of real (fitted) and released images", path.parent / "umap.png"))
    return block


def _audit(path: Path, payload: dict[str, Any], release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    block = EvaluationBlock("Privacy audit: an empirical lower bound on epsilon (Steinke, Nasr & Jagielski 2023)", path)
    confidence = payload.get("confidence")
    table = Table(["method", "canaries", "right guesses", f"epsilon lower bound ({_num(confidence, 2)} confidence)",
                   "most this audit could prove", "claimed epsilon", "consistent"])
    consistent = payload.get("consistent")
    table.add([str(payload.get("method", "")), _num(payload.get("canaries"), 0), f"{_num(payload.get('correct'), 0)} of {_num(payload.get('guesses'), 0)}",
               _num(payload.get("epsilon_lower_bound")), _num(payload.get("epsilon_ceiling")), _eps(payload.get("claimed_epsilon")),
               "–" if consistent is None else ("yes" if consistent else "NO: the bound exceeds the claim")])
    block.tables.append(table)
    ceiling = payload.get("epsilon_ceiling")
    reach = ""
    if ceiling is not None:
        reach = (f" Even a perfect attacker (every guess right) could prove at most epsilon = {_num(ceiling)} with these canaries and guesses"
                 + (", so this audit cannot show the claim violated." if payload.get("can_test_claim") is False else "."))
    block.summary = (
        f"With {_num(confidence, 2)} confidence the audited method leaks at least epsilon = {_num(payload.get('epsilon_lower_bound'))} "
        f"per {payload.get('unit', 'record')}; it claims {_eps(payload.get('claimed_epsilon'))}.{reach}"
    )
    block.notes += [str(note) for note in payload.get("notes", [])]
    return block


def _generic(title: str, path: Path, payload: dict[str, Any]) -> EvaluationBlock:
    block = EvaluationBlock(title, path)
    table = Table(["field", "value"])
    for key, value in payload.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            table.add([str(key), _num(value) if isinstance(value, float) else str(value)])
    block.tables.append(table)
    return block


_READERS: dict[str, Callable[[Path, dict[str, Any], Path, PrivacyReport], EvaluationBlock]] = {
    "segmentation.json": _segmentation,
    "fidelity.json": _fidelity,
    "metrics.json": _metrics,
    "attack.json": _attack,
    "diversity.json": _diversity,
    "audit.json": _audit,
}


def read_evaluation(path: Path, release: Path, privacy: PrivacyReport) -> EvaluationBlock:
    """The block for one evaluation file; a file that cannot be read or understood gives a block saying so."""
    try:
        return _READERS[path.name](path, read_json(path), release, privacy)
    except (PrivmedError, KeyError, TypeError, ValueError, AttributeError) as exc:
        block = EvaluationBlock(f"Unreadable evaluation file {path.name}", path)
        block.notes.append(f"could not read {path.name}: {exc}")
        return block
