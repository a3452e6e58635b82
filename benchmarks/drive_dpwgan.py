"""DP-WGAN on DRIVE training patches at patch- and image-level units, for a range of epsilons (seed 000's sweep).

Each run trains on patches of the green channel of ../shared/data/drive:training (the channel the
evaluation's preprocessing keeps), keeps its run directory under benchmarks/runs/drive_dpwgan/
(git-ignored) with ``--samples`` synthetic pairs in ``synthetic/data.npz`` beside a copy of its
privacy.json, and records its wall time and privacy report in
benchmarks/results/drive_dpwgan.md (+ .json). A finished run is reused, an unfinished one resumed.

Image-level units: DRIVE has only 20 training images, so the expected batch is ``--image-batch``
images (each contributing at most 8 patches per step) instead of 32 patches.

    python benchmarks/drive_dpwgan.py --max-steps 400 --patch-size 32 --patches-per-subject 200
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.fileio import write_json_atomic, write_text_atomic
from privmed.methods.dpwgan import DPWGAN
from privmed.methods.release import release_from_run
from privmed.runs import RunDirectory

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = str(ROOT.parent / "shared" / "data" / "drive") + ":training"


def green_channel(data: ImageDataset) -> ImageDataset:
    """The green channel of RGB fundus images (vessels have the most contrast there)."""
    if data.n_channels != 3:
        return data
    return dataclasses.replace(data, images=data.images[:, 1:2], name=f"{data.name}-green")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="DRIVE training split (a dataset ref)")
    parser.add_argument("--epsilons", nargs="+", default=["inf", "10", "8", "5", "2"], help="target epsilons ('inf' = non-private)")
    parser.add_argument("--units", nargs="+", default=["patch", "image"], choices=["patch", "image", "patient"])
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--patches-per-subject", type=int, default=1000)
    parser.add_argument("--max-steps", type=int, default=None, help="critic steps per run (default: --epochs epochs)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32, help="expected patches per batch at patch level")
    parser.add_argument("--image-batch", type=int, default=4, help="expected images per batch at image level")
    parser.add_argument("--base-channels", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--checkpoint-every", type=int, default=None, help="critic steps between checkpoints (default: an epoch)")
    parser.add_argument("--samples", type=int, default=500, help="synthetic pairs written per run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "drive_dpwgan")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "drive_dpwgan")
    return parser.parse_args()


def run_one(args: argparse.Namespace, data: ImageDataset, unit: str, epsilon: float, earlier: dict[str, float]) -> dict:
    """Train (or reuse / resume) one run; return its wall time and privacy report.

    A reused run keeps the wall time an earlier invocation recorded for it (``earlier``: run -> seconds).
    """
    run_dir = args.runs / f"{unit}_eps{'inf' if math.isinf(epsilon) else f'{epsilon:g}'}"
    run = RunDirectory(run_dir)
    state = run.load_checkpoint() if run.config_path.exists() else None
    start = time.monotonic()
    status = "trained"
    if state is not None and state.get("finished"):
        status = "reused"
    else:
        resume = run.config_path.exists()
        if resume:
            model = DPWGAN.from_run(run_dir)
            status = "resumed"
        else:
            model = DPWGAN(
                epsilon, unit=unit, patch_size=args.patch_size, patches_per_subject=args.patches_per_subject,
                epochs=args.epochs, max_steps=args.max_steps,
                batch_size=args.image_batch if unit != "patch" else args.batch_size,
                learning_rate=args.learning_rate, generator_channels=args.base_channels, critic_channels=args.base_channels,
                seed=args.seed, checkpoint_every=args.checkpoint_every, run_dir=run_dir, data_ref=args.data,
            )
        model.fit(data)
    seconds = time.monotonic() - start
    if status == "reused":
        seconds = earlier.get(os.path.relpath(run_dir, ROOT), math.nan)
    if not (run_dir / "synthetic" / "privacy.json").exists():
        release_from_run(run_dir, run_dir / "synthetic", n=args.samples, seed=args.seed)
    report = json.loads(run.privacy_path.read_text())
    print(f"{run_dir.name}: {status} in {seconds:.0f} s, epsilon {report['epsilon']} per {report['unit']}", flush=True)
    return {"run": os.path.relpath(run_dir, ROOT), "unit": unit, "status": status, "wall_seconds": round(seconds, 1), "privacy": report}


def markdown(command: str, date: str, args: argparse.Namespace, results: list[dict], total: float) -> str:
    lines = [
        "# DP-WGAN on DRIVE (seed 000 sweep, reduced schedule)",
        "",
        f"- command: `{command}`",
        f"- date: {date}; host: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, "
        f"{args.threads} threads",
        f"- data: {args.data}, green channel, {args.patch_size}x{args.patch_size} patches, {args.patches_per_subject} per image",
        f"- schedule: {args.max_steps or f'{args.epochs} epochs of'} critic steps per run, generator every 5, "
        f"networks {args.base_channels} base channels, RMSprop lr {args.learning_rate:g}; expected batch {args.batch_size} patches "
        f"(patch unit) or {args.image_batch} images x <= 8 patches (image unit)",
        f"- total wall time: {total / 60:.1f} min",
        "",
        "| run | unit | target epsilon | epsilon spent | delta | noise multiplier | sample rate | steps | units | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        report = result["privacy"]
        epsilon = report["epsilon"]
        spent = epsilon if isinstance(epsilon, str) else f"{epsilon:.3f}"
        noise = "-" if report["noise_multiplier"] is None else f"{report['noise_multiplier']:.3f}"
        target = Path(result["run"]).name.split("_eps")[1]
        lines.append(
            f"| {Path(result['run']).name} | {report['unit']} | {target} | {spent} | {report['delta']:.2e} | {noise} | "
            f"{report['sample_rate']:.4g} | {report['steps']} | {report['n_units']} | {result['wall_seconds']} |"
        )
    lines += [
        "",
        "Each run directory holds privacy.json (full report, with its notes), metrics.csv, sample grids per epoch and",
        "synthetic/data.npz. This is a reduced schedule fitted to the session (seed 000: 96x96 patches, 50 epochs,",
        "~1.4 days per GAN on a V100); the epsilons are exact for what was run, the image quality is not the paper's.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("PRIVMED_LEDGER", str(args.runs / "ledger.json"))
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data = green_channel(load(args.data))
    previous = args.results.with_suffix(".json")
    earlier = {}
    if previous.exists():
        earlier = {run["run"]: run["wall_seconds"] for run in json.loads(previous.read_text())["runs"] if run["status"] != "reused"}
    start = time.monotonic()
    results = []
    for unit in args.units:
        for text in args.epsilons:
            results.append(run_one(args, data, unit, float(text), earlier))
            total = time.monotonic() - start
            payload = {"command": command, "date": date, "args": {k: str(v) for k, v in vars(args).items()}, "total_seconds": total, "runs": results}
            write_json_atomic(args.results.with_suffix(".json"), payload)
            write_text_atomic(args.results.with_suffix(".md"), markdown(command, date, args, results, total))


if __name__ == "__main__":
    main()
