"""``privmed evaluate obfuscation``: does a planted marker or a flip survive CADP, DP-GLOW or pixel noise?"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import console, print_json
from privmed.errors import PrivmedError

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset
    from privmed.methods.local_dp import LaplacePrivatizer

NOT_A_RELEASE = (
    "an evaluation of the mechanisms, not a release: the privatized test images are neither saved nor recorded "
    "in the budget ledger"
)

# Below this AUC on untouched images the detector has not learned the feature, and its misses prove nothing.
WEAK_DETECTOR_AUC = 0.75


class Feature(str, Enum):
    marker = "marker"
    flip = "flip"


def parse_epsilons(text: str) -> list[float]:
    """Comma-separated per-image budgets ("1,10,100") as positive finite floats, in the order given."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise PrivmedError(f"--epsilons: {part.strip()!r} is not a number (give e.g. 1,10,100)") from None
        if not (value > 0 and math.isfinite(value)):
            raise PrivmedError(f"--epsilons: every epsilon must be positive and finite, got {part.strip()!r}")
        values.append(value)
    return values


def _privatizers(
    epsilons: list[float],
    test: ImageDataset,
    cadp: Path | None,
    clip: float | None,
    dpglow: Path | None,
    alpha: float,
    pixel_ldp: bool,
) -> list[tuple[str, LaplacePrivatizer]]:
    """(method name, privatizer) for every chosen method and epsilon, each checked against ``test`` first."""
    from privmed.methods.cadp import CADP
    from privmed.methods.dpglow import DPGLOW
    from privmed.methods.flow_training import load_trained_flow
    from privmed.methods.pixel_ldp import PixelLDP

    methods: list[tuple[str, LaplacePrivatizer]] = []
    if cadp is not None:
        trained = load_trained_flow(cadp)
        # Not a release: the conditional flow decodes with the true labels, as in seed 002's setting.
        methods += [("cadp", CADP(trained.flow, epsilon, clip).set_labels(public_labels=True)) for epsilon in epsilons]
    if dpglow is not None:
        trained = load_trained_flow(dpglow)
        if trained.latent_min is None or trained.latent_max is None:
            raise PrivmedError(f"{dpglow}: the flow has no training latent range (train it to the last epoch first)")
        methods += [
            ("dpglow", DPGLOW(trained.flow, epsilon, alpha).fit_range(trained.latent_min, trained.latent_max)) for epsilon in epsilons
        ]
    if pixel_ldp:
        methods += [("pixel-ldp", PixelLDP(epsilon).fit(test)) for epsilon in epsilons]
    for _, method in methods:
        method.check_data(test)
    return methods


def obfuscation(
    originals: str = typer.Option(..., "--originals", help="Images the detector learns the feature on (a dataset ref, e.g. public data)."),
    test: str = typer.Option(..., "--test", help="Images to plant the feature in (a random half) and privatize (a dataset ref)."),
    feature: Feature = typer.Option(..., "--feature", help="marker: a bright square, upper right; flip: a left-right mirror."),
    out: Path = typer.Option(..., "--out", help="Folder for obfuscation.json and obfuscation.png (must not hold an obfuscation.json yet)."),
    epsilons: str = typer.Option(..., "--epsilons", help="Per-image epsilons to test each method at, comma-separated (e.g. 1,10,100)."),
    cadp: Path | None = typer.Option(None, "--cadp", help="Test CADP with this flow directory (from privmed train flow --conditional)."),
    clip: float | None = typer.Option(None, "--clip", help="CADP's L1 clipping radius S (needed with --cadp)."),
    dpglow: Path | None = typer.Option(None, "--dpglow", help="Test DP-GLOW with this flow directory (its training latents set the box)."),
    alpha: float = typer.Option(0.4, "--alpha", help="DP-GLOW box width as a fraction of the training latents' range (seed 003: 0.4)."),
    pixel_ldp: bool = typer.Option(False, "--pixel-ldp", help="Test Laplace noise on pixels (seed 003's baseline)."),
    detector_epochs: int = typer.Option(5, "--detector-epochs", min=1, help="Training epochs of the feature detector."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Mini-batch size of the feature detector."),
    seed: int = typer.Option(0, "--seed", help="Seed for the detector, which half gets the feature, and the privatization noise."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
) -> None:
    """Measure how well each privatizer hides an identifying feature (seed 003, Figs. 4-7, quantified).

    A CNN learns to find the feature on ORIGINALS (half of them get it). The feature is then planted in a
    random half of TEST, which every chosen method privatizes once per epsilon; the detector's detection
    rate, false-alarm rate, their difference (advantage; 0 = hidden) and AUC are reported per method and
    epsilon. Writes OUT/obfuscation.json and OUT/obfuscation.png. This evaluates the mechanisms; it
    releases nothing.
    """
    budgets = parse_epsilons(epsilons)
    if cadp is None and clip is not None:
        raise PrivmedError("--clip is CADP's clipping radius: give it together with --cadp FLOW_DIR")
    if cadp is not None and clip is None:
        raise PrivmedError("--cadp needs --clip S, the L1 radius each latent is clipped to")
    if cadp is None and dpglow is None and not pixel_ldp:
        raise PrivmedError("choose at least one method: --cadp FLOW_DIR --clip S, --dpglow FLOW_DIR or --pixel-ldp")
    if (out / "obfuscation.json").exists():
        raise PrivmedError(f"{out} already holds an obfuscation.json: choose another --out")
    from privmed.data import load
    from privmed.evaluate.obfuscation import obfuscation_curve, save_obfuscation_plot, train_feature_detector
    from privmed.fileio import write_json_atomic

    original_data, test_data = load(originals), load(test)
    if original_data.images.shape[1:] != test_data.images.shape[1:]:
        raise PrivmedError(
            f"{originals} has images of shape {original_data.images.shape[1:]} but {test} has {test_data.images.shape[1:]}"
        )
    methods = _privatizers(budgets, test_data, cadp, clip, dpglow, alpha, pixel_ldp)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}  {task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as progress:
        training = progress.add_task(f"training the {feature.value} detector", total=detector_epochs, status="")
        detector = train_feature_detector(
            original_data,
            feature.value,
            epochs=detector_epochs,
            batch_size=batch_size,
            seed=seed,
            on_epoch=lambda epoch, _total, loss: progress.update(training, completed=epoch, status=f"loss {loss:.4f}"),
        )
        privatizing = progress.add_task("privatizing and detecting", total=len(methods), status="")
        done = {"count": 0}

        def on_method(name: str) -> None:
            progress.update(privatizing, completed=done["count"], status=name)
            done["count"] += 1

        points = obfuscation_curve(detector, test_data, feature.value, methods, seed=seed, on_method=on_method)
    clean = points[0]
    weak_detector = (
        f"the detector barely finds the {feature.value} on untouched images (AUC {clean.auc:.3f}): its rates after privatization "
        "say little about hiding; train it longer (--detector-epochs) or use more --originals"
        if clean.auc < WEAK_DETECTOR_AUC
        else None
    )
    payload: dict[str, Any] = {
        "feature": feature.value,
        "originals": originals,
        "test": test,
        "epsilons": budgets,
        "methods": {
            **({"cadp": {"flow": str(cadp), "clip": clip}} if cadp is not None else {}),
            **({"dpglow": {"flow": str(dpglow), "alpha": alpha}} if dpglow is not None else {}),
            **({"pixel-ldp": {}} if pixel_ldp else {}),
        },
        "detector": {"model": "cnn", "epochs": detector_epochs, "batch_size": batch_size, "n_train": len(original_data)},
        "seed": seed,
        "notes": [
            "detection rate = P(detector says feature | feature); false_alarm_rate = P(says feature | no feature); "
            "advantage = their difference (0: the feature is hidden); auc over both halves",
            "epsilon: pure epsilon per image from each method's privacy report; method 'none' = the untouched images",
            NOT_A_RELEASE,
            *([weak_detector] if weak_detector else []),
        ],
        "points": [point.to_dict() for point in points],
    }
    json_path = write_json_atomic(out / "obfuscation.json", payload)
    plot_path = save_obfuscation_plot(out / "obfuscation.png", points, title=f"{feature.value} after privatization ({test})")
    if as_json:
        print_json(payload)
        return
    table = Table(title=f"{feature.value} detection after privatization")
    for column in ("method", "epsilon per image", "detection rate", "false alarms", "advantage", "AUC"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for point in points:
        table.add_row(
            point.method, f"{point.epsilon:.4g}", f"{point.detection_rate:.3f}", f"{point.false_alarm_rate:.3f}",
            f"{point.advantage:+.3f}", f"{point.auc:.3f}",
        )
    console.print(table)
    console.print(f"[yellow]-[/yellow] {NOT_A_RELEASE}", highlight=False)
    if weak_detector:
        console.print(f"[bold yellow]warning:[/bold yellow] {weak_detector}", highlight=False)
    console.print(f"wrote {json_path} and {plot_path}")
