"""``privmed report``: one self-contained HTML page a privacy officer can read, check and sign.

One section per release directory: what was released, the guarantee in plain words, the warnings that
apply, the dataset's total in the budget ledger, sample grids beside real examples, training curves,
and every evaluation found with its reference lines. The page fetches nothing: CSS is inline, every
picture is a ``data:`` URI, and there is no script. All text read from files is HTML-escaped.
"""

from __future__ import annotations

import html
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from privmed import __version__
from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.fileio import write_text_atomic
from privmed.privacy.ledger import BudgetLedger, dataset_name
from privmed.privacy.units import plural
from privmed.report.evaluations import EvaluationBlock, Table, read_evaluation
from privmed.report.figures import file_uri, grid_uri, training_curves_uri
from privmed.report.guarantee import LedgerStatus, ReportWarning, headline, ledger_status, plain_words, warnings_for
from privmed.report.release import ReleaseDir, read_release

__all__ = ["build_report", "write_report"]

logger = logging.getLogger(__name__)

GRID_RECORDS = 16
"""Records shown in each sample grid."""

_LEVEL_TITLES = {"danger": "No or almost no protection", "caution": "Caution", "note": "Note"}

_CSS = """
:root { --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --panel: #f6f8fa; --accent: #0b5cad;
        --danger: #b42318; --danger-bg: #fdecea; --caution: #8a5a00; --caution-bg: #fff6db; --ref: #eef4fb; }
* { box-sizing: border-box; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; line-height: 1.5; font-size: 15px; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 48px 0 6px; padding-top: 16px; border-top: 3px solid var(--accent); }
h3 { font-size: 17px; margin: 28px 0 8px; }
h4 { font-size: 15px; margin: 20px 0 6px; }
p { margin: 6px 0 10px; }
.muted, figcaption, caption { color: var(--muted); font-size: 13px; }
.headline { font-size: 20px; font-weight: 600; margin: 8px 0 12px; }
.guarantee { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; }
.notice { border-left: 4px solid var(--caution); background: var(--caution-bg); padding: 10px 14px; margin: 14px 0; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; width: 100%; }
caption { caption-side: bottom; text-align: left; padding-top: 4px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
table.facts th { width: 30%; }
tr.reference td { background: var(--ref); font-style: italic; }
ul.warnings { list-style: none; padding: 0; margin: 8px 0; }
ul.warnings li { padding: 8px 12px; margin: 6px 0; border-radius: 6px; border-left: 5px solid var(--line); background: var(--panel); }
ul.warnings li.danger { border-left-color: var(--danger); background: var(--danger-bg); }
ul.warnings li.caution { border-left-color: var(--caution); background: var(--caution-bg); }
.level { font-weight: 700; margin-right: 6px; }
li.danger .level { color: var(--danger); }
li.caution .level { color: var(--caution); }
.figures { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 6px 0; max-width: 100%; }
.figures figure { flex: 1 1 320px; max-width: max-content; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); image-rendering: pixelated; }
figure.plot img { image-rendering: auto; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; word-break: break-all; }
.evaluation { border: 1px solid var(--line); border-radius: 8px; padding: 4px 16px 10px; margin: 14px 0; }
.signoff { margin-top: 56px; border: 2px solid var(--ink); border-radius: 8px; padding: 14px 20px; page-break-inside: avoid; }
.signoff td { height: 38px; }
nav ol { margin: 6px 0; }
@media print { h2 { page-break-before: always; } main { max-width: none; } }
"""


def _e(value: Any) -> str:
    """HTML-escape any value shown on the page (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, spec: str = ".4g") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


@dataclass
class _Picture:
    caption: str
    uri: str
    plot: bool = False


@dataclass
class _ReleaseView:
    """Everything one section shows, gathered before any HTML is written."""

    index: int
    release: ReleaseDir
    warnings: list[ReportWarning]
    ledger: LedgerStatus
    facts: list[tuple[str, str]]
    samples: list[_Picture] = field(default_factory=list)
    sample_notes: list[str] = field(default_factory=list)
    real_examples: bool = False
    curves: _Picture | None = None
    evaluations: list[tuple[EvaluationBlock, list[_Picture]]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"release-{self.index}"

    @property
    def name(self) -> str:
        """The directory with its parent, enough to tell apart runs of the same name in different sweeps."""
        path = self.release.path.resolve()
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name

    @property
    def worst(self) -> str:
        levels = {w.level for w in self.warnings}
        return next((level for level in ("danger", "caution") if level in levels), "none")


def _open_ledger(ledger: BudgetLedger | str | os.PathLike[str] | None) -> BudgetLedger:
    return ledger if isinstance(ledger, BudgetLedger) else BudgetLedger(ledger)


def _read_data(path: Path) -> ImageDataset:
    """A release's data exactly as stored (its metadata keeps the source's ref, which ``load`` would replace)."""
    from privmed.data.readers import reader_for

    reader = reader_for(path)
    return reader.read(path, reader.splits(path)[0])


def _method(release: ReleaseDir, data: ImageDataset | None) -> str:
    name = release.method
    if not name and data is not None:
        name = data.metadata.get("privatized_by") or data.metadata.get("method")
    if not name:
        return f"not recorded ({release.privacy.mechanism})"
    from privmed.methods.registry import method_title

    return method_title(str(name)) or str(name)


def _facts(release: ReleaseDir, data: ImageDataset | None, data_error: str | None, source_ref: str | None, status: LedgerStatus) -> list[tuple[str, str]]:
    report, config = release.privacy, release.config or {}
    facts = [("directory", str(release.path.resolve())), ("method", _method(release, data))]
    if data is not None and release.data_path is not None:
        records = f"{len(data)} {plural(data.record_kind, len(data))} of shape {list(data.images.shape[1:])}"
        facts.append(("released data", f"{records} in {release.data_path.name}"))
    elif data_error:
        facts.append(("released data", f"could not be read: {data_error}"))
    elif (release.path / "checkpoints").is_dir():
        facts.append(("released data", "a trained model (checkpoints/): anything sampled from it is post-processing and carries this guarantee"))
    facts.append(("private data", source_ref or "not recorded in this directory"))
    facts.append(("dataset (ledger key)", report.dataset or "not recorded"))
    facts.append(("private units", f"{report.n_units} {plural(report.unit, report.n_units)}"))
    data_info = config.get("data") if isinstance(config.get("data"), dict) else {}
    if data_info.get("records") is not None:
        facts.append(("training records", f"{data_info['records']} {plural(str(data_info.get('record_kind', 'record')), int(data_info['records']))}"))
    facts.append(("guarantee written", report.created))
    entry = status.entry
    if entry is not None:
        facts.append(("ledger entry", f"reserved {entry.get('reserved_at')}, settled {entry.get('settled_at') or 'not yet'} ({entry.get('status')})"))
    if release.metrics:
        seconds = [row.get("seconds", math.nan) for row in release.metrics]
        finite = [s for s in seconds if math.isfinite(s)]
        epochs = [row.get("epoch", math.nan) for row in release.metrics if math.isfinite(row.get("epoch", math.nan))]
        rows = len(release.metrics)
        training = f"{rows} row{'s' if rows != 1 else ''} in metrics.csv"
        if epochs:
            training += f", {int(max(epochs))} epoch{'s' if int(max(epochs)) != 1 else ''}"
        if finite:
            training += f", {sum(finite) / 60:.1f} min of training"
        facts.append(("training", training))
    facts.append(("software", ", ".join(f"{k} {v}" for k, v in report.versions.items())))
    return facts


def _guarantee_rows(release: ReleaseDir) -> list[tuple[str, str]]:
    report = release.privacy
    rows = [
        ("epsilon", f"{_fmt(report.epsilon)} per {report.unit}"),
        ("delta", _fmt(report.delta, ".3g")),
        ("unit", report.unit),
        ("mechanism", report.mechanism),
        ("accountant", report.accountant),
    ]
    optional = [
        ("steps", report.steps, ""),
        ("sample rate", report.sample_rate, ".4g"),
        ("noise multiplier", report.noise_multiplier, ".4g"),
        ("clipping bound", report.max_grad_norm, "g"),
        ("Laplace scale", report.laplace_scale, ".4g"),
        ("L1 sensitivity", report.sensitivity, ".4g"),
        ("seed", report.seed, ""),
    ]
    rows += [(name, _fmt(value, spec)) for name, value, spec in optional if value is not None]
    return rows


def _samples(release: ReleaseDir, data: ImageDataset | None, source_ref: str | None, include_private: bool) -> tuple[list[_Picture], list[str], bool]:
    """The release's sample grid, real examples beside it when the source data loads here, notes, and whether real ones are shown."""
    from privmed.data import load

    pictures: list[_Picture] = []
    notes: list[str] = []
    if data is not None and len(data):
        pictures.append(_Picture(f"released: first {min(GRID_RECORDS, len(data))} of {len(data)} records", grid_uri(data, n=GRID_RECORDS)))
    elif release.samples:
        last = release.samples[-1]
        pictures.append(_Picture(f"generated during training: samples/{last.name} (the latest of {len(release.samples)})", file_uri(last)))
    if not include_private:
        notes.append("Real examples are left out of this page (--omit-private).")
        return pictures, notes, False
    if source_ref is None:
        notes.append("No real examples: the directory does not record which data it was made from.")
        return pictures, notes, False
    try:
        real = load(source_ref)
    except (PrivmedError, OSError, ValueError) as exc:
        notes.append(f"No real examples: {source_ref} could not be loaded here ({exc}).")
        return pictures, notes, False
    count = min(GRID_RECORDS if data is not None else 8, len(real))
    same = data is not None and len(data) == len(real) and (
        list(data.sources[:count]) == list(real.sources[:count]) or data.metadata.get("parent") == real.name  # privatized: opaque ids, same order
    )
    caption = f"real: the same {count} records before privatization" if same else f"real: first {count} of {len(real)} records of {source_ref}"
    if not count:
        return pictures, notes, False
    pictures.append(_Picture(caption, grid_uri(real, n=count)))
    notes.append("Real examples show private data without any protection: share this page only with people allowed to see that data.")
    return pictures, notes, True


def _view(index: int, release: ReleaseDir, ledger: BudgetLedger, include_private: bool) -> _ReleaseView:
    data, data_error = None, None
    if release.data_path is not None:
        try:
            data = _read_data(release.data_path)
        except (PrivmedError, OSError, ValueError) as exc:
            data_error = str(exc)
    source_ref = release.data_ref or (str(data.metadata["ref"]) if data is not None and data.metadata.get("ref") else None)
    status = ledger_status(release.privacy, ledger, release_id=(release.config or {}).get("run_id"))
    view = _ReleaseView(index, release, warnings_for(release.privacy), status, _facts(release, data, data_error, source_ref, status))
    view.samples, view.sample_notes, view.real_examples = _samples(release, data, source_ref, include_private)
    if include_private and release.metrics:
        target = ((release.config or {}).get("plan") or {}).get("target_epsilon", release.privacy.epsilon)
        uri = training_curves_uri(release.metrics, release.metric_columns, _as_float(target))
        if uri is not None:
            view.curves = _Picture("training curves from metrics.csv", uri, plot=True)
    for path in release.evaluations:
        block = read_evaluation(path, release.path, release.privacy)
        pictures = []
        for caption, image in block.images:
            try:
                pictures.append(_Picture(caption, file_uri(image), plot=True))
            except OSError as exc:
                block.notes.append(f"{image.name} could not be read ({exc})")
        view.evaluations.append((block, pictures))
    return view


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _figure(picture: _Picture) -> str:
    kind = ' class="plot"' if picture.plot else ""
    return f'<figure{kind}><img src="{_e(picture.uri)}" alt="{_e(picture.caption)}"><figcaption>{_e(picture.caption)}</figcaption></figure>'


def _table(table: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = "".join(
        ('<tr class="reference">' if ref else "<tr>") + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>"
        for row, ref in zip(table.rows, table.reference)
    )
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f'<tr><th scope="row">{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def _warnings(warnings: list[ReportWarning]) -> str:
    if not warnings:
        return "<p>No warnings apply.</p>"
    items = "".join(f'<li class="{_e(w.level)}"><span class="level">{_e(_LEVEL_TITLES.get(w.level, w.level))}:</span>{_e(w.text)}</li>' for w in warnings)
    return f'<ul class="warnings">{items}</ul>'


def _ledger(status: LedgerStatus, unit: str) -> str:
    where = f"<code>{_e(status.path)}</code>"
    if not status.found:
        missing = "the ledger file does not exist" if not status.exists else f"no release of {dataset_name(status.dataset_key or '') or 'this dataset'} is recorded"
        return f"<p><strong>Ledger total: not in ledger</strong> ({missing}; ledger {where}).</p>"
    parts = [(
        f"<p><strong>Ledger total for {_e(dataset_name(status.dataset_key or ''))}</strong> per {_e(unit)} ({_e(status.unit)} level): "
        f"epsilon = {_e(_fmt(status.epsilon, '.4g'))}, delta = {_e(_fmt(status.delta, '.3g'))}, over the {_e(status.releases)} "
        f"release{'s' if status.releases != 1 else ''} of this dataset in the ledger {where} (basic composition: epsilons add up; "
        "releases at a larger unit count too, and releases at a smaller unit through group privacy).</p>"
    )]
    if status.large_delta:
        parts.append(f'<p class="caution">Caution: {_e(len(status.large_delta))} of these releases used a delta above 1/(10N) '
                     f"for their N units ({_e(', '.join(status.large_delta))}): the total delta above includes them.</p>")
    if status.uncounted:
        parts.append(f'<p class="caution">Not counted at this unit: {_e(len(status.uncounted))} release(s) at a smaller unit whose group '
                     f"size was not booked ({_e(', '.join(status.uncounted))}); their cost to one {_e(unit)} is unknown.</p>")
    if status.total is not None:
        parts.append(f"<p>Total budget set for this dataset: epsilon = {_e(_fmt(status.total.get('epsilon')))}; "
                     f"remaining at this unit: {_e(_fmt(status.remaining))}.</p>")
    if status.matched_by:
        parts.append(f'<p class="muted">Dataset found in the ledger by {_e(status.matched_by)}.</p>')
    if status.entry is None:
        parts.append('<p class="muted">This directory does not name its own ledger entry (only training runs record one); '
                     "the total above is for the dataset as a whole.</p>")
    return "".join(parts)


def _section(view: _ReleaseView) -> str:
    release, report = view.release, view.release.privacy
    out = [f'<section id="{view.anchor}" aria-labelledby="{view.anchor}-title">',
           f'<h2 id="{view.anchor}-title">Release {view.index}: {_e(view.name)}</h2>',
           '<div class="guarantee">',
           f'<p class="headline">{_e(headline(report))}</p>',
           *(f"<p>{_e(paragraph)}</p>" for paragraph in plain_words(report)),
           "</div>",
           "<h3>Warnings</h3>", _warnings(view.warnings),
           "<h3>Budget ledger</h3>", _ledger(view.ledger, report.unit),
           "<h3>What was released</h3>", _facts_table(view.facts),
           "<h3>Guarantee parameters</h3>", _facts_table(_guarantee_rows(release))]
    out.append("<h3>Samples</h3>")
    if view.samples:
        out.append('<div class="figures">' + "".join(_figure(p) for p in view.samples) + "</div>")
    else:
        out.append("<p>No samples found (no data.npz, data/, images/ or samples/*.png).</p>")
    out += [f'<p class="muted">{_e(note)}</p>' for note in view.sample_notes]
    if view.curves is not None:
        out.append("<h3>Training curves</h3>")
        out.append(_figure(view.curves))
        out.append('<p class="muted">Losses in metrics.csv are computed on private batches without noise: they describe the '
                   "training for its operator and are not covered by the guarantee.</p>")
    out.append("<h3>Evaluations</h3>")
    if not view.evaluations:
        out.append("<p>No evaluation found in this directory or one level below (segmentation.json, fidelity.json, metrics.json, "
                   "attack.json, diversity.json, audit.json).</p>")
    for block, pictures in view.evaluations:
        out.append('<div class="evaluation">')
        out.append(f"<h4>{_e(block.title)}</h4>")
        try:
            source = block.source.relative_to(release.path)
        except ValueError:
            source = block.source
        out.append(f'<p class="muted">from <code>{_e(source)}</code></p>')
        if block.summary:
            out.append(f"<p>{_e(block.summary)}</p>")
        out += [_table(table) for table in block.tables]
        if block.notes:
            out.append("<ul>" + "".join(f"<li>{_e(note)}</li>" for note in block.notes) + "</ul>")
        if pictures:
            out.append('<div class="figures">' + "".join(_figure(p) for p in pictures) + "</div>")
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _overview(views: list[_ReleaseView]) -> str:
    rows = "".join(
        f'<tr><td><a href="#{v.anchor}">{_e(v.name)}</a></td><td>{_e(headline(v.release.privacy))}</td>'
        f"<td>{_e({'danger': 'no or almost no protection', 'caution': 'caution', 'none': 'none'}[v.worst])}</td></tr>"
        for v in views
    )
    return ("<table><thead><tr><th>release</th><th>guarantee</th><th>most serious warning</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


_SIGNOFF = """<section class="signoff" aria-labelledby="signoff-title">
<h2 id="signoff-title" style="border:0;margin-top:0;padding-top:0">Review</h2>
<p>I have read the guarantees, warnings and evaluations above.</p>
<table class="facts"><tbody>
<tr><th scope="row">Name and role</th><td></td></tr>
<tr><th scope="row">Decision (approve / approve with conditions / reject)</th><td></td></tr>
<tr><th scope="row">Conditions</th><td></td></tr>
<tr><th scope="row">Date</th><td></td></tr>
<tr><th scope="row">Signature</th><td></td></tr>
</tbody></table>
</section>"""


def build_report(
    paths: list[str | os.PathLike[str]],
    ledger: BudgetLedger | str | os.PathLike[str] | None = None,
    *,
    include_private: bool = True,
) -> str:
    """The HTML page for the release directories ``paths``, one section each, in the order given.

    ``ledger`` is a :class:`BudgetLedger` or its path (default: ``$PRIVMED_LEDGER`` or
    ``~/.privmed/ledger.json``). ``include_private=False`` leaves out what is computed on the private
    data without protection (real examples and training curves), for a page to be shared more widely.
    Raises :class:`PrivmedError` if a path is not a privmed run or release directory.
    """
    if not paths:
        raise PrivmedError("give at least one run or release directory")
    releases = [read_release(path) for path in paths]
    book = _open_ledger(ledger)
    views = [_view(index, release, book, include_private) for index, release in enumerate(releases, start=1)]
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    handling = ""
    if include_private and any(v.curves is not None or v.real_examples for v in views):
        handling = ('<p class="notice"><strong>Internal document.</strong> This page shows material computed on the private data '
                    "without differential privacy (real examples, training curves). Share it only with people allowed to see that data; "
                    "<code>privmed report --omit-private</code> leaves that material out.</p>")
    title = "privmed release report" + (f": {releases[0].path.name}" if len(releases) == 1 else f": {len(releases)} releases")
    body = "\n".join(_section(view) for view in views)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="privmed {_e(__version__)}">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>{_e(title)}</h1>
<p class="muted">Generated {_e(generated)} by privmed {_e(__version__)}. Each section states what was released, the guarantee it carries
and what that means for one patient, the warnings that apply, and the evidence on utility and leakage found beside it.</p>
</header>
{handling}
<nav aria-label="releases">{_overview(views)}</nav>
{body}
{_SIGNOFF}
</main>
</body>
</html>
"""


def write_report(
    paths: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    ledger: BudgetLedger | str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    include_private: bool = True,
) -> Path:
    """Build the page (see :func:`build_report`) and write it to ``out`` atomically; returns ``out``.

    Refuses an existing ``out`` unless ``overwrite``; on any error nothing is written.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise PrivmedError(f"{target} already exists: pass --overwrite to replace it")
    if target.is_dir():
        raise PrivmedError(f"{target} is a directory: give a file name for the report")
    page = build_report(paths, ledger, include_private=include_private)
    write_text_atomic(target, page)
    logger.info("wrote the report for %d release(s) to %s", len(paths), target)
    return target
