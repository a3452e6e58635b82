"""Benchmark: the real-data U-Net on DRIVE (the reference line of every DP-WGAN utility table).

Trains privmed's segmentation U-Net (green channel + CLAHE, 96x96 patches) on the 20 DRIVE
training images, scores it on the 20 test images (Dice and bAHD inside the FOV mask, whole-image
sliding-window inference) beside the second human observer, and writes
``benchmarks/results/drive_unet.md`` (+ ``.json``) with the command, date and wall time.
The run directory (checkpoint every 250 steps: a killed run resumes) is ``benchmarks/runs/drive_unet``.

    nohup .venv/bin/python benchmarks/drive_unet.py --steps 8000 > benchmarks/runs/drive_unet.log 2>&1 &
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import torch

from privmed.data import load
from privmed.errors import PrivmedError
from privmed.evaluate.segmentation import SegmentationConfig, evaluate_segmentation
from privmed.fileio import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DRIVE = ROOT.parent / "shared" / "data" / "drive"
logger = logging.getLogger("drive_unet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=DEFAULT_DRIVE, help="DRIVE folder (training/ and test/)")
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--patch-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "drive_unet")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "drive_unet")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)

    train = load(f"{args.drive}:training")
    test = load(f"{args.drive}:test")
    observers = {}
    try:
        observers["drive:test"] = load(f"{args.drive}:test", label_folder="2nd_manual")
    except PrivmedError as exc:
        logger.warning("no second observer: %s", exc)

    config = SegmentationConfig(steps=args.steps, patch_size=args.patch_size, seed=args.seed)
    started = time.monotonic()
    last = [started]

    def progress(model: str, step: int, total: int, loss: float) -> None:
        if step % 100 == 0 or step == total:
            now = time.monotonic()
            logger.info("%s step %d/%d loss %.4f (%.2f s/step)", model, step, total, loss, (now - last[0]) / 100)
            last[0] = now

    report = evaluate_segmentation(
        train, {"drive:test": test}, args.out, config, observers=observers, train_name="U-Net trained on DRIVE training (real)", progress=progress
    )
    wall = time.monotonic() - started
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    payload = {"command": command, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "wall_time_s": round(wall, 1), "threads": args.threads, "results": report.results, "config": report.config}
    write_json_atomic(args.results.with_suffix(".json"), payload)
    lines = [
        "# DRIVE: U-Net trained on the real training set",
        "",
        f"- command: `{command}`",
        f"- date (UTC): {payload['date']}; wall time {wall / 60:.1f} min on the shared 2-core CPU ({args.threads} torch threads),",
        "  including training (a resumed run counts only the time since the resume) and whole-image inference.",
        f"- schedule: {config.steps} steps, batch {config.batch_size}, {config.patch_size}x{config.patch_size} patches,"
        f" Adam lr {config.learning_rate} with cosine decay, MONAI UNet channels {config.channels}.",
        f"- preprocessing: {report.preprocessing}.",
        "",
        "| model | test | images | DSC mean (SD) | bAHD mean (SD), px | bAHD undefined |",
        "|---|---|---|---|---|---|",
    ]
    for row in report.results:
        lines.append(
            f"| {row['model']} | {row['test']} | {row['n_images']} | {row['dice_mean']:.3f} ({row['dice_sd']:.3f}) |"
            f" {row['bahd_mean']:.3f} ({row['bahd_sd']:.3f}) | {row['n_bahd_undefined']} |"
        )
    lines += ["", "Published reference: U-Net about 0.82 DSC on DRIVE test; second observer 0.79 against the first.", ""]
    write_text_atomic(args.results.with_suffix(".md"), "\n".join(lines))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
