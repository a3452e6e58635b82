"""``privmed train flow`` and ``privmed privatize cadp | dpglow | pixel-ldp``: flows and local DP per image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import REPRODUCIBLE_HELP, console, err_console
from privmed.errors import PrivmedError

if TYPE_CHECKING:
    from privmed.methods.local_dp import LaplacePrivatizer
    from privmed.privacy.distributed import ReplicaGroup



PUBLIC_LABELS_HELP = (
    "Write each image's class label in the clear. Labels are dropped by default: with this flag they are published unprotected, "
    "and privacy.json and the report name them as public data."
)
LABEL_EPSILON_HELP = "Release class labels privatized by randomized response at this epsilon per image (added to the image's epsilon)."
FLOW_ON_PRIVATE_HELP = (
    "Allow a flow trained on the very data being privatized. Such a release carries NO guarantee (epsilon = inf in privacy.json): "
    "flow training is not private. Without this flag it is refused."
)


class Coupling(str, Enum):
    glow = "glow"
    gin = "gin"


class OutputFormat(str, Enum):
    npz = "npz"
    png = "png"


def train(
    data: str = typer.Option(..., "--data", help="Training images (a dataset ref: PATH, PATH:SPLIT, phantom-classes:train). Use public data: this training is not DP."),
    out: Path = typer.Option(..., "--out", help="Flow directory to create (config.json, metrics.csv, checkpoints/latest.pt, samples/)."),
    conditional: bool = typer.Option(False, "--conditional", help="Condition every coupling on the class label (a cINN, as CADP uses); needs labelled data."),
    coupling: Coupling = typer.Option(Coupling.glow, "--coupling", help="glow: ActNorm, LU 1x1 conv, affine coupling; gin: permutation and volume-preserving coupling."),
    levels: int = typer.Option(2, "--levels", min=1, help="Multi-scale levels; height and width must be divisible by 2**levels."),
    depth: int = typer.Option(4, "--depth", min=1, help="Flow steps per level."),
    hidden: int = typer.Option(32, "--hidden", min=1, help="Channels of each coupling network."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs (with --resume: the total to reach)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Mini-batch size."),
    learning_rate: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialization, shuffling and dequantization noise."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint (its saved architecture and settings are used; --epochs may extend it)."),
    distributed: bool = typer.Option(
        False, "--distributed",
        help="Train data-parallel over the processes torchrun starts: torchrun --standalone --nproc_per_node 2 $(which privmed) train flow "
        "--distributed ... (gloo on CPU). Every process draws the same shuffled batch and keeps its share; gradients are summed, so "
        "each step equals the one-process step. Process 0 alone writes --out; all read it on --resume.",
    ),
) -> None:
    """Train an invertible flow (multi-scale Glow or conditional INN) by maximum likelihood.

    Reports bits/dim per epoch (metrics.csv), writes atomic checkpoints and a grid of samples, and keeps the per-dimension range of the training latents for DP-GLOW. Not private: train the flow on public data; CADP and DP-GLOW then protect the images they privatize, not this training set.
    """
    from privmed.privacy.distributed import process_group

    with process_group(enabled=distributed) as group:
        _train_flow(data, out, conditional, coupling, levels, depth, hidden, epochs, batch_size, learning_rate, seed, resume, group)


def _train_flow(
    data: str, out: Path, conditional: bool, coupling: Coupling, levels: int, depth: int, hidden: int, epochs: int,
    batch_size: int, learning_rate: float, seed: int, resume: bool, group: ReplicaGroup,
) -> None:
    """Train a flow (one process, or one rank of a data-parallel ``group``: rank 0 writes and prints)."""
    from privmed.data import load
    from privmed.methods.flow_training import FLOW_NOT_PRIVATE, flow_run
    from privmed.runs import RunDirectory

    dataset = load(data)
    trainer = flow_run(
        dataset, out, data_ref=data, conditional=conditional, coupling=coupling.value, levels=levels, depth=depth, hidden=hidden,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed, resume=resume,
    )
    if group.is_main:
        err_console.print(f"[yellow]note:[/yellow] {FLOW_NOT_PRIVATE}", highlight=False)
    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bits/dim {task.fields[bpd]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not group.is_main,
    ) as progress:
        task = progress.add_task("train", total=None, epoch=1, epochs=trainer.epochs, bpd="-")

        def on_batch(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            progress.update(task, epoch=min(epoch + 1, trainer.epochs), bpd=f"{row['train_bits_per_dim']:.3f}", completed=0)
            progress.console.print(f"epoch {epoch}: {row['train_bits_per_dim']:.4f} bits/dim")

        trainer.on_epoch, trainer.on_batch = on_epoch, on_batch
        trainer.fit(dataset)
    if not group.is_main:
        return
    grid = trainer.save_samples(RunDirectory(out).samples_dir / "samples.png")
    console.print(f"flow saved in {out} (checkpoints/latest.pt); samples in {grid}")


def _release(
    method: LaplacePrivatizer, data: str, out: Path, output_format: OutputFormat, seed: int | None, flow_dir: Path | None,
    description: str, labels: tuple[bool, float | None] = (False, None), flow_trained_on_private: bool = False,
) -> None:
    """Privatize ``data`` into ``out`` through the one booked release path (a flow trained on that data is refused
    unless ``flow_trained_on_private``, and the release then states no guarantee)."""
    from privmed.data import load
    from privmed.methods.flow_training import FLOW_NOT_PRIVATE, flow_trained_on, load_trained_flow
    from privmed.methods.release import release

    if (out / "privacy.json").exists():
        raise PrivmedError(f"{out} already holds a release (privacy.json): choose another --out")
    dataset = load(data)
    method.set_labels(public_labels=labels[0], label_epsilon=labels[1])
    method.check_data(dataset)
    saw = flow_dir is not None and flow_trained_on(load_trained_flow(flow_dir), dataset, data)
    if saw and flow_trained_on_private:
        err_console.print(
            f"[bold red]no guarantee:[/bold red] the flow was trained on this very data ({dataset.name}); {FLOW_NOT_PRIVATE}",
            highlight=False,
        )
    target = out / f"data.{output_format.value}" if output_format is OutputFormat.npz else out / "images"
    with console.status(f"privatizing {len(dataset)} images with {method.method_name}"):
        done = release(
            method, out, data=dataset, data_path=target, description=description, output_format=output_format.value, seed=seed,
            flow_saw_the_data=saw, flow_trained_on_private=flow_trained_on_private,
        )
    _print_report(done.report.to_dict(), done.data_path, done.privacy_path)


def _print_report(report: dict[str, Any], data_path: Path, privacy_path: Path) -> None:
    table = Table(title="release guarantee", show_header=False)
    table.add_column("field")
    table.add_column("value")
    epsilon = "inf: NO GUARANTEE" if report["epsilon"] == "inf" else f"{report['epsilon']:.6g} per {report['unit']} (pure DP, delta 0)"
    table.add_row("epsilon", epsilon)
    table.add_row("mechanism", f"{report['mechanism']}, scale {report['laplace_scale']:.6g}, L1 sensitivity {report['sensitivity']:.6g}")
    table.add_row("records", str(report["n_units"]))
    console.print(table)
    for item in report.get("public_data", []):
        console.print(f"[bold yellow]public, unprotected:[/bold yellow] {item}", highlight=False)
    for note in report["notes"]:
        console.print(f"[yellow]-[/yellow] {note}", highlight=False)
    console.print(f"wrote {data_path} and {privacy_path}")


def _noise_seed(reproducible: bool, seed: int | None) -> int | None:
    """The seed of the noise: None (secret noise, the default), or with ``--reproducible`` ``--seed`` (0 by default).

    ``--seed`` alone is refused before anything is loaded or reserved: it would make the noise predictable.
    """
    if seed is not None and not reproducible:
        raise PrivmedError("--seed makes the noise reproducible from it: add --reproducible (a research run, no guarantee against anyone who knows the seed)")
    return (seed or 0) if reproducible else None


def cadp(
    flow_dir: Path = typer.Argument(..., help="A flow directory from 'privmed train flow' (use --conditional for CADP proper)."),
    data: str = typer.Option(..., "--data", help="The images to privatize (a dataset ref)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon per image (pure DP)."),
    clip: float = typer.Option(..., "--clip", help="L1 radius S each image's latent is clipped to (seed 002: min(epsilon/2, 4))."),
    out: Path = typer.Option(..., "--out", help="Folder for the privatized data and privacy.json."),
    paper_scale: bool = typer.Option(False, "--paper-scale", help="Use seed 002's noise S/epsilon; the report then states the true epsilon, twice the nominal."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (one file) or png (one file per image)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the noise, with --reproducible only (default 0)."),
    reproducible: bool = typer.Option(False, "--reproducible", help=REPRODUCIBLE_HELP.format(batches="")),
    public_labels: bool = typer.Option(False, "--public-labels", help=PUBLIC_LABELS_HELP),
    label_epsilon: float | None = typer.Option(None, "--label-epsilon", help=LABEL_EPSILON_HELP),
    flow_trained_on_private: bool = typer.Option(False, "--flow-trained-on-private", help=FLOW_ON_PRIVATE_HELP),
) -> None:
    """Privatize images with CADP (seed 002): clip each latent to an L1 ball, add Laplace noise, decode.

    Noise scale 2S/epsilon gives epsilon-DP per image (two clipped latents differ by up to 2S in L1). A conditional flow decodes with each image's released class label, so it needs --public-labels or --label-epsilon. Writes OUT/data.npz (or OUT/images/) and OUT/privacy.json and records the release in the budget ledger.
    """
    from privmed.methods.cadp import CADP

    method = CADP.from_flow_dir(epsilon, flow_dir, clip, paper_scale, reproducible=reproducible)
    _release(method, data, out, output_format, _noise_seed(reproducible, seed), flow_dir, f"CADP epsilon={epsilon:g} clip={clip:g} flow={flow_dir}",
             (public_labels, label_epsilon), flow_trained_on_private)


def dpglow(
    flow_dir: Path = typer.Argument(..., help="A flow directory from 'privmed train flow'; its training latents set the box."),
    data: str = typer.Option(..., "--data", help="The images to privatize (a dataset ref)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon per image (pure DP); seed 003 quotes epsilon/(H*W) per pixel."),
    alpha: float = typer.Option(0.4, "--alpha", help="Box width as a fraction of the training latents' range per dimension (seed 003: 0.4)."),
    out: Path = typer.Option(..., "--out", help="Folder for the privatized data and privacy.json."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (one file) or png (one file per image)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the noise, with --reproducible only (default 0)."),
    reproducible: bool = typer.Option(False, "--reproducible", help=REPRODUCIBLE_HELP.format(batches="")),
    public_labels: bool = typer.Option(False, "--public-labels", help=PUBLIC_LABELS_HELP),
    label_epsilon: float | None = typer.Option(None, "--label-epsilon", help=LABEL_EPSILON_HELP),
    flow_trained_on_private: bool = typer.Option(False, "--flow-trained-on-private", help=FLOW_ON_PRIVATE_HELP),
) -> None:
    """Privatize images with DP-GLOW (seed 003): clip each latent to a per-dimension box, add Laplace noise, clip, decode.

    The L1 sensitivity is the sum of the box widths, so the noise scale is sum(w)/epsilon for epsilon-DP per image. The report sets this beside seed 003's per-pixel convention and what its own noise calibration really gives. Writes OUT/data.npz (or OUT/images/) and OUT/privacy.json and records the release in the budget ledger.
    """
    from privmed.methods.dpglow import DPGLOW

    method = DPGLOW.from_flow_dir(epsilon, flow_dir, alpha, reproducible=reproducible)
    _release(method, data, out, output_format, _noise_seed(reproducible, seed), flow_dir, f"DP-GLOW epsilon={epsilon:g} alpha={alpha:g} flow={flow_dir}",
             (public_labels, label_epsilon), flow_trained_on_private)


def pixel_ldp(
    data: str = typer.Option(..., "--data", help="The images to privatize (a dataset ref)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon per image (pure DP); the noise scale is (values per image)/epsilon."),
    out: Path = typer.Option(..., "--out", help="Folder for the privatized data and privacy.json."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (one file) or png (one file per image)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the noise, with --reproducible only (default 0)."),
    reproducible: bool = typer.Option(False, "--reproducible", help=REPRODUCIBLE_HELP.format(batches="")),
    public_labels: bool = typer.Option(False, "--public-labels", help=PUBLIC_LABELS_HELP),
    label_epsilon: float | None = typer.Option(None, "--label-epsilon", help=LABEL_EPSILON_HELP),
) -> None:
    """Privatize images with Laplace noise on every pixel (seed 003's image-domain baseline).

    Pixels lie in [0, 1], so the L1 sensitivity is the number of values per image and the noise scale is that number over epsilon. Writes OUT/data.npz (or OUT/images/) and OUT/privacy.json and records the release in the budget ledger.
    """
    from privmed.methods.pixel_ldp import PixelLDP

    method = PixelLDP(epsilon, reproducible=reproducible)
    _release(method, data, out, output_format, _noise_seed(reproducible, seed), None, f"pixel LDP epsilon={epsilon:g}", (public_labels, label_epsilon))
