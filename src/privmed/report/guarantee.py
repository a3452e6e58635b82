"""A release's guarantee in plain words, the warnings that apply to it, and its dataset's ledger total.

Everything here reads figures from the :class:`PrivacyReport` and the :class:`BudgetLedger`; no
epsilon is computed. The only derived numbers are readings of the stated (epsilon, delta): e^epsilon,
and the highest true-positive rate a membership test can reach at a given false-alarm rate
(:func:`privmed.privacy.hypothesis.dp_roc_bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privmed.errors import PrivacyError
from privmed.privacy.calibration import delta_is_large, large_delta_warning
from privmed.privacy.gaussian import GAUSSIAN_ACCOUNTANT, GAUSSIAN_MECHANISM
from privmed.privacy.ledger import BudgetLedger, dataset_name
from privmed.privacy.report import DPSGD_MECHANISM, LAPLACE_MECHANISM, PrivacyReport
from privmed.privacy.units import PrivacyUnit, plural

WEAK_EPSILON = 10.0
"""Above this epsilon per image (or per unit) the report calls the guarantee weak."""
MEANINGLESS_EPSILON = 1000.0
"""Above this epsilon the report says the release gives no meaningful protection."""
ATTACK_FPR = 0.01
"""The false-alarm rate at which the plain-words text states the DP bound on a membership test."""

REPRODUCIBLE_WARNING = (
    "Reproducible research run: the DP noise (and, for DP-SGD, the batches) follow from the seed {seed}. "
    "There is no guarantee against anyone who knows the seed; do not release it."
)
"""The report's warning for a run whose randomness follows from its seed."""

_ACCOUNTANTS = {"rdp": "Rényi-DP (RDP) accountant", "prv": "privacy-loss-random-variable (PRV) accountant", "laplace": "basic composition of pure-DP releases",
    GAUSSIAN_ACCOUNTANT: "analytic Gaussian calibration (Balle & Wang 2018)"}


@dataclass(frozen=True)
class ReportWarning:
    """One warning on the page: ``level`` is "danger" (no or almost no protection), "caution" or "note"."""

    level: str
    text: str


@dataclass(frozen=True)
class LedgerStatus:
    """What the budget ledger says about a release's dataset, at the release's privacy unit."""

    path: Path
    exists: bool
    dataset_key: str | None
    unit: str
    epsilon: float = 0.0
    delta: float = 0.0
    releases: int = 0
    total: dict[str, Any] | None = None
    remaining: float | None = None
    entry: dict[str, Any] | None = None
    matched_by: str | None = None
    large_delta: tuple[str, ...] = ()
    uncounted: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """Whether the ledger holds at least one release of this dataset."""
        return self.releases > 0


def privacy_unit(report: PrivacyReport) -> PrivacyUnit:
    """The report's unit as a :class:`PrivacyUnit`; an unknown word counts as one record (the smallest unit)."""
    try:
        return PrivacyUnit.parse(report.unit)
    except PrivacyError:
        return PrivacyUnit.RECORD


def _eps(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def _times(epsilon: float) -> str:
    """e^epsilon in words a reader can take in: "2.72", "2,981", "about 10^434"."""
    if epsilon > 700:
        return f"about 10^{epsilon / math.log(10):.0f}"
    factor = math.exp(epsilon)
    return f"{factor:,.0f}" if factor >= 100 else f"{factor:.3g}"


def headline(report: PrivacyReport) -> str:
    """The guarantee in one line, e.g. "(epsilon = 7.96, delta = 5.7e-04) per patch"."""
    if math.isinf(report.epsilon):
        return f"no differential-privacy guarantee (epsilon = inf) per {report.unit}"
    if report.delta == 0:
        return f"epsilon = {report.epsilon:.3g} per {report.unit} (pure DP, delta = 0)"
    return f"(epsilon = {report.epsilon:.3g}, delta = {report.delta:.2g}) per {report.unit}"


def plain_words(report: PrivacyReport) -> list[str]:
    """Paragraphs that state what the guarantee means, without notation a privacy officer must look up."""
    unit, units = report.unit, plural(report.unit, report.n_units)
    paragraphs = []
    if report.epsilon == 0 and report.n_units == 0:
        paragraphs.append(
            "This release was made from public data only (epsilon = 0): no private data was read, so it reveals nothing "
            f"about any private {unit}. Its notes name the public data it was made from."
        )
    elif math.isinf(report.epsilon) and _no_guarantee_note(report):
        paragraphs.append(
            f"This release carries no guarantee: {_no_guarantee_note(report)}. Nothing limits what it reveals about any {unit} "
            "of the private data, and it must not leave the place where that data may be kept."
        )
    elif math.isinf(report.epsilon):
        paragraphs.append(
            f"This release was made without differential privacy (epsilon = inf). It is a reference for comparison only: "
            f"nothing limits what it reveals about any {unit} of the private data, and it must not leave the place where that data may be kept."
        )
    else:
        slack = "" if report.delta == 0 else f", except with a probability of at most delta = {report.delta:.2g}"
        paragraphs.append(
            f"Differential privacy per {unit}: take any one {unit} of the {report.n_units} private {units}. Whether it was used or not, "
            f"every possible outcome of this release is at most e^epsilon = {_times(report.epsilon)} times more (or less) likely{slack}. "
            f"Smaller epsilon is stronger; at epsilon = 1 the factor is 2.72."
        )
        from privmed.privacy.hypothesis import dp_roc_bound

        tpr = float(dp_roc_bound(ATTACK_FPR, report.epsilon, report.delta))
        if tpr >= 0.995:
            reading = "the guarantee does not stop such an attacker: at this epsilon the bound allows near-certain identification"
        else:
            reading = f"at most {tpr:.1%} of the {units} that were used can be recognised"
        paragraphs.append(
            f"Seen from an attacker who tries to tell whether one given {unit} was used and accepts falsely accusing "
            f"{ATTACK_FPR:.0%} of the {units} that were not: {reading} (the DP bound on the ROC curve, Kairouz et al. 2015)."
        )
    paragraphs.append(_mechanism_words(report))
    paragraphs.append(_patient_words(report))
    return paragraphs


def _mechanism_words(report: PrivacyReport) -> str:
    accountant = _ACCOUNTANTS.get(report.accountant, f"{report.accountant} accountant")
    unit = report.unit
    if math.isinf(report.epsilon) and report.mechanism == LAPLACE_MECHANISM:
        return (f"Mechanism: local differential privacy (Laplace noise of scale {report.laplace_scale or 0:.4g}), but its epsilon does not "
                "hold: see the note that voids the guarantee.")
    if math.isinf(report.epsilon):
        steps = f" ({report.steps} steps)" if report.steps else ""
        return f"Mechanism: none. The data was used as is, without clipping or noise{steps}; the recorded mechanism is {report.mechanism!r}."
    if report.mechanism == DPSGD_MECHANISM:
        noise = ""
        if report.noise_multiplier is not None and report.max_grad_norm is not None:
            noise = (
                f", each {unit}'s gradient was clipped to norm {report.max_grad_norm:g} and Gaussian noise of standard deviation "
                f"{report.noise_multiplier * report.max_grad_norm:.4g} (noise multiplier {report.noise_multiplier:.4g}) was added to the sum"
            )
        rate = f" with probability {report.sample_rate:.4g}" if report.sample_rate is not None else ""
        return (
            f"Mechanism: DP-SGD. The model that sees private data was trained for {report.steps or 0} steps; at each step every {unit} "
            f"was included at random{rate}{noise}. The {accountant} turns these parameters into the epsilon above. Everything made from "
            f"the trained model afterwards (the generator, every sample drawn from it) is post-processing and keeps the same guarantee."
        )
    if report.mechanism == GAUSSIAN_MECHANISM and report.noise_multiplier is not None and report.sensitivity is not None:
        return (
            f"Mechanism: one Gaussian release. Each {unit} was summarised by a short vector of statistics of bounded length; their "
            f"mean over the {report.n_units} {plural(unit, report.n_units)} (L2 sensitivity {report.sensitivity:.4g}) was released once with "
            f"Gaussian noise of standard deviation {report.noise_multiplier * report.sensitivity:.4g}, and the {accountant} turns these "
            f"into the epsilon above. Whatever is computed from the released vector afterwards (fitted parameters, every sample) is "
            f"post-processing and keeps the same guarantee."
        )
    if report.mechanism == LAPLACE_MECHANISM:
        scale = ""
        if report.laplace_scale is not None and report.sensitivity is not None:
            scale = f": Laplace noise of scale {report.laplace_scale:.4g} on a representation whose L1 sensitivity is {report.sensitivity:.4g}"
        releases = f" It was applied {report.steps} times; the epsilon above adds them up ({accountant})." if (report.steps or 1) > 1 else ""
        public = (" Published as public data, outside the guarantee: " + "; ".join(report.public_data) + ".") if report.public_data else ""
        return (
            f"Mechanism: local differential privacy. Each {unit} was privatized on its own{scale}, so the released copy of one {unit} "
            f"depends on no other.{releases} Records carry opaque index ids; patient ids and source names are not released.{public}"
        )
    return f"Mechanism: {report.mechanism}, accounted with the {accountant}."


def _patient_words(report: PrivacyReport) -> str:
    unit = privacy_unit(report)
    if math.isinf(report.epsilon):
        return "For one patient: nothing is guaranteed."
    if unit is PrivacyUnit.PATIENT:
        return f"For one patient: the unit is the patient, so the guarantee covers everything a patient contributed ({report.unit} = all of one patient's records)."
    group = report.group_privacy
    if unit is PrivacyUnit.RECORD and group:
        reading = "which is still a guarantee" if group.get("meaningful") else "which is no guarantee at all"
        return (
            f"For one patient: the guarantee is stated per {report.unit}, and a patient contributes several. "
            f"By group privacy, {group.get('statement', '')}, {reading}."
        )
    if unit is PrivacyUnit.IMAGE:
        return (
            "For one patient: the guarantee covers everything taken from one image. A patient with k images is protected at k times "
            "the epsilon (group privacy); see the notes below for what this data holds."
        )
    return (
        f"For one patient: the guarantee is stated per {report.unit}; how many a patient contributed is not recorded. A patient with k of them "
        f"is protected only at k times the epsilon (group privacy), and less than that when delta > 0."
    )


def warnings_for(report: PrivacyReport) -> list[ReportWarning]:
    """The warnings that apply to a release, most serious first, then the report's own notes."""
    found: list[ReportWarning] = []
    unit = privacy_unit(report)
    if math.isinf(report.epsilon) and _no_guarantee_note(report):
        found.append(ReportWarning("danger", f"No guarantee: {_no_guarantee_note(report)}. Nothing protects any {report.unit}; do not release it."))
    elif math.isinf(report.epsilon):
        found.append(ReportWarning("danger", f"epsilon = inf: a non-private reference. Nothing protects any {report.unit}; do not release it."))
    else:
        found += _epsilon_warnings(report.epsilon, report.unit)
        group = report.group_privacy
        if unit is PrivacyUnit.RECORD and group and int(group.get("records_per_unit", 1)) > 1:
            level = "caution" if group.get("meaningful") else "danger"
            found.append(ReportWarning(
                level,
                f"Record-level guarantee while patients contribute many records: {group.get('statement', '')}. "
                "Train with --unit image or --unit patient for a guarantee per image or per patient.",
            ))
            if group.get("meaningful"):
                found += _epsilon_warnings(float(group.get("epsilon", math.nan)), str(group.get("unit", "patient")), group=True)
        elif unit is PrivacyUnit.RECORD and not group:
            found.append(ReportWarning(
                "caution",
                f"Record-level guarantee (per {report.unit}) and the records per patient are not recorded: a patient with k records gets k times the epsilon.",
            ))
        if report.n_units > 0 and report.delta >= 1.0 / report.n_units:
            found.append(ReportWarning(
                "danger",
                f"delta = {report.delta:.3g} is at least 1/N = {1.0 / report.n_units:.3g} for N = {report.n_units} {plural(report.unit, report.n_units)}: "
                "such a delta allows one unit's data to be released in the clear.",
            ))
        elif delta_is_large(report.delta, report.n_units):
            found.append(ReportWarning("caution", large_delta_warning(report.delta, report.n_units, report.unit) + "; privmed's default is min(1e-5, 1/(10N))."))
    for item in report.public_data:
        found.append(ReportWarning("caution", f"Published without protection (public data): {item}. No mechanism covers it; it must be public knowledge."))
    if report.reproducible and not math.isinf(report.epsilon):
        found.append(ReportWarning("danger", REPRODUCIBLE_WARNING.format(seed=report.seed)))
    if any(note.lower().startswith("paper scale") for note in report.notes):
        found.append(ReportWarning(
            "caution",
            "Paper-scale release: the noise was calibrated as in the paper for a smaller nominal epsilon; the epsilon stated here is what that noise really gives.",
        ))
    found += [ReportWarning("note", note) for note in report.notes]
    return found


def _no_guarantee_note(report: PrivacyReport) -> str | None:
    """The note that voids a release's guarantee (e.g. a flow trained on the private data), if any."""
    return next((note for note in report.notes if note.lower().startswith("no guarantee")), None)


def _epsilon_warnings(epsilon: float, unit: str, group: bool = False) -> list[ReportWarning]:
    source = " (by group privacy)" if group else ""
    if not epsilon > WEAK_EPSILON:
        return []
    if epsilon > MEANINGLESS_EPSILON:
        return [ReportWarning("danger", f"epsilon = {_eps(epsilon)} per {unit}{source}: above {MEANINGLESS_EPSILON:g}, no meaningful protection.")]
    return [ReportWarning("caution", f"epsilon = {_eps(epsilon)} per {unit}{source}: above {WEAK_EPSILON:g}, a weak guarantee.")]


def ledger_status(report: PrivacyReport, ledger: BudgetLedger, release_id: str | None = None) -> LedgerStatus:
    """The dataset's total spend in ``ledger`` at the release's unit (basic composition, all releases).

    The dataset is found by the release's own ledger entry (``release_id``, the run id of a training
    run) when there is one, else by the dataset name in privacy.json, when exactly one ledger key carries
    that name (privacy.json never holds the key itself: its keyed hash is private to the ledger).
    The status lists the releases whose delta is above 1/(10N) and those that cannot count at this unit.
    """
    unit = privacy_unit(report)
    entries = ledger.entries() if ledger.path.exists() else []
    keys = {entry["dataset_key"] for entry in entries}
    entry = next((e for e in entries if release_id is not None and e["release_id"] == release_id), None)
    key, matched_by = None, None
    if entry is not None:
        key, matched_by = entry["dataset_key"], "this release's own ledger entry"
    elif report.dataset in keys:
        key, matched_by = report.dataset, "the dataset key in privacy.json"
    elif report.dataset:
        named = sorted(k for k in keys if dataset_name(k) == dataset_name(report.dataset))
        if len(named) == 1:
            key, matched_by = named[0], f"the only ledger dataset named {dataset_name(report.dataset)!r}"
    if key is None:
        return LedgerStatus(path=ledger.path, exists=ledger.path.exists(), dataset_key=report.dataset, unit=unit.value)
    epsilon, delta = ledger.spent(key, unit)
    return LedgerStatus(
        path=ledger.path,
        exists=True,
        dataset_key=key,
        unit=unit.value,
        epsilon=epsilon,
        delta=delta,
        releases=len(ledger.entries(key)),
        total=ledger.total(key),
        remaining=ledger.remaining(key, unit),
        entry=entry,
        matched_by=matched_by,
        large_delta=tuple(r["release_id"] for r in ledger.large_delta_releases(key)),
        uncounted=tuple(r["release_id"] for r in ledger.uncounted(key, unit)),
    )
