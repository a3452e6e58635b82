"""``privmed evaluate classifier`` (train on a release, test on real images) and ``privmed evaluate detection``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import console, print_json
from privmed.errors import PrivmedError
from privmed.fileio import write_json_atomic
from privmed.models import CLASSIFIER_NAMES
from privmed.privacy.report import PrivacyReport


def release_privacy(ref: str) -> PrivacyReport | None:
    """The privacy report written beside a release (``privmed privatize ... --out DIR``), if there is one."""
    from privmed.data import parse_ref

    source = Path(parse_ref(ref)[0])
    folder = source if source.is_dir() else source.parent
    path = folder / "privacy.json"
    return PrivacyReport.from_json(path) if path.is_file() else None


def classifier(
    train: str = typer.Option(..., "--train", help="The release to train on (a dataset ref: PATH, PATH:SPLIT or phantom-classes:train)."),
    test: str = typer.Option(..., "--test", help="Real, untouched images to test on (a dataset ref with class labels)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json and roc.png (must not hold a metrics.json yet)."),
    model: str = typer.Option("cnn", "--model", help=f"Classifier: {' or '.join(CLASSIFIER_NAMES)} (both GroupNorm)."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Mini-batch size."),
    learning_rate: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialization, shuffling and the bootstrap."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples for the AUC interval."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
) -> None:
    """Train a classifier on TRAIN and report accuracy and ROC AUC (95% BCa bootstrap CI) on TEST.

    The utility test of seeds 002 and 003: a release is useful if a model trained on it still recognizes the pathology in real images. Writes OUT/metrics.json and OUT/roc.png.
    """
    if model.strip().lower() not in CLASSIFIER_NAMES:
        raise PrivmedError(f"unknown classifier {model!r}: use one of {', '.join(CLASSIFIER_NAMES)}")
    if (out / "metrics.json").exists():
        raise PrivmedError(f"{out} already holds a metrics.json: choose another --out")
    from privmed.data import load
    from privmed.evaluate.classifier import evaluate_classifier, write_classifier_report

    train_data, test_data = load(train), load(test)
    with Progress(
        TextColumn("[bold]training {task.fields[model]}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}  loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("train", total=epochs, model=model, loss="-")
        metrics, probabilities = evaluate_classifier(
            train_data,
            test_data,
            model=model.strip().lower(),
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            n_resamples=resamples,
            on_epoch=lambda epoch, _total, loss: progress.update(task, completed=epoch, loss=f"{loss:.4f}"),
        )
    metrics.train, metrics.test = train, test
    report = release_privacy(train)
    if report is not None:
        metrics.privacy = {"summary": report.summary_line(), "epsilon": report.epsilon, "delta": report.delta, "unit": report.unit}
    paths = write_classifier_report(out, metrics, test_data.labels, probabilities)
    if as_json:
        print_json(metrics.to_dict())
        return
    table = Table(title=f"{metrics.model} trained on {train}, tested on {test}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{metrics.accuracy:.3f}")
    table.add_row(
        "ROC AUC", f"{metrics.roc_auc:.3f}  [{metrics.roc_auc_low:.3f}, {metrics.roc_auc_high:.3f}] {metrics.confidence:.0%} CI"
    )
    table.add_row("train / test images", f"{metrics.n_train} / {metrics.n_test}")
    if metrics.privacy is not None:
        table.add_row("release guarantee", metrics.privacy["summary"])
    console.print(table)
    console.print(f"wrote {paths['metrics']} and {paths['roc']}")


def detection(
    normal_flow: Path = typer.Option(..., "--normal-flow", help="Flow directory (privmed train flow) trained on normal images only."),
    mixture_flow: Path = typer.Option(..., "--mixture-flow", help="Flow directory trained on normal and abnormal images."),
    data: str = typer.Option(..., "--data", help="Labelled images to score (e.g. a privatized release of a test set)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json (must not hold one yet)."),
    normal_label: int = typer.Option(0, "--normal-label", help="The class label of normal images; every other label is abnormal."),
    seed: int = typer.Option(0, "--seed", help="Seed for the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Detect abnormal images by the likelihood ratio of two flows (seed 003, Appendix A): ROC AUC with 95% CI.

    Score: log p(x | normal flow) - log p(x | mixture flow), the log posterior of "normal" up to a constant. Run it on privatized images to see how much pathology a release keeps.
    """
    from privmed.data import load
    from privmed.evaluate.likelihood import detection_auc
    from privmed.methods.flow_training import load_trained_flow

    if (out / "metrics.json").exists():
        raise PrivmedError(f"{out} already holds a metrics.json: choose another --out")
    images = load(data)
    normal, mixture = load_trained_flow(normal_flow), load_trained_flow(mixture_flow)
    for name, trained in (("--normal-flow", normal), ("--mixture-flow", mixture)):
        if trained.flow.conditional:
            raise PrivmedError(f"{name} {trained.config.get('data', {}).get('ref', '')}: detection needs unconditional flows (p(x), not p(x | class))")
    result = detection_auc(normal.flow, mixture.flow, images, normal_label=normal_label, seed=seed)
    payload = {"data": data, "normal_flow": str(normal_flow), "mixture_flow": str(mixture_flow), "normal_label": normal_label, **result.to_dict()}
    write_json_atomic(out / "metrics.json", payload)
    if as_json:
        print_json(payload)
        return
    console.print(
        f"detection AUC {result.auc:.3f} [{result.auc_low:.3f}, {result.auc_high:.3f}] ({result.confidence:.0%} CI), "
        f"{result.n_abnormal} abnormal of {result.n_images} images; wrote {out / 'metrics.json'}"
    )
