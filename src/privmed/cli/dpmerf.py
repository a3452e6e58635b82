"""``privmed train dpmerf``: class-conditional images from one DP release of per-class mean embeddings."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from privmed.cli._common import REPRODUCIBLE_HELP, console, print_privacy_report


class Unit(str, Enum):
    image = "image"
    patient = "patient"


class Neighbouring(str, Enum):
    add_remove = "add-remove"
    replace_one = "replace-one"


def _parts(text: str) -> dict[str, float]:
    """'pixels=1,rff=1,conv=1' -> {'pixels': 1.0, ...} (a part without '=' weighs 1)."""
    from privmed.errors import PrivmedError

    parts: dict[str, float] = {}
    for item in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, weight = item.partition("=")
        try:
            parts[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise PrivmedError(f"--features: {item!r} is not NAME or NAME=WEIGHT") from None
    return parts


def train(
    data: str = typer.Option(..., "--data", help="Labelled images: a dataset ref (PATH, PATH:SPLIT, phantom-classes:train)."),
    out: Path = typer.Option(..., "--out", help="Run directory to create."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon of the one release; 'inf' releases without noise (a reference)."),
    delta: float | None = typer.Option(None, "--delta", help="Delta; default min(1e-5, 1/(10N)) for N private units."),
    unit: Unit = typer.Option(Unit.image, "--unit", help="What epsilon protects: one image, or every image of a patient."),
    neighbouring: Neighbouring = typer.Option(Neighbouring.add_remove, "--neighbouring", help="Add/remove one unit (sensitivity 1) or replace one (about 2)."),
    features: str = typer.Option("pixels=1,rff=1,conv=1", "--features", help="Feature parts and weights: pixels, rff (random Fourier features), conv (fixed random conv net)."),
    steps: int = typer.Option(300, "--steps", min=1, help="Generator steps (no privacy cost: the generator sees only the release)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the feature map, the generator and its latents (public; the DP noise stays secret unless --reproducible)."),
    reproducible: bool = typer.Option(False, "--reproducible", help=REPRODUCIBLE_HELP.format(batches="")),
) -> None:
    """Release per-class mean embeddings once (Gaussian mechanism), then train a generator on them for free.

    Each image becomes onehot(class) x [alpha phi(x), beta] with ||phi(x)|| <= 1; the per-class sums get
    Gaussian noise calibrated exactly (analytic Gaussian) for --epsilon. Draw images with 'privmed generate'.
    """
    from privmed.data import load
    from privmed.methods.dpmerf import DPMERF

    model = DPMERF(
        epsilon, delta=delta, unit=unit.value, neighbouring=neighbouring.value, features=_parts(features), steps=steps,
        seed=seed, reproducible=reproducible, run_dir=out,
    )
    with console.status("releasing the embeddings and training the generator"):
        model.fit(load(data), data_ref=data)
    report = model.privacy_report()
    console.print(f"release done: one Gaussian release, generator trained {steps} steps on it (loss {model.final_loss_:.4g})")
    print_privacy_report(report)
    console.print(f"run directory: {out} (privacy.json, release.pt, generator.pt, samples/); draw images with: privmed generate {out} --n N --out DIR")
