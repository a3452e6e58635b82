"""``privmed evaluate segmentation | fidelity | table``: seed 000's evaluation of image + label releases."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from privmed.cli._common import console, err_console, print_json
from privmed.errors import PrivmedError


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=err_console, transient=True,
    )  # fmt: skip


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _checked_device(device: str) -> str:
    """``device`` if torch can use it here, else a clear error (before any data is read)."""
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        raise typer.BadParameter(f"device {device!r} is not usable here: {error}", param_hint="--device") from error
    return device


def segmentation(
    train: str = typer.Option(..., "--train", help="Image + label pairs to train on: a release (synthetic) or real data, as a dataset ref."),
    test: list[str] = typer.Option(..., "--test", help="Real labelled test set (dataset ref); repeat for several test sets."),
    out: Path = typer.Option(..., "--out", help="Folder for segmentation.json, per_image.csv, overlays/ and the U-Net weights."),
    steps: int = typer.Option(8000, "--steps", min=1, help="Training steps (batches of 16 patches); the same for every training set compared."),
    patch_size: int = typer.Option(96, "--patch-size", min=16, help="Square training patch side in pixels (smaller records train at their own size)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation and patch sampling."),
    reference_train: str | None = typer.Option(None, "--reference-train", help="Real training set: trains a second U-Net with the same schedule, the reference line."),
    second_observer: str | None = typer.Option(None, "--second-observer", help="Label folder of a second human observer in each test set (e.g. 2nd_manual on DRIVE), scored against the test labels as the human reference."),
    test_scale: float | None = typer.Option(None, "--test-scale", min=0.01, help="Resample test images by this factor before inference. Default: none for patch-trained models (patches keep their pixel scale); whole-image training sets of another size resample each test image to that size."),
    device: str = typer.Option("cpu", "--device", help="Torch device for the U-Net: cpu, or cuda where a GPU is present (the same schedule, many times faster)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of a table."),
) -> None:
    """Train a U-Net on TRAIN pairs and report Dice and bAHD on each real TEST set.

    Seed 000's utility test: a release is useful if a segmentation network trained on it segments real images. Images are reduced to one channel (green of RGB) and equalised with CLAHE; inference covers each whole test image with a sliding window; Dice and the balanced average Hausdorff distance (pixels) are computed inside the field-of-view mask. An interrupted run resumes from the weights in OUT.
    """
    from privmed.data import load
    from privmed.evaluate.segmentation import SegmentationConfig, evaluate_segmentation

    config = SegmentationConfig(steps=steps, patch_size=patch_size, seed=seed, test_scale=test_scale, device=_checked_device(device))
    train_data = load(train)
    tests = {ref: load(ref) for ref in test}
    reference = load(reference_train) if reference_train else None
    observers = {ref: load(ref, label_folder=second_observer) for ref in test} if second_observer else None
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(model: str, step: int, total: int, loss: float) -> None:
            if model not in tasks:
                tasks[model] = bar.add_task(model, total=total, loss="")
            bar.update(tasks[model], completed=step, loss=f"loss {loss:.3f}")

        report = evaluate_segmentation(
            train_data, tests, out, config, reference_train=reference, observers=observers, train_name=f"U-Net trained on {train}", progress=progress
        )
    if as_json:
        print_json(report.results)
        return
    table = Table(title="Segmentation utility on real test data")
    for column in ("model", "test", "images", "DSC mean (SD)", "bAHD mean (SD), px", "bAHD undefined"):
        table.add_column(column)
    for row in report.results:
        table.add_row(
            row["model"], row["test"], str(row["n_images"]),
            f"{_number(row['dice_mean'])} ({_number(row['dice_sd'])})",
            f"{_number(row['bahd_mean'])} ({_number(row['bahd_sd'])})", str(row["n_bahd_undefined"]),
        )  # fmt: skip
    console.print(table)
    console.print(f"Report, per-image scores and overlays in {out}")


def fidelity(
    real: str = typer.Option(..., "--real", help="The real training data the release was made from (dataset ref)."),
    synthetic: str = typer.Option(..., "--synthetic", help="The synthetic release (dataset ref)."),
    out: Path = typer.Option(..., "--out", help="Folder for fidelity.json, the plots and the trained domain encoder."),
    test: str | None = typer.Option(None, "--test", help="Real data the generator never saw: FID to it, and test->train nearest-neighbour distances."),
    extractor: str = typer.Option("domain", "--extractor", help="'domain' (a small encoder trained here on --real, saved in OUT) or a path to a saved domain encoder or a local TorchScript Inception-v3 file."),
    max_images: int = typer.Option(1000, "--max-images", min=2, help="At most this many images per set."),
    ssim_pairs: int = typer.Option(1000, "--ssim-pairs", min=1, help="Random image pairs for SSIM diversity."),
    encoder_steps: int = typer.Option(300, "--encoder-steps", min=1, help="Training steps of the domain encoder (with --extractor domain)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write t-SNE and UMAP plots."),
    seed: int = typer.Option(0, "--seed", help="Seed for subsampling, patches and the encoder."),
    as_json: bool = typer.Option(False, "--json", help="Print fidelity.json instead of a summary."),
) -> None:
    """FID/KID, SSIM diversity, nearest-neighbour distances and t-SNE/UMAP plots of SYNTHETIC against REAL.

    FID and KID depend on the feature extractor: figures from different extractors (or two domain encoders trained separately) are not comparable; fidelity.json names the one used. To score several releases alike, train the domain encoder once and pass OUT/domain_encoder.pt as --extractor for the others.
    """
    from privmed.data import load
    from privmed.evaluate.fidelity import FidelityConfig, evaluate_fidelity

    config = FidelityConfig(
        extractor=extractor, max_images=max_images, ssim_pairs=ssim_pairs, encoder_steps=encoder_steps, plots=plots, seed=seed
    )
    real_data, synthetic_data = load(real), load(synthetic)
    test_data = load(test) if test else None
    with err_console.status("evaluating fidelity") as status:
        report = evaluate_fidelity(real_data, synthetic_data, out, test=test_data, config=config, progress=lambda m: status.update(m))
    if as_json:
        print_json(report)
        return
    diversity = report["diversity"]
    table = Table(title=f"Fidelity of {synthetic} (extractor: {report['extractor']['name']})")
    table.add_column("metric")
    table.add_column("value")
    table.add_row("FID synthetic vs train", _number(report["fid_train"]))
    if "fid_test" in report:
        table.add_row("FID synthetic vs test", _number(report["fid_test"]))
    table.add_row("KID synthetic vs train", f"{report['kid_train_mean']:.4g} ± {report['kid_train_sd']:.2g}")
    table.add_row("SSIM among synthetic / among real", f"{diversity['synthetic']['ssim_mean']:.3f} / {diversity['real']['ssim_mean']:.3f}")
    neighbours = report["nearest_neighbour"]
    table.add_row("NN distance synthetic->train (median)", _number(neighbours["synthetic_to_train"]["median"], 4))
    if "test_to_train" in neighbours:
        table.add_row("NN distance test->train (median)", _number(neighbours["test_to_train"]["median"], 4))
    console.print(table)
    console.print(f"fidelity.json and plots in {out}")


def table(
    directories: list[Path] = typer.Argument(..., help="Release directories (with privacy.json and evaluation outputs)."),
    fmt: str = typer.Option("md", "--format", help="md (Markdown) or csv."),
) -> None:
    """One row per release directory: epsilon, delta and unit (from privacy.json) beside DSC, bAHD, FID, KID and SSIM.

    Reads segmentation.json and fidelity.json in each directory or one level below, privacy.json in it or its parent; empty cells where a figure is missing.
    """
    from privmed.evaluate.table import format_table, release_table

    if fmt not in ("md", "csv"):
        raise PrivmedError(f"unknown table format {fmt!r}: use md or csv")
    typer.echo(format_table(release_table(directories), fmt), nl=False)
