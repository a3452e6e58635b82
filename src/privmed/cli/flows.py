"""``privmed train flow`` and ``privmed privatize cadp | dpglow | pixel-ldp``: flows and local DP per image."""

from __future__ import annotations

import uuid
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import SECURE_RNG_HELP, SECURE_RNG_RELEASE_COST, console, err_console
from privmed.errors import DataError, PrivmedError

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset
    from privmed.methods.flow_training import TrainedFlow
    from privmed.methods.local_dp import LaplacePrivatizer
    from privmed.privacy.distributed import ReplicaGroup

FLOW_NOT_PRIVATE = (
    "flow training is not differentially private: train the flow on public data, or on data whose use is "
    "otherwise authorized, never on the images you will privatize"
)


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
    from privmed.methods.flow_training import FlowTrainer
    from privmed.models.flows import ConditionalINN, Glow, build_flow
    from privmed.privacy.ledger import dataset_key
    from privmed.runs import RunDirectory

    dataset = load(data)
    if len(dataset.spatial_shape) != 2:
        raise DataError(f"{data}: flows take 2D images, got spatial shape {dataset.spatial_shape}")
    run = RunDirectory(out)
    if resume:
        config = run.read_config()
        flow = build_flow(config["flow"])
        config["epochs"] = epochs
    else:
        image_shape = (dataset.n_channels, *dataset.spatial_shape)
        if conditional:
            if dataset.labels is None:
                raise DataError(f"{data}: --conditional needs class labels, and this data has none")
            flow = ConditionalINN(image_shape, dataset.n_classes, levels, depth, hidden, coupling.value, seed)
        else:
            flow = Glow(image_shape, levels, depth, hidden, coupling.value, 0, seed)
        config = {
            "command": "privmed train flow",
            "data": data,
            "flow": flow.config,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
        }
    group.main_first(lambda: run.create(config, resume=resume))
    if group.is_main:
        err_console.print(f"[yellow]note:[/yellow] {FLOW_NOT_PRIVATE}", highlight=False)
    trainer = FlowTrainer(flow, epochs=config["epochs"], batch_size=config["batch_size"], learning_rate=config["learning_rate"], seed=config["seed"])
    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bits/dim {task.fields[bpd]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not group.is_main,
    ) as progress:
        task = progress.add_task("train", total=None, epoch=1, epochs=config["epochs"], bpd="-")

        def on_batch(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            progress.update(task, epoch=min(epoch + 1, config["epochs"]), bpd=f"{row['train_bits_per_dim']:.3f}", completed=0)
            progress.console.print(f"epoch {epoch}: {row['train_bits_per_dim']:.4f} bits/dim")

        trainer.fit(dataset, run=run, resume=resume, data_key=dataset_key(dataset), on_epoch=on_epoch, on_batch=on_batch)
    if not group.is_main:
        return
    grid = trainer.save_samples(run.samples_dir / "samples.png")
    console.print(f"flow saved in {run.path} (checkpoints/latest.pt); samples in {grid}")


def _release(
    method: LaplacePrivatizer, dataset: ImageDataset, out: Path, output_format: OutputFormat, seed: int | None, trained: TrainedFlow | None,
    description: str, labels: tuple[bool, float | None] = (False, None), data_ref: str | None = None, flow_trained_on_private: bool = False,
) -> None:
    """Reserve the budget, privatize, write data and privacy.json, settle, print the guarantee."""
    from privmed.methods.flow_training import flow_trained_on
    from privmed.methods.local_dp import release

    privacy_path = out / "privacy.json"
    if privacy_path.exists():
        raise PrivmedError(f"{out} already holds a release (privacy.json): choose another --out")
    method.set_labels(public_labels=labels[0], label_epsilon=labels[1])
    method.check_data(dataset)
    saw = trained is not None and flow_trained_on(trained, dataset, data_ref)
    if saw and flow_trained_on_private:
        err_console.print(
            f"[bold red]no guarantee:[/bold red] the flow was trained on this very data ({dataset.name}); {FLOW_NOT_PRIVATE}",
            highlight=False,
        )
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"data.{output_format.value}" if output_format is OutputFormat.npz else out / "images"
    with console.status(f"privatizing {len(dataset)} images with {method.method_name}"):
        _, report, data_path = release(
            method, dataset, target, privacy_path, release_id=f"{method.method_name}-{uuid.uuid4().hex[:12]}",
            description=description, output_format=output_format.value, seed=seed,
            flow_saw_the_data=saw, flow_trained_on_private=flow_trained_on_private,
        )
    _print_report(report.to_dict(), data_path, privacy_path)


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


def _secure(secure_rng: bool, seed: int | None) -> bool:
    """``--secure-rng``, refused with ``--seed`` before anything is loaded or reserved (secure noise has no seed)."""
    if secure_rng and seed is not None:
        raise PrivmedError("--secure-rng noise cannot be seeded: drop --seed")
    return secure_rng


def _load_flow(flow_dir: Path) -> TrainedFlow:
    from privmed.methods.flow_training import load_trained_flow

    return load_trained_flow(flow_dir)


def cadp(
    flow_dir: Path = typer.Argument(..., help="A flow directory from 'privmed train flow' (use --conditional for CADP proper)."),
    data: str = typer.Option(..., "--data", help="The images to privatize (a dataset ref)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon per image (pure DP)."),
    clip: float = typer.Option(..., "--clip", help="L1 radius S each image's latent is clipped to (seed 002: min(epsilon/2, 4))."),
    out: Path = typer.Option(..., "--out", help="Folder for the privatized data and privacy.json."),
    paper_scale: bool = typer.Option(False, "--paper-scale", help="Use seed 002's noise S/epsilon; the report then states the true epsilon, twice the nominal."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (one file) or png (one file per image)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed the noise (tests only: a known seed makes the noise predictable)."),
    secure_rng: bool = typer.Option(False, "--secure-rng", help=SECURE_RNG_HELP.format(cost=SECURE_RNG_RELEASE_COST)),
    public_labels: bool = typer.Option(False, "--public-labels", help=PUBLIC_LABELS_HELP),
    label_epsilon: float | None = typer.Option(None, "--label-epsilon", help=LABEL_EPSILON_HELP),
    flow_trained_on_private: bool = typer.Option(False, "--flow-trained-on-private", help=FLOW_ON_PRIVATE_HELP),
) -> None:
    """Privatize images with CADP (seed 002): clip each latent to an L1 ball, add Laplace noise, decode.

    Noise scale 2S/epsilon gives epsilon-DP per image (two clipped latents differ by up to 2S in L1). A conditional flow decodes with each image's released class label, so it needs --public-labels or --label-epsilon. Writes OUT/data.npz (or OUT/images/) and OUT/privacy.json and records the release in the budget ledger.
    """
    from privmed.data import load
    from privmed.methods.cadp import CADP

    trained = _load_flow(flow_dir)
    dataset = load(data)
    method = CADP(trained.flow, epsilon, clip, paper_scale=paper_scale, secure_rng=_secure(secure_rng, seed))
    _release(method, dataset, out, output_format, seed, trained, f"CADP epsilon={epsilon:g} clip={clip:g} flow={flow_dir}",
             (public_labels, label_epsilon), data, flow_trained_on_private)


def dpglow(
    flow_dir: Path = typer.Argument(..., help="A flow directory from 'privmed train flow'; its training latents set the box."),
    data: str = typer.Option(..., "--data", help="The images to privatize (a dataset ref)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon per image (pure DP); seed 003 quotes epsilon/(H*W) per pixel."),
    alpha: float = typer.Option(0.4, "--alpha", help="Box width as a fraction of the training latents' range per dimension (seed 003: 0.4)."),
    out: Path = typer.Option(..., "--out", help="Folder for the privatized data and privacy.json."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (one file) or png (one file per image)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed the noise (tests only: a known seed makes the noise predictable)."),
    secure_rng: bool = typer.Option(False, "--secure-rng", help=SECURE_RNG_HELP.format(cost=SECURE_RNG_RELEASE_COST)),
    public_labels: bool = typer.Option(False, "--public-labels", help=PUBLIC_LABELS_HELP),
    label_epsilon: float | None = typer.Option(None, "--label-epsilon", help=LABEL_EPSILON_HELP),
    flow_trained_on_private: bool = typer.Option(False, "--flow-trained-on-private", help=FLOW_ON_PRIVATE_HELP),
) -> None:
    """Privatize images with DP-GLOW (seed 003): clip each latent to a per-dimension box, add Laplace noise, clip, decode.

    The L1 sensitivity is the sum of the box widths, so the noise scale is sum(w)/epsilon for epsilon-DP per image. The report sets this beside seed 003's per-pixel convention and what its own noise calibration really gives. Writes OUT/data.npz (or OUT/images/) and OUT/privacy.json and records the release in the budget ledger.
    """
    from privmed.data import load
    from privmed.methods.dpglow import DPGLOW

    trained = _load_flow(flow_dir)
    if trained.latent_min is None or trained.latent_max is None:
        raise PrivmedError(f"{flow_dir}: the flow has no training latent range (train it to the last epoch first)")
    dataset = load(data)
    method = DPGLOW(trained.flow, epsilon, alpha, secure_rng=_secure(secure_rng, seed)).fit_range(trained.latent_min, trained.latent_max)
    _release(method, dataset, out, output_format, seed, trained, f"DP-GLOW epsilon={epsilon:g} alpha={alpha:g} flow={flow_dir}",
             (public_labels, label_epsilon), data, flow_trained_on_private)


def pixel_ldp(
    data: str = typer.Option(..., "--data", help="The images to privatize (a dataset ref)."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon per image (pure DP); the noise scale is (values per image)/epsilon."),
    out: Path = typer.Option(..., "--out", help="Folder for the privatized data and privacy.json."),
    output_format: OutputFormat = typer.Option(OutputFormat.npz, "--format", help="npz (one file) or png (one file per image)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed the noise (tests only: a known seed makes the noise predictable)."),
    secure_rng: bool = typer.Option(False, "--secure-rng", help=SECURE_RNG_HELP.format(cost=SECURE_RNG_RELEASE_COST)),
    public_labels: bool = typer.Option(False, "--public-labels", help=PUBLIC_LABELS_HELP),
    label_epsilon: float | None = typer.Option(None, "--label-epsilon", help=LABEL_EPSILON_HELP),
) -> None:
    """Privatize images with Laplace noise on every pixel (seed 003's image-domain baseline).

    Pixels lie in [0, 1], so the L1 sensitivity is the number of values per image and the noise scale is that number over epsilon. Writes OUT/data.npz (or OUT/images/) and OUT/privacy.json and records the release in the budget ledger.
    """
    from privmed.data import load
    from privmed.methods.pixel_ldp import PixelLDP

    dataset = load(data)
    method = PixelLDP(epsilon, secure_rng=_secure(secure_rng, seed)).fit(dataset)
    _release(method, dataset, out, output_format, seed, None, f"pixel LDP epsilon={epsilon:g}", (public_labels, label_epsilon), data)
