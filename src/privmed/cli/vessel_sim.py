"""``privmed train vessel-sim``: the public vessel simulator, fitted to private pairs by one Gaussian release."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from privmed.cli._common import console, print_privacy_report


class Unit(str, Enum):
    image = "image"
    patient = "patient"


class Statistics(str, Enum):
    all = "all"
    geometry = "geometry"


def train(
    data: str | None = typer.Option(None, "--data", help="Private image + label pairs (PATH, PATH:SPLIT, phantom:train). Leave out with --epsilon 0."),
    out: Path = typer.Option(..., "--out", help="Run directory to create (config.json, privacy.json, fit.json, samples/)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon of the one release, per --unit; 0 releases the public prior alone (no data read)."),
    delta: float | None = typer.Option(None, "--delta", help="Delta; default min(1e-5, 1/(10 N)) for N private units."),
    unit: Unit = typer.Option(Unit.image, "--unit", help="What epsilon protects: one image, or every image of a patient."),
    clip: float = typer.Option(1.0, "--clip", help="L2 bound of each unit's statistics vector (the sensitivity is 2 clip / N)."),
    statistics: Statistics = typer.Option(Statistics.all, "--statistics", help="What is released: all 15 image and label statistics, or geometry (the 6 label statistics: vessel density and widths; image appearance keeps the public defaults, at 1.7x the signal-to-noise ratio per statistic)."),
    prior_weight: float = typer.Option(1.0, "--prior-weight", min=0.0, help="Pull of the parameter search towards the public defaults (larger: closer to the prior at small epsilon)."),
    evaluations: int = typer.Option(150, "--evaluations", min=1, help="Simulator calls of the (free) parameter search."),
    size: int | None = typer.Option(None, "--size", min=16, help="Side of the generated images (default: the private images' size; 96 for --epsilon 0)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the parameter search and of the samples (the DP noise comes from the OS)."),
) -> None:
    """Fit the public vessel simulator to private pairs: one Gaussian release of a few clipped per-unit
    statistics, then a search for simulator parameters that reproduce them (post-processing).

    The simulator and its defaults are public knowledge; only the released statistics touch private data,
    and the epsilon of that one release is reserved in the budget ledger before it is made.
    """
    from privmed.data import load
    from privmed.methods.vessel_sim import VesselSimFit

    shape = None if size is None else (size, size)
    model = VesselSimFit(epsilon, delta=delta, unit=unit.value, clip=clip, statistics=statistics.value, prior_weight=prior_weight, fit_evaluations=evaluations, size=shape, seed=seed, run_dir=out)
    if epsilon == 0:
        if data is not None:
            console.print("[yellow]--epsilon 0 releases the public prior only: --data is not read[/yellow]")
        model.fit()
    else:
        if data is None:
            from privmed.errors import PrivmedError

            raise PrivmedError("--data is required for a DP fit (or pass --epsilon 0 for the public prior alone)")
        with console.status("releasing the statistics and fitting the simulator"):
            model.fit(load(data), data_ref=data)
    from privmed.data.grids import save_pair_grid

    grid = save_pair_grid(model.sample(16), out / "samples" / "fitted.png", n=16, columns=4)
    print_privacy_report(model.privacy_report())
    console.print(f"run directory: {out} (config.json, privacy.json, fit.json with the released statistics, samples/)")
    console.print(f"simulator fitted: draw pairs with 'privmed generate {out} --n N' (sample grid: {grid})")
