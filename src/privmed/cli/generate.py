"""``privmed generate``: draw synthetic records (DP-WGAN or fitted-simulator image + label pairs, AC-GAN class-conditional images) from a trained run, with its privacy report beside them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from privmed.cli._common import console


class OutputFormat(str, Enum):
    npz = "npz"
    png = "png"
    nifti = "nifti"


def generate(
    run_dir: Path = typer.Argument(..., help="A finished run directory from 'privmed train dpwgan', 'acgan' or 'vessel-sim'."),
    n: int = typer.Option(..., "--n", min=1, help="How many synthetic records to draw."),
    out: Path = typer.Option(..., "--out", help="Folder for the samples and a copy of the run's privacy.json."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (data.npz), png or nifti (a data/ folder)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the latent vectors (default: the run's seed)."),
    class_label: str | None = typer.Option(
        None, "--class", help="AC-GAN and DP-MERF runs: draw only this class (index or name); default: classes by the run's sampling frequencies."
    ),
) -> None:
    """Draw synthetic records from a trained generator (DP-WGAN pairs, AC-GAN or DP-MERF images).

    Sampling is post-processing of the private training, so the samples carry the run's guarantee,
    however many are drawn; privacy.json is copied next to them to say so.
    """
    from privmed.methods.release import release_from_run
    from privmed.privacy.report import PrivacyReport

    path = release_from_run(run_dir, out, n=n, seed=seed, output_format=output_format.value, class_label=class_label).data_path
    report = PrivacyReport.from_json(out / "privacy.json")
    console.print(f"wrote {n} synthetic records to {path} (load it with: privmed data info {path})")
    console.print(f"guarantee: {report.summary_line()} (privacy.json beside the data)", highlight=False)
