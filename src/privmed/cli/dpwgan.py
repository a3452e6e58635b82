"""``privmed train dpwgan``: a DP-WGAN of image + label pairs (seed 000), with checkpoints and resume."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from privmed.cli._common import (
    DISTRIBUTED_HELP,
    REPRODUCIBLE_HELP,
    fit_with_progress,
    model_for_run,
    print_training_done,
    training_data_ref,
)


class Unit(str, Enum):
    patch = "patch"
    image = "image"
    patient = "patient"


# Metric keys of the DP-WGAN task -> progress-bar columns (also the demo's).
WGAN_LOSSES = {"critic_loss": "critic", "generator_loss": "generator"}


def train(
    data: str | None = typer.Option(None, "--data", help="Image + label pairs: a dataset ref (PATH, PATH:SPLIT, phantom:train). Optional with --resume."),
    out: Path = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="Target epsilon for the whole run; 'inf' trains without DP (a reference). Required unless --resume."),
    delta: float | None = typer.Option(None, "--delta", help="Delta; default min(1e-5, 1/(10N)) for N private units (it must be below 1/N; above 1/(10N) is flagged)."),
    unit: Unit = typer.Option(Unit.patch, "--unit", help="What epsilon protects: one patch, every patch of an image, or every patch of a patient."),
    patch_size: int = typer.Option(64, "--patch-size", help="Patch side when the data holds whole images (32, 64, 96, 128, ...)."),
    patches_per_subject: int = typer.Option(
        1000, "--patches-per-subject", min=1,
        help="Patches cut per subject, half centred on label pixels (seed 000's 1000). A public, fixed count: a subject with fewer distinct patches has them drawn with replacement.",
    ),
    epochs: int = typer.Option(50, "--epochs", min=1, help="Epochs of 1/q critic steps each (q = batch size / private units)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Critic steps in total; replaces --epochs."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Expected private units per Poisson batch (sample rate q = this / units)."),
    base_channels: int = typer.Option(64, "--base-channels", min=1, help="Width of the generator and critic (features of the first level)."),
    seed: int = typer.Option(0, "--seed", help="Seed for networks, patches, latents and samples (public; the DP noise and batches stay secret unless --reproducible)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint, with its options and accountant."),
    reproducible: bool = typer.Option(False, "--reproducible", help=REPRODUCIBLE_HELP.format(batches=" and the Poisson batches")),
    distributed: bool = typer.Option(False, "--distributed", help=DISTRIBUTED_HELP),
    public_steps: int = typer.Option(
        0, "--public-steps", min=0, help="Warm start: critic steps of non-private pre-training on --public-data before the DP phase (0: none)."
    ),
    public_data: str | None = typer.Option(
        None, "--public-data", help="Public image + label pairs for the warm start (default: the vessel simulator at the private images' size)."
    ),
) -> None:
    """Train a DP-WGAN of image + label pairs: the critic learns with DP-SGD, the generator by post-processing.

    Seed 000's defaults: RMSprop lr 5e-5, 5 critic steps per generator step, batch 32, weight clipping 0.01,
    clipping bound 1, latent 128. Each critic step draws a fresh Poisson batch and is one accountant step; the
    noise is calibrated so the planned steps spend exactly --epsilon, and training stops there. The planned
    epsilon is reserved in the budget ledger before training and settled at the end.
    """
    from privmed.methods.dpwgan import DPWGAN

    data = training_data_ref(out, data, resume=resume, epsilon=epsilon)
    model = model_for_run(
        DPWGAN, out, resume=resume, reproducible=reproducible,
        create=lambda: DPWGAN(
            epsilon, delta=delta, unit=unit.value, patch_size=patch_size, patches_per_subject=patches_per_subject,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, generator_channels=base_channels,
            critic_channels=base_channels, seed=seed, reproducible=reproducible, public_steps=public_steps, run_dir=out, data_ref=data,
        ),
    )
    public = None
    if model.public_steps and public_data is not None:
        from privmed.data import load

        public = load(public_data)
    report = fit_with_progress(
        model, data, label="DP-WGAN", losses=WGAN_LOSSES, distributed=distributed,
        public_data=public, public_ref=(public_data or "vessel-sim") if model.public_steps else None,
    )
    if report is not None:
        print_training_done(report, out, "critic steps")
