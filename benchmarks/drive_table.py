"""Benchmark: seed 000's table on DRIVE: utility and fidelity of DP-WGAN releases at each epsilon and unit.

For every DP-WGAN run directory written by ``benchmarks/drive_dpwgan.py`` (its synthetic pairs in
``RUN/synthetic/data.npz`` beside a copy of privacy.json), and for the real DRIVE training set:

- ``evaluate_segmentation``: a U-Net (same architecture, schedule and patch size for every row)
  trained on the pairs, scored on the 20 DRIVE test images (DSC, bAHD inside the FOV);
- ``evaluate_fidelity``: FID/KID synthetic vs DRIVE training patches and vs DRIVE test patches,
  SSIM diversity, nearest-neighbour distances, with ONE domain encoder trained on the real training
  patches and shared by every row (so the FIDs are comparable with each other, not with Inception FIDs).

Outputs go to ``benchmarks/runs/drive_table/<row>/`` (a finished row is reused), and the table to
``benchmarks/results/drive_table.md`` (+ ``.json``) with the command, date and wall time.

    nohup .venv/bin/python benchmarks/drive_table.py --steps 300 > benchmarks/runs/drive_table.log 2>&1 &
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from privmed.data import extract_patches, load
from privmed.evaluate.features import DomainEncoder
from privmed.evaluate.fidelity import FidelityConfig, comparable_images, evaluate_fidelity
from privmed.evaluate.segmentation import SegmentationConfig, evaluate_segmentation
from privmed.evaluate.table import format_table, release_table
from privmed.fileio import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DRIVE = ROOT.parent / "shared" / "data" / "drive"
EPSILON_ORDER = {"inf": 0, "10": 1, "8": 2, "5": 3, "2": 4}
logger = logging.getLogger("drive_table")


def run_order(run: Path) -> tuple[int, int, str]:
    unit, _, epsilon = run.name.partition("_eps")
    return (0 if unit == "patch" else 1, EPSILON_ORDER.get(epsilon, 9), run.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=DEFAULT_DRIVE)
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "drive_dpwgan", help="folder of DP-WGAN run directories")
    parser.add_argument("--steps", type=int, default=300, help="U-Net training steps per row (the same for every row)")
    parser.add_argument("--patch-size", type=int, default=None, help="U-Net patch side (default: the synthetic patch size)")
    parser.add_argument("--max-images", type=int, default=500, help="images per set for FID/KID and SSIM")
    parser.add_argument("--encoder-steps", type=int, default=300)
    parser.add_argument("--test-images", type=int, default=None, help="score on the first N DRIVE test images only (default: all 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "drive_table")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "drive_table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    started = time.monotonic()

    train = load(f"{args.drive}:training")
    test = load(f"{args.drive}:test")
    if args.test_images is not None:
        test = test.subset(np.arange(min(args.test_images, len(test))))
    runs = sorted((p for p in args.runs.glob("*_eps*") if (p / "synthetic" / "data.npz").exists()), key=run_order)
    if not runs:
        raise SystemExit(f"no finished DP-WGAN runs with synthetic/data.npz under {args.runs}")
    releases = {run.name: load(str(run / "synthetic" / "data.npz")) for run in runs}
    side = min(min(r.spatial_shape) for r in releases.values())
    patch = args.patch_size or side
    segmentation_config = SegmentationConfig(steps=args.steps, patch_size=patch, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    encoder_path = args.out / "domain_encoder.pt"
    fidelity_base = FidelityConfig(max_images=args.max_images, encoder_steps=args.encoder_steps, plots=False, seed=args.seed)
    if not encoder_path.exists():
        rng = np.random.default_rng(args.seed)
        real_patches = comparable_images(train, (side, side), fidelity_base, rng)
        logger.info("training the shared domain encoder on %d real %dx%d patches", len(real_patches), side, side)
        encoder = DomainEncoder(in_channels=1, image_size=64).fit(real_patches, steps=args.encoder_steps, seed=args.seed)
        encoder.trained_on["dataset"] = "DRIVE training patches"
        encoder.save(encoder_path)
    fidelity_config = FidelityConfig(**{**fidelity_base.__dict__, "extractor": str(encoder_path)})

    settings = {"steps": args.steps, "patch_size": patch, "test_images": len(test), "max_images": args.max_images, "seed": args.seed}
    rows = [("real", train, None)] + [(name, data, args.runs / name) for name, data in releases.items()]
    for name, data, run in rows:
        row_dir = args.out / name
        timing_path = row_dir / "row_time.json"
        if timing_path.exists() and json.loads(timing_path.read_text()).get("settings") == settings:
            logger.info("%s: reusing %s", name, row_dir)
            continue
        row_started = time.monotonic()
        if run is not None:
            row_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / "synthetic" / "privacy.json", row_dir / "privacy.json")
        logger.info("%s: U-Net (%d steps, %d px patches) on %d records", name, args.steps, patch, len(data))
        evaluate_segmentation(data, {"drive:test": test}, row_dir, segmentation_config, train_name=f"U-Net trained on {name}", n_overlays=2)
        if run is not None:
            logger.info("%s: fidelity", name)
            evaluate_fidelity(train, data, row_dir, test=test, config=fidelity_config)
        seconds = round(time.monotonic() - row_started, 1)
        write_json_atomic(timing_path, {"seconds": seconds, "date": date, "settings": settings})
        logger.info("%s: done in %.0f s", name, seconds)
    timings = {name: json.loads((args.out / name / "row_time.json").read_text())["seconds"] for name, _, _ in rows}

    table_rows = release_table([args.out / name for name, _, _ in rows])
    real_floor = json.loads((args.out / "real_vs_test_fid.json").read_text()) if (args.out / "real_vs_test_fid.json").exists() else None
    if real_floor is None:
        from privmed.evaluate.features import load_feature_extractor
        from privmed.evaluate.fidelity import fid_kid

        rng = np.random.default_rng(args.seed)
        real_train = comparable_images(train, (side, side), fidelity_base, rng)
        real_test = comparable_images(extract_patches(test, side, 25, seed=args.seed + 1), (side, side), fidelity_base, rng)
        real_floor = fid_kid(load_feature_extractor(encoder_path), real_train, real_test)
        write_json_atomic(args.out / "real_vs_test_fid.json", real_floor)
    wall = time.monotonic() - started
    write_json_atomic(args.results.with_suffix(".json"), {
        "command": command, "date": date, "wall_time_s": round(wall, 1), "row_seconds": timings,
        "segmentation_config": segmentation_config.__dict__, "fidelity_config": fidelity_config.__dict__,
        "real_train_vs_real_test": real_floor, "rows": table_rows,
    })  # fmt: skip
    lines = [
        "# DRIVE: seed 000's table (DP-WGAN releases, reduced schedule)",
        "",
        f"- command: `{command}`",
        f"- date (UTC): {date}; shared 2-core CPU (load from other jobs), {args.threads} torch threads; wall time per row (s, U-Net"
        f" training + inference + fidelity, possibly from earlier invocations of this command): {timings}; this invocation {wall / 60:.1f} min.",
        f"- U-Net per row: {args.steps} steps, batch {segmentation_config.batch_size}, {patch}x{patch} patches, the same for the real row;"
        f" scored on {len(test)} DRIVE test images (whole images, inside the FOV). Far shorter than the full schedule:"
        " see drive_unet.md for the real-data U-Net at full length.",
        f"- FID/KID: one domain encoder trained on DRIVE training patches ({os.path.relpath(encoder_path, ROOT)}), shared by every row;"
        " comparable across rows only, not with Inception FIDs. fid_train: synthetic vs training patches, fid_test: vs test patches.",
        f"- floor: FID of real test patches vs real training patches with the same encoder = {real_floor['fid']:.3f}.",
        "- ssim: mean SSIM between random pairs of synthetic images (mode collapse -> 1).",
        "- epsilon/unit/delta: from each run's privacy.json (privmed.privacy.report.PrivacyReport).",
        "",
        format_table(table_rows, "md"),
    ]
    write_text_atomic(args.results.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
