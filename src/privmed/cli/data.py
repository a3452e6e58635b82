"""``privmed data``: inspect a dataset reference before training on it."""

from __future__ import annotations

import typer
from rich.table import Table

from privmed.cli._common import PrivmedGroup, console, print_json

app = typer.Typer(cls=PrivmedGroup, no_args_is_help=True, help="Inspect datasets: what privmed reads from a file, folder or phantom.")


@app.command()
def info(
    ref: str = typer.Argument(
        ...,
        help="A dataset: PATH or PATH:SPLIT (.npz, DRIVE-style or PNG folder, NIfTI, DICOM folder), "
        "or the embedded phantom[:train|test] / phantom-classes[:train|test].",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table."),
) -> None:
    """Show, per split, how many records, subjects and classes the dataset holds and what comes with them."""
    from privmed.data import load_splits

    splits = load_splits(ref)
    if as_json:
        print_json({"ref": ref, "splits": {name: data.summary() for name, data in splits.items()}})
        return
    assumed = any(not data.subjects_known for data in splits.values())
    caption = "* no patient ids in the data: one patient per image is assumed" if assumed else None
    table = Table(title=f"privmed data: {ref}", caption=caption)
    for column in ("split", "records", "kind", "C", "shape", "subjects", "classes", "labelled", "masks"):
        table.add_column(column, justify="right" if column in ("records", "C", "subjects", "labelled") else "left")
    for name, data in splits.items():
        summary = data.summary()
        classes = ", ".join(f"{c}: {n}" for c, n in summary.get("classes", {}).items()) or "-"
        subjects = f"{summary['subjects']}" + ("" if data.subjects_known else "*")
        fraction = f"{summary['label_fraction']:.3f}" if "label_fraction" in summary else "-"
        table.add_row(
            name,
            str(len(data)),
            data.record_kind,
            str(data.n_channels),
            "x".join(map(str, data.spatial_shape)),
            subjects,
            classes,
            fraction,
            "yes" if data.masks is not None else "no",
        )
    console.print(table)
