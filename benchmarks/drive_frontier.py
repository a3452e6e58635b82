"""Benchmark: which vessel release trains a U-Net that works on DRIVE test, under a per-image guarantee?

One U-Net schedule for every row (the full one of ``drive_unet.py``: 3000 steps, 96x96 patches, batch 16,
seed 0), scored on all 20 DRIVE test images (Dice and bAHD inside the FOV). Rows (see ``ROWS``):

- ``real``: the 20 DRIVE training pairs, no privacy (the figure of ``benchmarks/results/drive_unet.json``,
  which used this very configuration, is reused unless ``--rows real`` retrains it);
- ``prior``: the public vessel simulator at its defaults (epsilon 0, no private data read);
- ``sim<E>[-geom][-pw<W>][-r<K>]``: the simulator fitted to DRIVE training at epsilon E per image (one Gaussian
  release, delta = min(1e-5, 1/(10 N)) = 1e-5) of all 15 statistics, or of the 6 label statistics only
  (``-geom``), with prior weight W of the fit (default 1); ``-r<K>`` is another release (fresh DP noise) of the same;
- ``wgan_warm8_image``, ``wgan_warm8_patch``: DP-WGAN at epsilon 8 per image / per patch after a public
  warm start on the simulator; ``wgan_seed8_patch``: seed 000's recipe (no warm start) at epsilon 8 per patch;
  ``wgan_nonprivate``: the same WGAN without privacy. All on a reduced CPU schedule (``WGAN``).
- ``val-<row>``: the validation protocol for choices. The release is made from DRIVE training images
  21-36 only (N = 16) and its U-Net is scored on training images 37-40; the test images are not read.

A row name may end in ``@cuda``: the same row with the U-Net on the GPU (``--device cuda``), kept as a row of
its own so that the device's effect on the figure shows. Every epsilon is read from the release's privacy.json.

Two stages, so that the U-Nets can run where a GPU is: ``--stage release`` makes each row's release under
``--runs`` (default ``benchmarks/runs/drive_frontier/<row>/``: the fitted simulator, or the WGAN's run and
1000 sampled 96x96 pairs, green channel, 8 bit), ``--stage unet`` trains and scores the U-Net of every row
whose release is there and writes ``<row>/row.json``; ``--stage all`` (default) does both. Every invocation
rewrites ``benchmarks/results/drive_frontier.md`` (+ ``.json``) from the rows already in the results file and
the finished rows under ``--runs``. The budget ledger of these releases is ``<runs>/ledger.json``.

    nohup nice -n 10 .venv/bin/python benchmarks/drive_frontier.py --rows prior --threads 1 > benchmarks/runs/drive_frontier_prior.log 2>&1 &
    python benchmarks/drive_frontier.py --stage unet --device cuda --rows sim8,wgan_warm8_image  # on a GPU machine
    python benchmarks/drive_frontier.py --rows none --figure prior,sim8-geom-pw10  # t-SNE of real vs released patches
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DRIVE = ROOT.parent / "shared" / "data" / "drive"
DEFAULT_RUNS = ROOT / "benchmarks" / "runs" / "drive_frontier"
RESULTS = ROOT / "benchmarks" / "results" / "drive_frontier"
SYNTHETIC_IMAGES = 100
WGAN_PAIRS = 1000
VALIDATION_FIRST_SCORED = 37
"""Validation protocol: DRIVE training images 21-36 are private (N = 16), 37-40 are scored."""

WGAN = {"patch_size": 96, "patches_per_subject": 250, "n_critic": 5, "learning_rate": 2e-4, "generator_channels": 32, "critic_channels": 32}
"""The WGAN rows' shared options (a reduced CPU schedule of seed 000's 96x96 recipe; lr 2e-4 as in drive_dpwgan.md)."""
WGAN_PUBLIC_STEPS = 1000
WGAN_PUBLIC_IMAGES = 40
"""Simulated DRIVE-size images (public, the simulator's defaults) cut into the warm start's patches: 40 x 250
patches keep the process near 4 GB (the method's default of 200 images needs about 15 GB at 96 px)."""
WGAN_PRIVATE_STEPS = 400
WGAN_BATCH = {"image": 4, "patch": 32}
"""Expected batch per critic step: 4 of the 20 images (up to 8 patches each), or 32 of the 5000 patches."""

ROWS = {
    "real": "real DRIVE training pairs (no privacy)",
    "prior": "vessel simulator, public prior alone",
    "sim8": "vessel simulator fitted with DP, epsilon 8 per image",
    "sim1": "vessel simulator fitted with DP, epsilon 1 per image",
    "wgan_warm8_image": "DP-WGAN, public warm start, epsilon 8 per image",
    "wgan_warm8_patch": "DP-WGAN, public warm start, epsilon 8 per patch",
    "wgan_seed8_patch": "DP-WGAN, seed-000 recipe, epsilon 8 per patch",
    "wgan_nonprivate": "WGAN without privacy",
}
_SIM_ROW = re.compile(r"^sim(?P<epsilon>[0-9.]+)(?P<geometry>-geom)?(-pw(?P<weight>[0-9.]+))?(-r(?P<repeat>[0-9]+))?$")
logger = logging.getLogger("drive_frontier")


@dataclass(frozen=True)
class Row:
    """What a row name asks for."""

    name: str
    kind: str  # real | sim | wgan
    epsilon: float | None = None
    prior_weight: float = 1.0
    statistics: str = "all"
    repeat: int = 1
    unit: str = "image"
    warm_start: bool = False
    validation: bool = False
    device: str = "cpu"

    @property
    def base(self) -> str:
        return self.name.split("@")[0].removeprefix("val-")

    def release_dir(self, runs: Path) -> Path:
        """Where the row's release lives: one per row name, shared by its U-Nets on every device."""
        return runs / self.name.split("@")[0]

    def describe(self) -> str:
        if self.base in ROWS:
            what = ROWS[self.base]
        else:  # sim<E>[-geom][-pw<W>][-r<K>]
            what = f"vessel simulator fitted with DP, epsilon {self.epsilon:g} per image, {self.statistics} statistics, prior weight {self.prior_weight:g}"
            what += f", release {self.repeat}" if self.repeat > 1 else ""
        if self.validation:
            what = f"validation: {what} (fit on training 21-36, scored on 37-40)"
        return what + (f" [U-Net on {self.device}]" if self.device != "cpu" else "")


def parse_row(name: str) -> Row:
    """The :class:`Row` a name stands for, or SystemExit with the names that exist."""
    base, _, device = name.partition("@")
    validation = base.startswith("val-")
    base = base.removeprefix("val-")
    common = {"name": name, "validation": validation, "device": device or "cpu"}
    if base == "real":
        return Row(kind="real", **common)
    if base == "prior":
        return Row(kind="sim", epsilon=0.0, **common)
    if match := _SIM_ROW.match(base):
        return Row(kind="sim", epsilon=float(match["epsilon"]), prior_weight=float(match["weight"] or 1.0),
                   statistics="geometry" if match["geometry"] else "all", repeat=int(match["repeat"] or 1), **common)
    wgan = {
        "wgan_warm8_image": (8.0, "image", True), "wgan_warm8_patch": (8.0, "patch", True),
        "wgan_seed8_patch": (8.0, "patch", False), "wgan_nonprivate": (float("inf"), "patch", False),
    }
    if base in wgan:
        epsilon, unit, warm = wgan[base]
        return Row(kind="wgan", epsilon=epsilon, unit=unit, warm_start=warm, **common)
    raise SystemExit(f"unknown row {name!r}: use real, prior, sim<E>[-geom][-pw<W>][-r<K>], {', '.join(wgan)}, each optionally val-... or ...@cuda")


def splits(row: Row, drive: Path) -> tuple[Any, Any, str]:
    """The private training pairs, the scored pairs and the scored set's name for ``row``.

    Validation rows select DRIVE training images by number (21-36 private, 37-40 scored), so a copy of the
    data that holds only 37-40 (as sent to a GPU machine for the U-Net stage) scores the same images.
    """
    from privmed.data import load

    train = load(f"{drive}:training")
    if not row.validation:
        return train, load(f"{drive}:test"), "drive:test"
    numbers = np.array([int(str(s)) for s in train.sources])
    return (train.subset(np.flatnonzero(numbers < VALIDATION_FIRST_SCORED)), train.subset(np.flatnonzero(numbers >= VALIDATION_FIRST_SCORED)),
            "drive:training 37-40 (validation)")


def make_release(row: Row, runs: Path, drive: Path) -> None:
    """Make ``row``'s release under ``runs/<row>/`` (skipped when it is there): what the U-Net stage reads."""
    from privmed.methods.dpwgan import DPWGAN
    from privmed.methods.vessel_sim import VesselSimFit

    row_dir = row.release_dir(runs)
    release = row_dir / "release"
    if (row_dir / "release_time.json").exists() or row.kind == "real":
        return
    train, _, _ = splits(row, drive)
    ref = "drive:training" + (" 21-36" if row.validation else "")
    started = time.monotonic()
    if row.kind == "sim" and row.epsilon == 0:
        VesselSimFit(0.0, size=train.spatial_shape, run_dir=release).fit()
    elif row.kind == "sim":
        VesselSimFit(row.epsilon, unit="image", prior_weight=row.prior_weight, statistics=row.statistics, run_dir=release).fit(train, data_ref=ref)
    else:
        from privmed.data.vessel_sim import simulate_vessels

        public = simulate_vessels(WGAN_PUBLIC_IMAGES, train.spatial_shape, seed=17) if row.warm_start else None
        model = DPWGAN(
            row.epsilon, unit=row.unit, batch_size=WGAN_BATCH[row.unit], max_steps=WGAN_PRIVATE_STEPS,
            public_steps=WGAN_PUBLIC_STEPS if row.warm_start else 0, run_dir=release, data_ref=ref, **WGAN,
        ).fit(train, public_data=public, public_ref=f"vessel-sim:{WGAN_PUBLIC_IMAGES} (public simulator defaults)" if public else None)
        pairs = model.sample(WGAN_PAIRS, seed=1)
        green = pairs.images[:, 1] if pairs.n_channels == 3 else pairs.images[:, 0]
        np.savez_compressed(row_dir / "pairs.npz", green=np.round(green * 255).astype(np.uint8),
                            labels=pairs.segmentations[:, 0].astype(bool))
    (row_dir / "release_time.json").write_text(json.dumps({"seconds": time.monotonic() - started}))


def released_pairs(row: Row, runs: Path) -> Any:
    """The image + label pairs the row's U-Net trains on, drawn from its release."""
    from privmed.data.dataset import ImageDataset
    from privmed.methods.vessel_sim import VesselSimFit

    row_dir = row.release_dir(runs)
    if row.kind == "sim":
        return VesselSimFit.load(row_dir / "release").sample(SYNTHETIC_IMAGES, seed=1)
    stored = np.load(row_dir / "pairs.npz")
    ids = np.array([f"synthetic-{i:06d}" for i in range(len(stored["green"]))])
    return ImageDataset(images=(stored["green"][:, None] / 255.0).astype(np.float32), segmentations=stored["labels"][:, None],
                        subjects=ids, sources=ids, name=f"{row.base} pairs", record_kind="patch", subjects_known=False)


def run_unet(row: Row, runs: Path, drive: Path, steps: int) -> dict[str, Any]:
    """Train and score the row's U-Net; its record (also written to ``<runs>/<row>/row.json``)."""
    from privmed.evaluate.segmentation import SegmentationConfig, evaluate_segmentation
    from privmed.privacy.report import PrivacyReport

    row_dir = runs / row.name
    row_dir.mkdir(parents=True, exist_ok=True)
    train, scored, scored_name = splits(row, drive)
    config = SegmentationConfig(steps=steps, patch_size=96, seed=0, device=row.device)
    record: dict[str, Any] = {"row": row.name, "what": row.describe(), "device": row.device, "scored_on": scored_name}
    if row.kind == "real":
        pairs, privacy = train, None
    else:
        release_dir = row.release_dir(runs)
        pairs = released_pairs(row, runs)
        privacy = PrivacyReport.from_json(release_dir / "release" / "privacy.json")
        record.update(release_seconds=round(json.loads((release_dir / "release_time.json").read_text())["seconds"], 1),
                      synthetic_records=len(pairs))
        if row.kind == "sim":
            from privmed.methods.vessel_sim import VesselSimFit

            record["simulator_params"] = VesselSimFit.load(release_dir / "release").params_.to_dict()
    started = time.monotonic()
    last = [started]

    def progress(name: str, step: int, total: int, loss: float) -> None:
        if step % 500 == 0 or step == total:
            now = time.monotonic()
            logger.info("%s step %d/%d loss %.4f (%.3f s/step)", row.name, step, total, loss, (now - last[0]) / 500)
            last[0] = now

    report = evaluate_segmentation(pairs, {scored_name: scored}, row_dir / "evaluation", config, train_name=row.describe(), progress=progress)
    result = report.results[0]
    record.update(
        dice_mean=result["dice_mean"], dice_sd=result["dice_sd"], bahd_mean=result["bahd_mean"], bahd_sd=result["bahd_sd"],
        dice_per_image=_per_image_dice(row_dir / "evaluation" / "per_image.csv"), n_images=result["n_images"], unet_seconds=round(time.monotonic() - started, 1), steps=steps,
        epsilon=None if privacy is None else privacy.epsilon, delta=None if privacy is None else privacy.delta,
        unit=None if privacy is None else privacy.unit, privacy=None if privacy is None else privacy.summary_line(),
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    (row_dir / "row.json").write_text(json.dumps(record, indent=2))
    return record


def _patch_features(data: Any, n: int, seed: int) -> np.ndarray:
    """``n`` 96x96 patches of ``data`` as the U-Net sees them (one channel, CLAHE), averaged down to 24x24 and flattened."""
    from privmed.data.patches import extract_patches
    from privmed.evaluate.features import preprocess_images

    if data.record_kind != "patch":
        data = extract_patches(data, 96, max(1, -(-n // len(data))), seed=seed, with_replacement=True)
    data = data.subset(np.random.default_rng(seed).choice(len(data), size=min(n, len(data)), replace=False))
    images = preprocess_images(data)[:, 0]
    return images.reshape(len(images), 24, 4, 24, 4).mean(axis=(2, 4)).reshape(len(images), -1)


def draw_embedding(runs: Path, drive: Path, results: Path, names: list[str], per_set: int = 300) -> Path:
    """One t-SNE panel per released row in ``names`` (default: every test row with a release): its patches
    beside real DRIVE training patches (PCA to 50, then t-SNE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from privmed.data import load

    real = _patch_features(load(f"{drive}:training"), per_set, seed=0)
    names = names or [n for n in sorted({*ROWS, *(d.name for d in runs.iterdir() if d.is_dir())}, key=_order)
                      if "@" not in n and not n.startswith("val-") and n != "real" and (runs / n / "release_time.json").exists()]
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.4 * rows + 0.4), squeeze=False)
    for axis in axes.flat[len(names):]:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, names):
        released = _patch_features(released_pairs(parse_row(name), runs), per_set, seed=1)
        both = np.concatenate([real, released])
        points = TSNE(perplexity=30, init="pca", random_state=0).fit_transform(PCA(50, random_state=0).fit_transform(both))
        axis.scatter(*points[: len(real)].T, s=4, c="tab:blue", label="real (DRIVE training)")
        axis.scatter(*points[len(real):].T, s=4, c="tab:orange", label="released")
        axis.set_title(name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    axes.flat[0].legend(fontsize=7, loc="lower left")
    figure.suptitle("t-SNE of 96x96 patches as the U-Net sees them (green/gray + CLAHE, 24x24 means): real vs released",
                    fontsize=9, wrap=True)
    figure.tight_layout()
    path = results.parent / f"{results.name}_tsne.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _per_image_dice(path: Path) -> dict[str, float]:
    """Dice per scored image, from evaluate_segmentation's per_image.csv (for paired comparisons of rows)."""
    import csv

    with path.open() as handle:
        return {r["source"]: float(r["dice"]) for r in csv.DictReader(handle)}


def reused_real_row() -> dict[str, Any] | None:
    """The real-data row from benchmarks/results/drive_unet.json when it used this schedule (3000 steps, 96 px, seed 0)."""
    path = ROOT / "benchmarks" / "results" / "drive_unet.json"
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    config = payload.get("config", {})
    if (config.get("steps"), config.get("patch_size"), config.get("seed")) != (3000, 96, 0):
        return None
    result = next(r for r in payload["results"] if "real" in r["model"])
    return {"row": "real", "what": ROWS["real"], "dice_mean": result["dice_mean"], "dice_sd": result["dice_sd"],
            "bahd_mean": result["bahd_mean"], "bahd_sd": result["bahd_sd"], "n_images": result["n_images"], "steps": 3000,
            "epsilon": None, "date": payload["date"], "reused": "benchmarks/results/drive_unet.json (same schedule and seed)"}


def collect_records(runs: Path, results: Path) -> dict[str, dict[str, Any]]:
    """Rows already in the results file, updated by every finished row under ``runs``."""
    records: dict[str, dict[str, Any]] = {}
    if results.with_suffix(".json").exists():
        records.update(json.loads(results.with_suffix(".json").read_text())["rows"])
    for path in sorted(runs.glob("*/row.json")):
        record = json.loads(path.read_text())
        records[record["row"]] = record
    if "real" not in records and (real := reused_real_row()) is not None:
        records["real"] = real
    return records


def _order(name: str) -> tuple[int, int, str]:
    base = name.split("@")[0].removeprefix("val-")
    return (name.startswith("val-"), list(ROWS).index(base) if base in ROWS else len(ROWS), name)


def _table(records: dict[str, dict[str, Any]], names: list[str], reference: dict[str, Any] | None) -> list[str]:
    lines = [
        "| row | epsilon (per unit) | delta | Dice mean (SD) | bAHD px mean (SD) | vs prior: mean paired gain (SD) | release time | U-Net time | device | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        record = records.get(name)
        what = parse_row(name).describe()
        if record is None:
            lines.append(f"| {what} | – | – | not run (time) | – | – | – | – | – | |")
            continue
        epsilon = "none (no privacy)" if record.get("epsilon") is None else f"{record['epsilon']:.3g} per {record.get('unit', 'image')}"
        delta = "–" if record.get("delta") in (None, 0) else f"{record['delta']:.0e}"
        gain = "–"
        if reference is not None and record is not reference and record.get("dice_per_image") and reference.get("dice_per_image"):
            paired = [record["dice_per_image"][k] - reference["dice_per_image"][k] for k in reference["dice_per_image"]]
            gain = f"{np.mean(paired):+.3f} ({np.std(paired, ddof=1):.3f})"
        release = f"{record['release_seconds'] / 60:.1f} min" if "release_seconds" in record else "–"
        unet = f"{record['unet_seconds'] / 60:.1f} min" if "unet_seconds" in record else "–"
        lines.append(
            f"| {what} | {epsilon} | {delta} | {record['dice_mean']:.3f} ({record['dice_sd']:.3f}) |"
            f" {_bahd(record)} | {gain} | {release} | {unet} | {record.get('device', 'cpu')} |"
            f" {CHOSEN.get(name, record.get('reused', ''))} |"
        )
    return lines


def _bahd(record: dict[str, Any]) -> str:
    """bAHD mean (SD), or why there is none (a U-Net that predicts no vessel pixel has no distance)."""
    if record.get("bahd_mean") is None or not np.isfinite(record["bahd_mean"]):
        return "undefined (no vessel predicted)"
    return f"{record['bahd_mean']:.3f} ({record['bahd_sd']:.3f})"


def write_table(command: str, runs: Path, results: Path) -> None:
    """``results`` .md and .json (default benchmarks/results/drive_frontier) from every finished row."""
    from privmed.fileio import write_json_atomic, write_text_atomic

    records = collect_records(runs, results)
    write_json_atomic(results.with_suffix(".json"), {"command": command, "rows": records})
    made = {n.split("@")[0] for n in records}
    test_rows = sorted({*(r for r in ROWS if r not in made), *(n for n in records if not n.startswith("val-"))}, key=_order)
    validation_rows = sorted((n for n in records if n.startswith("val-")), key=_order)
    lines = [
        "# DRIVE: vessel releases under a per-image guarantee, judged by a U-Net on DRIVE test",
        "",
        f"- last command: `{command}` (each row also records its own date)",
        "- one U-Net schedule for every row: 3000 steps, batch 16, 96x96 patches, Adam 1e-3 with cosine decay, MONAI UNet",
        "  (16, 32, 64, 128), seed 0 (the full schedule of `benchmarks/drive_unet.py`); scored on all 20 DRIVE test images,",
        "  Dice and bAHD inside the FOV mask (mean and SD over the 20 images). 'vs prior' is the mean and SD over the",
        "  same images of (row's Dice - the prior row's Dice) on each image, against the prior's U-Net on the GPU.",
        f"- simulator rows: {SYNTHETIC_IMAGES} simulated 584x565 image + label pairs (one channel, like DRIVE's green channel,",
        "  which the U-Net's preprocessing uses); epsilon, delta and unit read from each release's privacy.json.",
        "- DP fit: one Gaussian release of the mean of 15 per-image statistics (or the 6 label statistics, 'geometry') of the",
        "  20 DRIVE training images, clipped to L2 norm 1, replace-one sensitivity 2/20, delta = min(1e-5, 1/(10 N)) = 1e-5;",
        "  DP noise from the OS (not seeded).",
        f"- WGAN rows: {WGAN_PAIRS} generated 96x96 pairs (green channel, 8 bit) per row; options {WGAN}; expected batch "
        f"{WGAN_BATCH}; {WGAN_PRIVATE_STEPS} DP critic steps, after {WGAN_PUBLIC_STEPS} public warm-start critic steps where named (on "
        f"{WGAN_PUBLIC_IMAGES} simulated 584x565 images at the simulator's public defaults, 250 patches each).",
        "",
        *_table(records, test_rows, records.get("prior@cuda") or records.get("prior")),
    ]
    if validation_rows:
        lines += [
            "",
            "## Validation split (the only results choices were made on)",
            "",
            "Releases made from DRIVE training images 21-36 (N = 16, delta = min(1e-5, 1/(10 N)) = 1e-5); each U-Net "
            "scored on training images 37-40. The test images are not read by these rows.",
            "",
            *_table(records, validation_rows, records.get("val-prior@cuda") or records.get("val-prior")),
        ]
    lines += ["", "## The releases", ""]
    for name in sorted(records, key=_order):
        record = records[name]
        if "privacy" in record and "release_seconds" in record:
            lines.append(f"- {record['what']}: {record['privacy']}; release made in {record['release_seconds'] / 60:.1f} min (wall, shared CPU).")
            if "simulator_params" in record:
                params = ", ".join(f"{k}={v:.4g}" for k, v in record["simulator_params"].items())
                lines.append(f"  Simulator parameters: {params}.")
    lines.append("")
    write_text_atomic(results.with_suffix(".md"), "\n".join(lines) + "\n" + NOTES)


CHOSEN = {
    "sim8-geom-pw10@cuda": "chosen for epsilon 8 by the validation split (rule below)",
    "sim1-geom-pw10@cuda": "chosen for epsilon 1 by the validation split (rule below)",
}
"""The rows the validation split picked (the highest mean validation Dice per epsilon), marked in the table."""

NOTES = """
## What the rows say (2026-11-27)

Two sessions made these rows. The first (code of commit 4e0a252) made `prior`, `sim8` and `sim1` with U-Nets on
the 2-core CPU. The second (this code) made every other row: releases on the CPU with `--stage release`, then
the U-Nets of 16 and 14 rows at once on one lent NVIDIA H200 with
`benchmarks/drive_frontier_gpu.sh gpu/runs gpu/drive /tmp/logs ROW...` (ROW_TIMEOUT=450 and 400; under 2 minutes
per U-Net, 3 minutes a call; the device logs are not kept in the repository), then `--rows none` here.
The device does not move the figure: the same prior release scored 0.728 (0.049) on the CPU and on the GPU.

**Validation first** (DRIVE training images 21-36 private, 37-40 scored; the test images are not read). Candidates
per epsilon: all 15 statistics or the 6 label statistics only (`-geom`), prior weight 1, 10 or 100; a second
release (fresh noise) of several candidates (`-r2`). Rule, fixed before the test rows were read: per epsilon, the
candidate with the highest mean validation Dice over its releases. Validation Dice (mean over releases): prior
0.748; epsilon 8: all/pw1 0.720 (0.735, 0.705), all/pw10 0.738 (0.745, 0.730), geom/pw1 0.748 (0.755, 0.740),
**geom/pw10 0.751**; epsilon 1: all/pw1 0.745, all/pw10 0.608, all/pw100 0.749 (0.747, 0.751), geom/pw1 0.730
(0.752, 0.708), **geom/pw10 0.750**. These validation releases are departures: they read the private training
images without being booked (the ledger of this benchmark is a scratch ledger), as tuning on private data that a
real release would have to account.

**Test rows of the chosen fits**: epsilon 8 per image, geometry statistics, prior weight 10: Dice **0.738** (SD 0.045);
epsilon 1: 0.728 (0.047). Prior alone on the same device: 0.728 (0.049). Real pairs: 0.811. A release is one draw of
the DP noise, so each chosen fit was released three more times (`-r2` to `-r4`, a third GPU call, after the choice):
at epsilon 8 the four releases score 0.738, 0.738, 0.738 and 0.734 (mean 0.737, SD 0.002; better than the prior
on 16-19 of the 20 test images each); at epsilon 1 they score 0.728, 0.659, 0.661 and 0.732 (mean 0.695, SD 0.040):
two of the four fall 0.07 below the prior.

- Target "DP-fitted simulator at epsilon 8 per image, Dice >= 0.70": met (0.738).
- Target "above the prior-alone row by more than its SD across test images": **not met** as written. The chosen
  epsilon-8 fit gains +0.010 over the prior, reproducibly over four releases: more than the SD of the paired
  per-image gain (0.009; better on 18 of the 20 test images), far less than the SD of Dice across test images
  (0.045-0.049). At epsilon 1 the geometry fit is a coin toss (two releases equal the prior, two lose 0.07):
  below epsilon 8 on 20 images, release the prior alone (`--epsilon 0`).
- Every variant run on the test images is in the table. The releases of all 15 statistics vary from one noise
  draw to the next far more than the geometry releases: at epsilon 8 and prior weight 1 one release gave 0.550 and
  another 0.753 (the first session's gave 0.727); at epsilon 1 and weight 1 one gave 0.000 and the first
  session's 0.436. Reading the fitted parameters: the damage comes from appearance parameters fitted from a noisy
  statistic, above all the camera noise (`noise`) driven to 0-0.004 (prior 0.012): sim1-pw10 differs from the
  prior in little but its noise (0.002) and loses 0.110 Dice; sim1-pw1 (noise 0.0, vessels 35 % narrower, segments
  38 % shorter, narrowest 0.7 px) trains a U-Net that marks no pixel of a real test image as vessel (Dice 0.000).
  Why noiseless training images hurt this much was not investigated further (overlays of these rows were left on
  the GPU machine). Releasing only the label statistics keeps
  the appearance at its public defaults and gives each released statistic 1.7x the signal-to-noise ratio; its
  four test releases score 0.728-0.743, never below the prior.
- DP-WGAN rows (reduced CPU schedule: 96x96 patches, 32 base channels, RMSprop 2e-4, 400 DP critic steps, after
  1000 public warm-start steps on 40 simulated images where named; 4.4-5.3 min of wall time each on the shared
  CPU, 16 min for the warm-started patch row): all fail. The warm-started generators draw blobs with empty labels (all 1000 sampled
  labels of both warm rows are 0: Dice 0.000); the seed-000 recipe draws noise labels (36 % vessel pixels: 0.123);
  the non-private WGAN of the same 400 steps draws 3.6 % vessel pixels but not where the image has vessels
  (0.008). Targets "warm start at epsilon 8 per patch >= 0.60" and "per image better than the prior": **not met**.
  Why: a weight-clipped WGAN needs tens of thousands of critic steps at this size (seed 000: 50 epochs of 96x96
  patches, about 1.4 days on a V100), 100x what this CPU gives a row; at the image unit the warm start also ran with
  batches of 4 patches (the public phase uses the DP batch size, which counts images there). The extra GPU row of
  the issue (seed 000 at its full schedule) needs privmed's DP trainer on a GPU, which it is not yet (only the
  U-Net evaluation runs there): not run.
- Next steps, in order: (1) a richer simulator geometry and label statistics that identify it (thin-vessel
  density, side branches): the label statistics are the part of the release that helps, and the prior's
  simulated vessel tree is what limits it; (2) several releases' utility is an expectation: the geometry fit's
  spread over releases should be measured on more draws (two per candidate here); (3) the DP trainer on a GPU,
  then the WGAN rows at a schedule where the warm start has learned to draw labels (check its samples first).

## How to read this table, and what was chosen how

- Targets (issue 14): DP-fitted simulator at epsilon 8 per image Dice >= 0.70, and above the prior-alone row by more
  than its SD across test images; DP-WGAN with warm start at epsilon 8 per patch >= 0.60. The real row is the ceiling.
- The only choices made by looking at results are the validation rows' (above). The simulator's defaults come from
  published anatomy and imaging facts (sources in `privmed.data.vessel_sim`). During development (first session)
  one DRIVE *training* image was looked at beside a simulated one, and the statistics of the DRIVE training images
  were printed once to check the scale of the statistics vector; the vector's scales were then set from the public
  simulator's own norms. The WGAN options were not tuned (lr 2e-4 as in drive_dpwgan.md).
- The t-SNE figure (`drive_frontier_tsne.png`): 300 random 96x96 patches of the DRIVE training images and 300 of
  each release, as the U-Net sees them (one channel, CLAHE), averaged to 24x24, PCA to 50 dimensions, then t-SNE;
  one panel per release.
- WGAN pairs were handed to the U-Net as their green channel in 8 bits (what the U-Net reads; the rounding moves
  a pixel by at most 1/510).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=DEFAULT_DRIVE)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="where each row's release and U-Net live")
    parser.add_argument("--rows", default="prior,sim8,sim1", help="comma-separated rows to run (none: only rewrite the table)")
    parser.add_argument("--stage", choices=("release", "unet", "all"), default="all")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="U-Net device for rows without an @device suffix (default cpu)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results file stem (.md, .json, _tsne.png)")
    parser.add_argument("--figure", default=None, const="", nargs="?", metavar="ROWS",
                        help="draw the t-SNE figure of real vs released patches (comma-separated rows; default every test row)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("PRIVMED_LEDGER", str(args.runs / "ledger.json"))
    import torch

    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    names = [r for r in args.rows.split(",") if r and r != "none"]
    if args.device:
        names = [n if "@" in n or args.device == "cpu" else f"{n}@{args.device}" for n in names]
    rows = [parse_row(n) for n in names]
    for row in rows:
        if args.stage in ("release", "all"):
            make_release(row, args.runs, args.drive)
        if args.stage in ("unet", "all"):
            record = run_unet(row, args.runs, args.drive, args.steps)
            logger.info("%s: Dice %.3f (%.3f)", row.name, record["dice_mean"], record["dice_sd"])
            write_table(command, args.runs, args.results)
    if args.figure is not None:
        draw_embedding(args.runs, args.drive, args.results, [r for r in args.figure.split(",") if r])
    write_table(command, args.runs, args.results)


if __name__ == "__main__":
    main()
