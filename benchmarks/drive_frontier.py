"""Benchmark: which vessel release trains a U-Net that works on DRIVE test, under a per-image guarantee?

One U-Net schedule for every row (the full one of ``drive_unet.py``: 3000 steps, 96x96 patches, batch 16,
seed 0), scored on all 20 DRIVE test images (Dice and bAHD inside the FOV). Rows:

- ``real``: the 20 DRIVE training pairs, no privacy (the figure of ``benchmarks/results/drive_unet.json``,
  which used this very configuration, is reused unless ``--rows real`` retrains it);
- ``prior``: the public vessel simulator at its defaults (epsilon 0, no private data read);
- ``sim8``, ``sim1``: the simulator fitted to DRIVE training at epsilon 8 and 1 per image (one Gaussian
  release, delta = min(1e-5, 1/(10 N)) = 1e-5);
- ``wgan_warm8_image``, ``wgan_warm8_patch``, ``wgan_seed8_patch``, ``wgan_nonprivate``: DP-WGAN rows of
  the issue, not implemented in this script yet (they stay in the table as not run).

Every epsilon is read from the release's privacy.json. Each row caches its release, its synthetic pairs
and its U-Net checkpoint under ``benchmarks/runs/drive_frontier/<row>/`` (a killed run resumes), and every
invocation rewrites ``benchmarks/results/drive_frontier.md`` (+ ``.json``) from all finished rows. Rows can
run in parallel processes (``--rows prior``, ``--rows sim8`` ...); the budget ledger of these releases is
``benchmarks/runs/drive_frontier/ledger.json``, not the user's.

    nohup nice -n 10 .venv/bin/python benchmarks/drive_frontier.py --rows prior --threads 1 > benchmarks/runs/drive_frontier_prior.log 2>&1 &
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DRIVE = ROOT.parent / "shared" / "data" / "drive"
RUNS = ROOT / "benchmarks" / "runs" / "drive_frontier"
RESULTS = ROOT / "benchmarks" / "results" / "drive_frontier"
SYNTHETIC_IMAGES = 100
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
SIM_EPSILON = {"prior": 0.0, "sim8": 8.0, "sim1": 1.0}
logger = logging.getLogger("drive_frontier")


def _release(row: str, train: Any, row_dir: Path) -> tuple[Any, float]:
    """The row's fitted simulator (made once, then loaded from its run directory) and the seconds it took."""
    from privmed.methods.vessel_sim import VesselSimFit

    run = row_dir / "release"
    if (run / "fit.json").exists():
        return VesselSimFit.load(run), json.loads((row_dir / "release_time.json").read_text())["seconds"]
    started = time.monotonic()
    epsilon = SIM_EPSILON[row]
    if epsilon == 0:
        model = VesselSimFit(0.0, size=train.spatial_shape, run_dir=run).fit()
    else:
        model = VesselSimFit(epsilon, unit="image", run_dir=run).fit(train, data_ref="drive:training")
    seconds = time.monotonic() - started
    (row_dir / "release_time.json").write_text(json.dumps({"seconds": seconds}))
    return model, seconds


def run_row(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """Release (for simulator rows), draw pairs, train and score the U-Net; the row's record."""
    from privmed.data import load, save
    from privmed.evaluate.segmentation import SegmentationConfig, evaluate_segmentation
    from privmed.privacy.report import PrivacyReport

    row_dir = RUNS / row
    row_dir.mkdir(parents=True, exist_ok=True)
    train = load(f"{args.drive}:training")
    test = load(f"{args.drive}:test")
    config = SegmentationConfig(steps=args.steps, patch_size=96, seed=0)
    record: dict[str, Any] = {"row": row, "what": ROWS[row]}
    if row == "real":
        pairs, privacy = train, None
    else:
        model, seconds = _release(row, train, row_dir)
        data_path = row_dir / "synthetic.npz"
        if not data_path.exists():
            save(model.sample(SYNTHETIC_IMAGES, seed=1), data_path)
        pairs = load(str(data_path))
        privacy = PrivacyReport.from_json(row_dir / "release" / "privacy.json")
        record.update(release_seconds=round(seconds, 1), synthetic_images=len(pairs),
                      simulator_params=model.params_.to_dict())
    started = time.monotonic()
    last = [started]

    def progress(name: str, step: int, total: int, loss: float) -> None:
        if step % 100 == 0 or step == total:
            now = time.monotonic()
            logger.info("%s step %d/%d loss %.4f (%.2f s/step)", row, step, total, loss, (now - last[0]) / 100)
            last[0] = now

    report = evaluate_segmentation(pairs, {"drive:test": test}, row_dir / "evaluation", config, train_name=ROWS[row], progress=progress)
    result = report.results[0]
    record.update(
        dice_mean=result["dice_mean"], dice_sd=result["dice_sd"], bahd_mean=result["bahd_mean"], bahd_sd=result["bahd_sd"],
        n_images=result["n_images"], unet_seconds=round(time.monotonic() - started, 1), steps=args.steps,
        epsilon=None if privacy is None else privacy.epsilon, delta=None if privacy is None else privacy.delta,
        unit=None if privacy is None else privacy.unit, privacy=None if privacy is None else privacy.summary_line(),
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    (row_dir / "row.json").write_text(json.dumps(record, indent=2))
    return record


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


def write_table(command: str) -> None:
    """benchmarks/results/drive_frontier.md and .json from every finished row."""
    from privmed.fileio import write_json_atomic, write_text_atomic

    records = {}
    for row in ROWS:
        path = RUNS / row / "row.json"
        if path.exists():
            records[row] = json.loads(path.read_text())
    if "real" not in records and (real := reused_real_row()) is not None:
        records["real"] = real
    write_json_atomic(RESULTS.with_suffix(".json"), {"command": command, "rows": records})
    prior = records.get("prior")
    lines = [
        "# DRIVE: vessel releases under a per-image guarantee, judged by a U-Net on DRIVE test",
        "",
        f"- last command: `{command}` (each row also records its own date)",
        "- one U-Net schedule for every row: 3000 steps, batch 16, 96x96 patches, Adam 1e-3 with cosine decay, MONAI UNet",
        "  (16, 32, 64, 128), seed 0 (the full schedule of `benchmarks/drive_unet.py`); scored on all 20 DRIVE test images,",
        "  Dice and bAHD inside the FOV mask (mean and SD over the 20 images).",
        f"- simulator rows: {SYNTHETIC_IMAGES} simulated 584x565 image + label pairs (one channel, like DRIVE's green channel,",
        "  which the U-Net's preprocessing uses); epsilon, delta and unit read from each release's privacy.json.",
        "- DP fit: one Gaussian release of the mean of 15 per-image statistics of the 20 DRIVE training images, clipped to",
        "  L2 norm 1, replace-one sensitivity 2/20, delta = min(1e-5, 1/(10 N)) = 1e-5; DP noise from the OS (not seeded).",
        "",
        "| row | epsilon (per unit) | delta | Dice mean (SD) | bAHD px mean (SD) | release time | U-Net time | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, what in ROWS.items():
        record = records.get(row)
        if record is None:
            lines.append(f"| {what} | – | – | not run (time) | – | – | – | |")
            continue
        epsilon = "none (no privacy)" if record.get("epsilon") is None else f"{record['epsilon']:.3g} per {record.get('unit', 'image')}"
        delta = "–" if record.get("delta") in (None, 0) else f"{record['delta']:.0e}"
        note = record.get("reused", "")
        if prior is not None and row.startswith("sim") and record is not prior:
            gap = record["dice_mean"] - prior["dice_mean"]
            note = f"{gap:+.3f} vs prior ({'more' if gap > record['dice_sd'] else 'not more'} than its SD {record['dice_sd']:.3f})"
        release = f"{record['release_seconds'] / 60:.1f} min" if "release_seconds" in record else "–"
        unet = f"{record['unet_seconds'] / 60:.0f} min" if "unet_seconds" in record else "–"
        lines.append(
            f"| {what} | {epsilon} | {delta} | {record['dice_mean']:.3f} ({record['dice_sd']:.3f}) |"
            f" {record['bahd_mean']:.3f} ({record['bahd_sd']:.3f}) | {release} | {unet} | {note} |"
        )
    lines += ["", "## The releases", ""]
    for row, record in records.items():
        if "privacy" in record:
            lines.append(f"- {ROWS[row]}: {record['privacy']}; release made in {record['release_seconds'] / 60:.1f} min (wall, shared CPU).")
            params = ", ".join(f"{k}={v:.4g}" for k, v in record["simulator_params"].items())
            lines.append(f"  Simulator parameters: {params}.")
    lines.append("")
    write_text_atomic(RESULTS.with_suffix(".md"), "\n".join(lines) + "\n" + NOTES)


NOTES = """
## What the rows say (run of 2026-11-27, code of commit 4e0a252: later commits changed only notes and lint)

The three rows ran in parallel as `nohup nice -n 10 python benchmarks/drive_frontier.py --rows R --threads 1`
for R = prior, sim8, sim1 (OMP_NUM_THREADS=1); the table was then rewritten with `--rows none`.

- Target "DP-fitted simulator at epsilon 8 per image, Dice >= 0.70": met, 0.727 (SD 0.049).
- Target "above the prior-alone row by more than its SD": **not met**. The public prior alone already reaches 0.728;
  the epsilon-8 fit is -0.001 from it (per-image differences within about +-0.01 on every one of the 20 test
  images). The fit moved mostly appearance parameters (contrast, brightness, blur, disc) that the U-Net's
  preprocessing (green channel + CLAHE) normalises away; the geometry barely moved (vessel width 0.0156 vs 0.013 of
  the FOV, segment length 11 vs 10 widths, narrowest vessel 1.03 vs 1 px), and the simulated vessel density stays
  below DRIVE's, which is what limits the prior (the real-data U-Net: 0.811).
- At epsilon 1 per image the fit **hurts**: 0.436. The released vector's noise (std 0.37 per coordinate, against
  coordinates of 0.05-0.5) pulled the narrowest drawn vessel to 0.65 px and the segments shorter, so the simulated
  labels hold many sub-pixel vessels and the U-Net over-segments. The prior weight of the fit (a N(0, 1) prior on
  each parameter's deviation in quarter-ranges) is too weak at this noise level.
- Variants tried: only the three rows above (one U-Net each, 33-40 min of wall time under a load of 12-14 on the
  2-core machine). Next steps, in order: (1) shrink each released coordinate towards the prior's simulated value
  by its signal-to-noise ratio before fitting (or scale the prior weight with the noise), choosing the rule on a
  validation split of DRIVE training images (37-40 held out), so that a small epsilon cannot do worse than the
  prior; (2) give the simulator the geometry DRIVE has and the prior lacks (side branches along the trunks, denser
  thin vessels) and statistics that identify it, since the U-Net's errors are thin vessels, not appearance;
  (3) Private-Evolution-style rounds of DP votes over simulator candidates; (4) the DP-WGAN rows, with the public
  warm start now in `privmed train dpwgan --public-steps N` (implemented and tested, not benchmarked here).

## How to read this table, and what was chosen how

- Targets (issue 14): DP-fitted simulator at epsilon 8 per image Dice >= 0.70, and above the prior-alone row by more
  than its SD across test images. The real-data row is the ceiling.
- No choice was made by looking at DRIVE test images. The simulator's defaults come from published anatomy and
  imaging facts (sources in `privmed.data.vessel_sim`). During development one DRIVE *training* image was looked at
  beside a simulated one, and the statistics of the DRIVE training images were printed once to check the scale of
  the statistics vector; the vector's scale was then set from the public simulator's own norms (about 0.85 at its
  defaults, below the clip of 1). No validation split was used: no hyperparameter of the fit or of the U-Net was
  tuned on results.
- The DP-WGAN rows (public warm start, seed-000 recipe, non-private) are not implemented by this script yet; the
  seed-000 recipe's short-schedule figures are in `drive_table.md`. No t-SNE/UMAP figure was made.
- The machine is a shared 2-core CPU; U-Net times are wall times under that load (1 torch thread per row, rows run
  in parallel processes).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=DEFAULT_DRIVE)
    parser.add_argument("--rows", default="prior,sim8,sim1", help="comma-separated rows to run (none: only rewrite the table)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("PRIVMED_LEDGER", str(RUNS / "ledger.json"))
    import torch

    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    rows = [r for r in args.rows.split(",") if r and r != "none"]
    for row in rows:
        if row not in SIM_EPSILON and row != "real":
            raise SystemExit(f"row {row!r} is not implemented; implemented: real, {', '.join(SIM_EPSILON)}")
    for row in rows:
        record = run_row(row, args)
        logger.info("%s: Dice %.3f (%.3f)", row, record["dice_mean"], record["dice_sd"])
        write_table(command)
    write_table(command)


if __name__ == "__main__":
    main()
