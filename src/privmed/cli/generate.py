"""``privmed generate``: draw synthetic records (DP-WGAN image + label pairs, AC-GAN and DP-MERF class-conditional images) from a trained run, with its privacy report beside them."""

from __future__ import annotations

import shutil
from enum import Enum
from pathlib import Path

import typer

from privmed.cli._common import console
from privmed.errors import PrivmedError

DATA_NAME = "data"


class OutputFormat(str, Enum):
    npz = "npz"
    png = "png"
    nifti = "nifti"


def output_path(out: Path, output_format: OutputFormat | str) -> Path:
    """Where ``generate`` writes the data inside ``out``: data.npz, or a data/ folder for png and nifti."""
    output_format = OutputFormat(output_format)
    return out / (f"{DATA_NAME}.npz" if output_format is OutputFormat.npz else DATA_NAME)


def write_samples(
    run_dir: Path, n: int, out: Path, output_format: OutputFormat | str = "npz", seed: int | None = None, class_label: str | None = None
) -> Path:
    """Sample ``n`` records from the run, save them under ``out`` and copy the run's privacy.json there.

    The run's method is read from its config.json; ``class_label`` (index or name) is for class-conditional runs.
    """
    from privmed.data import save
    from privmed.methods.acgan import ACGAN
    from privmed.methods.dpwgan import DPWGAN
    from privmed.runs import RunDirectory

    if (out / "privacy.json").exists():
        raise PrivmedError(f"{out} already holds a release (privacy.json): choose another --out")
    method = RunDirectory(run_dir).read_config().get("method")
    if method == "acgan":
        samples = ACGAN.load(run_dir).sample(n, seed=seed, class_label=class_label)
    elif method == "dpmerf":
        from privmed.methods.dpmerf import DPMERF

        samples = DPMERF.load(run_dir).sample(n, seed=seed, class_label=class_label)
    elif class_label is not None:
        raise PrivmedError(f"{run_dir} is a {method!r} run: --class needs a class-conditional run (privmed train acgan or dpmerf)")
    else:
        samples = DPWGAN.load(run_dir).sample(n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    path = save(samples, output_path(out, output_format), format=OutputFormat(output_format).value)
    shutil.copyfile(RunDirectory(run_dir).privacy_path, out / "privacy.json")
    return Path(path)


def generate(
    run_dir: Path = typer.Argument(..., help="A finished run directory from 'privmed train dpwgan', 'acgan' or 'dpmerf'."),
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
    from privmed.privacy.report import PrivacyReport

    path = write_samples(run_dir, n, out, output_format, seed, class_label)
    report = PrivacyReport.from_json(out / "privacy.json")
    console.print(f"wrote {n} synthetic records to {path} (load it with: privmed data info {path})")
    console.print(f"guarantee: {report.summary_line()} (privacy.json beside the data)", highlight=False)
