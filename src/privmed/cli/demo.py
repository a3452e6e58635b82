"""``privmed demo``: a per-image DP release of vessel pairs on an embedded phantom, with its utility, in minutes.

The method is the one that carries utility when private images are few: the public vessel simulator,
fitted to the private set by one Gaussian release of a few statistics (:mod:`privmed.methods.vessel_sim`).
The demo's private set is drawn from the same simulator with parameters *unlike* its public defaults
(wider vessels of higher contrast, darker and noisier images), so the DP step has something to learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from privmed.cli._common import console, print_privacy_report

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset

DEMO_EPSILON = 8.0
DEMO_SIZE = 128
DEMO_PRIVATE_IMAGES = 40
DEMO_TEST_IMAGES = 10
DEMO_SAMPLES = 200
DEMO_EVALUATIONS = 64
DEMO_UTILITY_STEPS = 300
DEMO_PATCH = 32
DEMO_PRIVATE_PARAMS = {
    "vessel_width": 0.03, "min_width_px": 1.5, "contrast": 0.4, "background": 0.4, "vignetting": 0.5, "noise": 0.02,
    "blur_px": 1.2, "disc_brightness": 0.4,
}
"""How the demo's 'private' phantom differs from the public prior (the simulator's defaults; a plain dict so
that importing the CLI does not import scipy)."""


def demo_data(seed: int) -> tuple[ImageDataset, ImageDataset]:
    """The demo's private training pairs and held-out test pairs (disjoint seeds)."""
    from dataclasses import replace

    from privmed.data.vessel_sim import VesselSimParams, simulate_vessels

    params = VesselSimParams(**DEMO_PRIVATE_PARAMS)
    train = simulate_vessels(DEMO_PRIVATE_IMAGES, DEMO_SIZE, seed=10_000 + seed, params=params, subject_prefix="private")
    test = simulate_vessels(DEMO_TEST_IMAGES, DEMO_SIZE, seed=20_000 + seed, params=params, subject_prefix="test")
    return replace(train, name="demo-phantom"), replace(test, name="demo-phantom-test")


def demo(
    out: Path = typer.Option(Path("privmed-demo"), "--out", help="Folder for the demo's releases, samples, grid and evaluation."),
    utility: bool = typer.Option(True, "--utility/--no-utility", help="Also train U-Nets on the release, on the real pairs and on the prior alone, and compare their Dice on held-out images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the whole demo (the DP noise itself comes from the OS)."),
) -> None:
    """Fit the public vessel simulator to 40 private phantom images at epsilon 8 per image, draw pairs, show a grid.

    Prints where everything is, what was public and what epsilon was spent. With --utility (default), U-Nets
    trained on the release, on the real pairs and on the public prior alone (epsilon 0) are compared by Dice on
    held-out images; the evaluation is written into the release folder, so 'privmed report OUT/release' shows it.
    """
    from privmed.data import load
    from privmed.data.grids import save_pair_grid
    from privmed.evaluate.segmentation import SegmentationConfig, evaluate_segmentation
    from privmed.methods.release import release_from_run
    from privmed.methods.vessel_sim import VesselSimFit

    release_dir, prior_dir, samples_dir, grid_path = out / "release", out / "prior", out / "synthetic", out / "synthetic_grid.png"
    private, test = demo_data(seed)
    console.print(
        f"[bold]privmed demo[/bold]: the public vessel simulator fitted to {len(private)} private phantom images "
        f"at epsilon {DEMO_EPSILON:g} per image -> {out}"
    )
    console.print(
        "public (not covered by epsilon): the simulator and its default parameters. private: the phantom images, "
        "drawn with other parameters (" + ", ".join(f"{k}={v:g}" for k, v in DEMO_PRIVATE_PARAMS.items()) + ")",
        highlight=False,
    )
    with console.status("releasing the statistics (one Gaussian release) and fitting the simulator"):
        model = VesselSimFit(DEMO_EPSILON, unit="image", fit_evaluations=DEMO_EVALUATIONS, seed=seed, run_dir=release_dir).fit(private, data_ref="demo phantom")
        prior = VesselSimFit(0.0, size=(DEMO_SIZE, DEMO_SIZE), seed=seed, run_dir=prior_dir).fit()
    report = model.privacy_report()
    data_path = release_from_run(release_dir, samples_dir, n=DEMO_SAMPLES, seed=seed).data_path
    synthetic = load(str(data_path))
    save_pair_grid(synthetic, grid_path, n=16, columns=4, scale=2)
    save_pair_grid(private, release_dir / "samples" / "private_examples.png", n=4, columns=4, scale=1)

    print_privacy_report(report)
    table = Table(title="demo outputs", show_header=False)
    table.add_column("what")
    table.add_column("where")
    table.add_row("release (run directory)", str(release_dir))
    table.add_row("public prior alone (epsilon 0)", str(prior_dir))
    table.add_row("synthetic pairs", f"{data_path} ({len(synthetic)} pairs)")
    table.add_row("privacy report", str(samples_dir / "privacy.json"))
    table.add_row("sample grid", str(grid_path))
    console.print(table)
    console.print(
        f"epsilon spent: {report.epsilon:.3g} per {report.unit} (delta {report.delta:.2g}, {report.n_units} {report.unit} units)",
        highlight=False,
    )
    if not utility:
        return
    config = SegmentationConfig(steps=DEMO_UTILITY_STEPS, patch_size=DEMO_PATCH, seed=seed)
    tests = {"demo-phantom:test": test}
    with console.status("training U-Nets on the release, on the real pairs and on the prior alone"):
        on_release = evaluate_segmentation(synthetic, tests, release_dir / "evaluation", config, reference_train=private,
                                           train_name="U-Net trained on the DP release", n_overlays=2)
        on_prior = evaluate_segmentation(prior.sample(DEMO_SAMPLES, seed=seed), tests, prior_dir / "evaluation", config,
                                         train_name="U-Net trained on the public prior alone (epsilon 0)", n_overlays=2)
    dice = {row["model"]: row["dice_mean"] for row in on_release.results + on_prior.results}
    release_dice = dice["U-Net trained on the DP release"]
    real_dice = next(v for k, v in dice.items() if "real reference" in k)
    prior_dice = dice["U-Net trained on the public prior alone (epsilon 0)"]
    console.print(
        f"utility on {len(test)} held-out phantom images (Dice): {release_dice:.3f} trained on the DP release (epsilon "
        f"{report.epsilon:.3g} per image) | {real_dice:.3f} on the real pairs (no privacy) | {prior_dice:.3f} on the public "
        f"prior alone (epsilon 0)",
        highlight=False,
    )
    console.print(f"see it all on one page: privmed report {release_dir} {prior_dir} --out {out / 'report.html'}", highlight=False)
