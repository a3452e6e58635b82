"""``privmed evaluate attack``, ``privmed evaluate diversity`` and ``privmed audit``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import console, print_json
from privmed.errors import PrivmedError
from privmed.privacy.report import PrivacyReport


def _find_privacy_report(ref: str, explicit: Path | None) -> PrivacyReport | None:
    """The release's privacy.json: the one given, else in the release folder or beside the release file."""
    if explicit is not None:
        return PrivacyReport.from_json(explicit)
    from privmed.data import parse_ref

    path = Path(parse_ref(ref)[0])
    if not path.exists():  # an embedded dataset has no privacy report
        return None
    for candidate in (path / "privacy.json", path.parent / "privacy.json", path.parent.parent / "privacy.json"):
        if candidate.is_file():
            return PrivacyReport.from_json(candidate)
    return None


def _progress(disable: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True, disable=disable)


def attack(
    members: str = typer.Option(..., "--members", help="Images the release was trained on (a dataset ref)."),
    non_members: str = typer.Option(..., "--non-members", help="Real images the release never saw (a dataset ref); 2/3 of the candidates come from here."),
    release: str = typer.Option(..., "--release", help="The released images to attack (a dataset ref)."),
    out: Path = typer.Option(..., "--out", help="Folder for attack.json, roc.png and roc_controls.png (must not hold an attack.json yet)."),
    model: Path | None = typer.Option(None, "--model", help="Run directory of the model behind the release: adds its own membership score when the method offers one."),
    reference: str | None = typer.Option(None, "--reference", help="More non-member images for the density-ratio attack and the fresh-data control (default: a third of --non-members)."),
    privacy: Path | None = typer.Option(None, "--privacy", help="The release's privacy.json (default: found beside the release or in --model)."),
    density: str = typer.Option("kde", "--density", help="Density estimator of the density-ratio attack: kde or gmm."),
    embedding_dim: int = typer.Option(16, "--embedding-dim", min=1, help="Dimensions of the embedding (domain-encoder features reduced by PCA)."),
    encoder_steps: int = typer.Option(300, "--encoder-steps", min=1, help="Training steps of the domain encoder behind the embedding."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples for each AUC interval."),
    seed: int = typer.Option(0, "--seed", help="Seed for candidate selection, the embedding and the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print attack.json's summary as JSON instead of a table."),
) -> None:
    """Membership-inference attacks on a release, with controls and the bound its (epsilon, delta) allows.

    Candidates are 1/3 members and 2/3 non-members (seed 001). Attacks: nearest released image in pixels and in an embedding (pairwise), released images within a small radius (distribution), DOMIAS-style density ratio, and the model's own score with --model. Each gets a ROC curve, AUC with a 95% BCa interval, TPR at FPR 0.1% and 1%, and top-k tables. Controls: a copy of the members as release (AUC near 1) and fresh non-members (near 0.5).
    """
    from privmed.data import load
    from privmed.evaluate.attacks import AttackEmbedding, run_attacks, write_attack_report

    if (out / "attack.json").exists():
        raise PrivmedError(f"{out} already holds an attack.json: choose another --out")
    report_file = privacy if privacy is not None or model is None or not (model / "privacy.json").is_file() else model / "privacy.json"
    privacy_report = _find_privacy_report(release, report_file)
    members_data, non_members_data, release_data = load(members), load(non_members), load(release)
    reference_data = load(reference) if reference is not None else None
    with _progress(as_json) as progress:
        task = progress.add_task("embedding", total=None)
        embedding = AttackEmbedding(dim=embedding_dim, encoder_steps=encoder_steps, seed=seed, progress=lambda step, total, loss: progress.update(task, description=f"domain encoder {step}/{total}"))
        report = run_attacks(
            members_data, non_members_data, release_data, reference=reference_data, model_dir=model, privacy=privacy_report,
            embedding=embedding, density=density, n_resamples=resamples, seed=seed,
            on_stage=lambda stage: progress.update(task, description=f"attacking: {stage}"),
        )
    paths = write_attack_report(out, report, privacy_report)
    if as_json:
        summary = report.to_dict()
        summary["release"]["attacks"] = {name: result.to_dict(curve=False) for name, result in report.release.results.items()}
        print_json(summary)
        return
    guarantee = privacy_report.summary_line() if privacy_report is not None else "no privacy report found"
    table = Table(title=f"Membership inference on {release} ({guarantee})")
    for column in ("attack", "AUC [95% CI]", "TPR@FPR 0.1%", "TPR@FPR 1%", "control: members copy", "control: fresh"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    for name, result in report.release.results.items():
        controls = [report.controls[key].results.get(name) if key in report.controls else None for key in ("members-copy", "fresh-non-members")]
        table.add_row(
            name, f"{result.auc:.3f} [{result.auc_low:.3f}, {result.auc_high:.3f}]", f"{result.tpr_at_fpr['0.001']:.3f}", f"{result.tpr_at_fpr['0.01']:.3f}",
            *(f"{c.auc:.3f}" if c is not None else "-" for c in controls),
        )
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"wrote {paths['attack']}, {paths['roc']} and {paths['roc_controls']}")


def diversity(
    real: str = typer.Option(..., "--real", help="Real images (a dataset ref); the UMAP and the domain encoder are fitted on these only."),
    synthetic: str = typer.Option(..., "--synthetic", help="Synthetic or privatized images of the same size (a dataset ref)."),
    out: Path = typer.Option(..., "--out", help="Folder for diversity.json and umap.png (must not hold a diversity.json yet)."),
    model: str = typer.Option("cnn", "--model", help="Real-vs-synthetic classifier: cnn or resnet18."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Classifier training epochs."),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="Share of each set held out to test the classifier."),
    encoder_steps: int = typer.Option(300, "--encoder-steps", min=1, help="Training steps of the domain encoder whose features UMAP maps."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples for the AUC interval."),
    seed: int = typer.Option(0, "--seed", help="Seed for splits, training, UMAP and the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print diversity.json instead of a table."),
) -> None:
    """Does the release cover the real distribution? A UMAP map and a real-vs-synthetic classifier.

    UMAP is fitted on real features and the synthetic images are projected into it (OUT/umap.png). A classifier trained to tell real from synthetic is tested on held-out images: ROC AUC near 0.5 (95% BCa interval, 2000 resamples) means the two sets look alike.
    """
    from privmed.data import load
    from privmed.evaluate.diversity import diversity_report, write_diversity_report

    if (out / "diversity.json").exists():
        raise PrivmedError(f"{out} already holds a diversity.json: choose another --out")
    real_data, synthetic_data = load(real), load(synthetic)
    with _progress(as_json) as progress:
        task = progress.add_task("domain encoder", total=None)
        report, projection = diversity_report(
            real_data, synthetic_data, encoder_steps=encoder_steps, model=model, epochs=epochs, test_fraction=test_fraction,
            n_resamples=resamples, seed=seed,
            on_encoder_step=lambda step, total, loss: progress.update(task, description=f"domain encoder {step}/{total}"),
            on_epoch=lambda epoch, total, loss: progress.update(task, description=f"real-vs-synthetic classifier, epoch {epoch}/{total}"),
        )
    paths = write_diversity_report(out, report, projection, real_data.class_names)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(f"real-vs-synthetic ROC AUC {report.auc:.3f} [{report.auc_low:.3f}, {report.auc_high:.3f}] (95% BCa CI, {report.n_test} held-out images; 0.5 = indistinguishable)")
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"wrote {paths['diversity']} and {paths['umap']}")


def audit(
    config_or_run: Path = typer.Argument(..., help="An audit configuration (JSON) or a folder holding one as config.json."),
    out: Path | None = typer.Option(None, "--out", help="Where to write audit.json (default: beside the configuration)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Empirical lower bound on epsilon by one-run auditing (Steinke, Nasr & Jagielski 2023).

    Marked canary images are each added to the training data with probability 1/2; after training, the release (or the model) is attacked and the k+ most and k- least suspicious canaries are guessed in and out. The number of right guesses gives, with the stated confidence, an epsilon the method cannot be below. A DP method must stay at or under its claim. Configuration keys: method (a generative or privatizing method such as acgan or pixel-ldp, or memorize), epsilon (a number or "inf"; not for memorize), data (dataset ref), canary_pool (dataset ref, default: data), canaries (default: the fewest that can show the claimed epsilon violated, else 100), canary_side (side of the bright square, default a sixth of the image), mislabel (give each canary another class; default true for class-conditional methods such as acgan), runs (1), k_plus and k_minus (default: a quarter of the canaries each), delta (default: the method's own), confidence (0.95), seed (0), options (the method's keywords, e.g. {"max_steps": 2000, "batch_size": 64} for acgan). For a generative method also: score ("model": its trained model's score, the default where it offers one, e.g. acgan's discriminator; "release": the nearest of "samples" released images), run_dir (keep the training runs there; default: a temporary folder).
    """
    from privmed.evaluate.audit import run_audit

    with _progress(as_json) as progress:
        task = progress.add_task("training with canaries", total=None)
        result, payload, target = run_audit(config_or_run, out, on_run=lambda done, total: progress.update(task, completed=done, total=total))
    if as_json:
        print_json(payload)
        return
    console.print(
        f"{result.correct} of {result.guesses} guesses right on {result.canaries} canaries: epsilon >= {result.epsilon_lower_bound:.3f} per {result.unit} "
        f"with {result.confidence:.0%} confidence (delta={result.delta:g}); the most this audit could prove (every guess right): "
        f"epsilon = {result.epsilon_ceiling:.3f}"
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if result.claimed_epsilon is not None:
        verdict = "[green]consistent with[/green]" if result.consistent else "[bold red]EXCEEDS[/bold red]"
        console.print(f"{verdict} the claimed epsilon {result.claimed_epsilon:g} per {result.unit} (from the method's privacy report)")
    console.print(f"wrote {target}")
