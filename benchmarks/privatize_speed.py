"""Privatization throughput on 28x28 images: CADP, DP-GLOW and pixel LDP, images per second.

The flows are the ``privmed train flow`` defaults (2 levels, depth 4, 32 hidden channels), a
conditional INN with GIN couplings for CADP (seed 002's MNIST choice) and a Glow for DP-GLOW. Their
weights are random: privatization costs one encode and one decode whatever the weights are. Each
method privatizes the same batch ``--repeats`` times after one warm-up; the median is reported.

    .venv/bin/python benchmarks/privatize_speed.py --images 4096 --repeats 5 --threads 1 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from privmed.data.dataset import ImageDataset
from privmed.fileio import write_text_atomic
from privmed.methods.cadp import CADP
from privmed.methods.dpglow import DPGLOW
from privmed.methods.flow_training import encode_all
from privmed.methods.local_dp import LaplacePrivatizer
from privmed.methods.pixel_ldp import PixelLDP
from privmed.models.flows import ConditionalINN, Glow

RESULTS = Path(__file__).resolve().parent / "results" / "privatize_speed.md"


def _images(n: int, seed: int) -> ImageDataset:
    rng = np.random.default_rng(seed)
    images = np.round(rng.uniform(size=(n, 1, 28, 28)) * 255).astype(np.float32) / 255
    ids = np.array([f"img{i}" for i in range(n)])
    return ImageDataset(images=images, subjects=ids, sources=ids, labels=np.arange(n) % 2, class_names=("normal", "pneumonia"), name="bench")


def _time(method: LaplacePrivatizer, data: ImageDataset, repeats: int, batch_size: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each run (CPU time shows what a core would do if not shared)."""
    method.privatize(data.subset(np.arange(min(len(data), batch_size))), seed=0)
    wall, cpu = [], []
    for repeat in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        method.privatize(data, seed=repeat, batch_size=batch_size)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()], help="torch thread counts to measure")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = _images(args.images, seed=0)
    cinn = ConditionalINN((1, 28, 28), n_classes=2, levels=2, depth=4, hidden_channels=32, coupling="gin").eval()
    glow = Glow((1, 28, 28), levels=2, depth=4, hidden_channels=32).eval()
    box_latents = encode_all(glow, torch.from_numpy(_images(512, seed=1).images))
    methods: dict[str, LaplacePrivatizer] = {
        "CADP (cINN, GIN)": CADP(cinn, epsilon=1.0, clip=0.5),
        "DP-GLOW (Glow)": DPGLOW(glow, epsilon=784.0).fit(box_latents),
        "pixel LDP": PixelLDP(epsilon=784.0),
    }
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, method in methods.items():
            wall, cpu = _time(method, data, args.repeats, args.batch_size)
            median, median_cpu = statistics.median(wall), statistics.median(cpu)
            rows.append((name, threads, median, args.images / median, args.images / median_cpu))
            print(f"{name}, {threads} thread(s): {args.images / median:,.0f} images/s wall, {args.images / median_cpu:,.0f} images per CPU-second", flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    lines = [
        "# Privatization throughput, 28x28 grayscale images",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.1f} at the end (the CPU is shared with other developers' jobs: figures are lower bounds)",
        f"- {args.images} images privatized per run in batches of {args.batch_size}, median of {args.repeats} runs after a warm-up",
        "- flows: `privmed train flow` defaults (2 levels x depth 4, 32 hidden channels), random weights",
        "",
        "| method | torch threads | images/s (wall clock) | images per CPU-second | seconds per run (wall) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {threads} | {rate:,.0f} | {cpu_rate:,.0f} | {median:.3f} |" for name, threads, median, rate, cpu_rate in rows],
        "",
        "Target: at least 1000 images/s for each method. Images per CPU-second is the work done per second of CPU",
        "time the process got (summed over its threads): with one thread, the throughput of a core that is not shared.",
        "",
    ]
    write_text_atomic(args.out, "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
