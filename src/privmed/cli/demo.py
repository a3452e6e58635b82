"""``privmed demo``: the whole DP-WGAN release on the embedded phantom, in a couple of minutes on a laptop CPU."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from privmed.cli._common import console, fit_with_progress, print_privacy_report
from privmed.cli.dpwgan import WGAN_LOSSES

DEMO_DATA = "phantom:train"
DEMO_TEST = "phantom:test"
DEMO_EPSILON = 8.0
DEMO_SAMPLES = 256
# A small schedule that fits the time budget: 32x32 patches, narrow networks, 600 critic steps.
DEMO_OPTIONS = {
    "unit": "patch",
    "patch_size": 32,
    "patches_per_subject": 64,
    "max_steps": 600,
    "generator_channels": 32,
    "critic_channels": 16,
    "learning_rate": 2e-4,
}
DEMO_UTILITY_STEPS = 150


def demo(
    out: Path = typer.Option(Path("privmed-demo"), "--out", help="Folder for the demo's run, samples and grid."),
    utility: bool = typer.Option(True, "--utility/--no-utility", help="Also train U-Nets on synthetic and on real pairs and compare their Dice on phantom:test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the whole demo."),
) -> None:
    """Train a DP-WGAN on phantom vessel images at epsilon 8 per patch, draw synthetic pairs, show a grid.

    Prints where everything is and the epsilon spent, with its unit and delta. With --utility (default), U-Nets
    trained on synthetic and on real pairs are compared on held-out phantom images (segmentation Dice).
    """
    from privmed.data import load
    from privmed.data.grids import save_pair_grid
    from privmed.methods.dpwgan import DPWGAN
    from privmed.methods.release import release_from_run

    run_dir, samples_dir, grid_path = out / "run", out / "synthetic", out / "synthetic_grid.png"
    console.print(f"[bold]privmed demo[/bold]: DP-WGAN on {DEMO_DATA} at epsilon {DEMO_EPSILON:g} per patch -> {out}")
    model = DPWGAN(DEMO_EPSILON, seed=seed, run_dir=run_dir, data_ref=DEMO_DATA, **DEMO_OPTIONS)
    report = fit_with_progress(model, DEMO_DATA, label="DP-WGAN demo", losses=WGAN_LOSSES)
    data_path = release_from_run(run_dir, samples_dir, n=DEMO_SAMPLES, seed=seed).data_path
    synthetic = load(str(data_path))
    save_pair_grid(synthetic, grid_path, n=32, columns=8, scale=3)

    print_privacy_report(report, steps_name="critic steps")
    table = Table(title="demo outputs", show_header=False)
    table.add_column("what")
    table.add_column("where")
    table.add_row("run directory", str(run_dir))
    table.add_row("synthetic pairs", f"{data_path} ({len(synthetic)} pairs)")
    table.add_row("privacy report", str(samples_dir / "privacy.json"))
    table.add_row("sample grid", str(grid_path))
    console.print(table)
    console.print(
        f"epsilon spent: {report.epsilon:.3g} per {report.unit} (delta {report.delta:.2g}, {report.n_units} {report.unit} units)",
        highlight=False,
    )

    # Utility: the evaluation module's U-Net trained on synthetic vs real pairs, scored on held-out images.
    if utility:
        from privmed.evaluate.segmentation import segmentation_utility

        real = load(DEMO_DATA)
        test = load(DEMO_TEST)
        patch = DEMO_OPTIONS["patch_size"]
        with console.status("training U-Nets on synthetic and on real pairs"):
            on_synthetic = segmentation_utility(synthetic, test, DEMO_UTILITY_STEPS, patch, seed)
            on_real = segmentation_utility(real, test, DEMO_UTILITY_STEPS, patch, seed)
        console.print(
            f"utility on {DEMO_TEST}: Dice {on_synthetic['dice']:.3f} (U-Net trained on synthetic pairs) "
            f"vs {on_real['dice']:.3f} (trained on the real pairs)",
            highlight=False,
        )
