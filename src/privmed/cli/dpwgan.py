"""``privmed train dpwgan``: a DP-WGAN of image + label pairs (seed 000), with checkpoints and resume."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from privmed.cli._common import (
    DISTRIBUTED_HELP,
    SECURE_RNG_HELP,
    SECURE_RNG_TRAINING_COST,
    console,
    print_privacy_report,
    training_data_ref,
    training_progress,
)
from privmed.errors import PrivmedError

if TYPE_CHECKING:
    from privmed.methods.dpwgan import DPWGAN
    from privmed.privacy.report import PrivacyReport


class Unit(str, Enum):
    patch = "patch"
    image = "image"
    patient = "patient"


def train_dpwgan(model: DPWGAN, data_ref: str, *, resume: bool, label: str = "DP-WGAN", show_progress: bool = True) -> PrivacyReport:
    """Load ``data_ref`` and fit ``model`` behind a progress bar (if ``show_progress``); return its privacy report."""
    from privmed.data import load

    dataset = load(data_ref)
    with training_progress(label, {"critic_loss": "critic", "generator_loss": "generator"}, enabled=show_progress) as on_progress:
        model.on_progress = on_progress
        model.fit(dataset, resume=resume, data_ref=data_ref)
    return model.privacy_report()


def train(
    data: str | None = typer.Option(None, "--data", help="Image + label pairs: a dataset ref (PATH, PATH:SPLIT, phantom:train). Optional with --resume."),
    out: Path = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="Target epsilon for the whole run; 'inf' trains without DP (a reference). Required unless --resume."),
    delta: float | None = typer.Option(None, "--delta", help="Delta; default 1/(N+1) for N private units (it must be below 1/N)."),
    unit: Unit = typer.Option(Unit.patch, "--unit", help="What epsilon protects: one patch, every patch of an image, or every patch of a patient."),
    patch_size: int = typer.Option(64, "--patch-size", help="Patch side when the data holds whole images (32, 64, 96, 128, ...)."),
    patches_per_subject: int | None = typer.Option(
        None, "--patches-per-subject", min=1,
        help="Patches cut per subject, half centred on label pixels (default: seed 000's 1000, or as many distinct patches as every subject allows).",
    ),
    epochs: int = typer.Option(50, "--epochs", min=1, help="Epochs of 1/q critic steps each (q = batch size / private units)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Critic steps in total; replaces --epochs."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Expected private units per Poisson batch (sample rate q = this / units)."),
    base_channels: int = typer.Option(64, "--base-channels", min=1, help="Width of the generator and critic (features of the first level)."),
    seed: int = typer.Option(0, "--seed", help="Seed for networks, patches, batches, latents and noise."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint, with its options and accountant."),
    secure_rng: bool = typer.Option(False, "--secure-rng", help=SECURE_RNG_HELP.format(cost=SECURE_RNG_TRAINING_COST)),
    distributed: bool = typer.Option(False, "--distributed", help=DISTRIBUTED_HELP),
) -> None:
    """Train a DP-WGAN of image + label pairs: the critic learns with DP-SGD, the generator by post-processing.

    Seed 000's defaults: RMSprop lr 5e-5, 5 critic steps per generator step, batch 32, weight clipping 0.01,
    clipping bound 1, latent 128. Each critic step draws a fresh Poisson batch and is one accountant step; the
    noise is calibrated so the planned steps spend exactly --epsilon, and training stops there. The planned
    epsilon is reserved in the budget ledger before training and settled at the end.
    """
    from privmed.methods.dpwgan import DPWGAN
    from privmed.privacy.distributed import process_group

    data = training_data_ref(out, data, resume=resume, epsilon=epsilon)
    if resume:
        model = DPWGAN.from_run(out)
        if secure_rng and not model.secure_rng:
            raise PrivmedError(f"{out} was started without --secure-rng, and a resumed run keeps its options")
    else:
        model = DPWGAN(
            epsilon, delta=delta, unit=unit.value, patch_size=patch_size, patches_per_subject=patches_per_subject,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, generator_channels=base_channels,
            critic_channels=base_channels, seed=seed, secure_rng=secure_rng, run_dir=out,
        )
    with process_group(enabled=distributed) as group:
        report = train_dpwgan(model, data, resume=resume, show_progress=group.is_main)
        if not group.is_main:
            return
    if report.noise_multiplier is None:
        console.print(f"training done: {report.steps} critic steps without differential privacy (a reference, no guarantee)")
    else:
        console.print(f"training done: {report.steps} critic steps; the privacy budget of this run is spent")
    print_privacy_report(report, out, steps_name="critic steps")
