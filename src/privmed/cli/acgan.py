"""``privmed train acgan`` and ``privmed morph``: the class-conditional AC-GAN of seed 001, with DP-SGD."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from privmed.cli._common import (
    DISTRIBUTED_HELP,
    REPRODUCIBLE_HELP,
    console,
    fit_with_progress,
    model_for_run,
    print_training_done,
    training_data_ref,
)
from privmed.errors import PrivmedError


class Unit(str, Enum):
    image = "image"
    patient = "patient"


def train(
    data: str | None = typer.Option(None, "--data", help="Labelled images: a dataset ref (PATH, PATH:SPLIT, phantom-classes:train). Optional with --resume."),
    out: Path = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="Target epsilon for the whole run; 'inf' trains without DP (a reference). Required unless --resume."),
    delta: float | None = typer.Option(None, "--delta", help="Delta; default min(1e-5, 1/(10N)) for N private units (it must be below 1/N; above 1/(10N) is flagged)."),
    unit: Unit = typer.Option(Unit.image, "--unit", help="What epsilon protects: one image, or every image of a patient."),
    epochs: int = typer.Option(50, "--epochs", min=1, help="Epochs of 1/q discriminator steps each (q = batch size / private units)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Discriminator steps in total; replaces --epochs."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Expected private units per Poisson batch (sample rate q = this / units)."),
    learning_rate: float = typer.Option(1e-4, "--learning-rate", help="Adam learning rate of both networks (seed 001: 1e-4)."),
    base_channels: int = typer.Option(64, "--base-channels", min=1, help="Network width (seed 001: 64, i.e. 512 features at 4x4)."),
    discriminator_steps: int = typer.Option(
        1, "--discriminator-steps", min=1, help="Discriminator (DP) steps per generator step (seed 001: 1; Bie et al. 2023: many under DP)."
    ),
    generator_ema: float | None = typer.Option(
        None, "--generator-ema", help="Sample from a moving average of the generator's weights with this decay in [0, 1) (Bie et al. 2023; default: off, as seed 001)."
    ),
    clip_generated: bool = typer.Option(
        False, "--clip-generated", help="Clip each generated row's discriminator gradient like a real unit's (no noise; default off, as seed 001)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for networks, latents and classes (public; the DP noise and batches stay secret unless --reproducible)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint, with its options and accountant."),
    reproducible: bool = typer.Option(False, "--reproducible", help=REPRODUCIBLE_HELP.format(batches=" and the Poisson batches")),
    distributed: bool = typer.Option(False, "--distributed", help=DISTRIBUTED_HELP),
) -> None:
    """Train a class-conditional AC-GAN: the discriminator learns with DP-SGD, the generator by post-processing.

    Seed 001's settings: latent 100 + one-hot class, five transposed convolutions; discriminator of five
    convolutions with a real/fake and a class head (GroupNorm, never BatchNorm); Adam lr 1e-4; class-loss
    weight 1. A real row's loss (real/fake + class) is clipped per unit and noised; each step draws a fresh
    Poisson batch and is one accountant step, calibrated so the planned steps spend exactly --epsilon.
    Bie et al.'s recipe for DP GANs, both departures from seed 001: --discriminator-steps K (a generator step
    every K discriminator steps) and --generator-ema DECAY (samples from the generator's moving average);
    --clip-generated bounds each generated row's gradient like a real unit's.
    """
    from privmed.methods.acgan import ACGAN

    data = training_data_ref(out, data, resume=resume, epsilon=epsilon)
    model = model_for_run(
        ACGAN, out, resume=resume, reproducible=reproducible,
        create=lambda: ACGAN(
            epsilon, delta=delta, unit=unit.value, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
            learning_rate=learning_rate, generator_channels=base_channels, discriminator_channels=base_channels,
            discriminator_steps=discriminator_steps, generator_ema=generator_ema, clip_generated=clip_generated, seed=seed, reproducible=reproducible, run_dir=out, data_ref=data,
        ),
    )
    losses = {"discriminator_loss": "discriminator", "generator_loss": "generator"}
    report = fit_with_progress(model, data, label="AC-GAN", losses=losses, distributed=distributed)
    if report is not None:
        print_training_done(report, out, "discriminator steps")


def morph(
    run_dir: Path = typer.Argument(..., help="A finished run directory from 'privmed train acgan'."),
    from_class: str = typer.Option(..., "--from", help="Class to start from (index or name)."),
    to_class: str = typer.Option(..., "--to", help="Class to end at (index or name)."),
    steps: int = typer.Option(8, "--steps", min=2, help="Images per row, both end classes included."),
    rows: int = typer.Option(4, "--rows", min=1, help="Rows: one fixed latent vector each."),
    out: Path = typer.Option(..., "--out", help="PNG file for the grid."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the latent vectors (default: the run's seed)."),
) -> None:
    """Morph generated images from one class to another by mixing the one-hot condition at fixed latents.

    Seed 001 (figure 2B) keeps the latent vector and interpolates the condition; each row here is one
    latent, each column one mixture. The grid is post-processing of the trained generator: it carries the
    run's guarantee.
    """
    from privmed.data.grids import save_pair_grid
    from privmed.methods.acgan import ACGAN

    if out.suffix.lower() != ".png":
        raise PrivmedError(f"--out must be a .png file, got {out}")
    model = ACGAN.load(run_dir)
    grid = model.morph(from_class, to_class, steps=steps, n_latents=rows, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_pair_grid(grid, out, n=len(grid), columns=steps, scale=2)
    console.print(f"wrote a {rows} x {steps} morph grid to {out}")
    console.print(f"guarantee: {model.privacy_report().summary_line()}", highlight=False)
