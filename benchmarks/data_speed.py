"""How long the data layer takes on the public data: reading DRIVE and PneumoniaMNIST, cutting patches.

Patch extraction is the seed-000 setting scaled to DRIVE: 1000 patches of 64x64 per subject from the
20 training images (half centred on vessels). Each step is timed ``--repeats`` times; the median is
reported.

    python benchmarks/data_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from privmed.data import extract_patches, load, load_splits

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "data_speed.md"


def _median_seconds(step: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--patches-per-subject", type=int, default=1000)
    args = parser.parse_args()

    drive = load(str(SHARED_DATA / "drive") + ":training")
    steps = {
        "load DRIVE training (20 RGB images 584x565, labels, masks)": lambda: load(str(SHARED_DATA / "drive") + ":training"),
        "load_splits PneumoniaMNIST (5856 images 28x28)": lambda: load_splits(str(SHARED_DATA / "pneumoniamnist.npz")),
        f"extract_patches DRIVE: 20 x {args.patches_per_subject} patches of {args.patch_size}x{args.patch_size}": lambda: extract_patches(
            drive, args.patch_size, args.patches_per_subject, seed=0
        ),
        "load phantom:train (16 vessel images 96x96)": lambda: load("phantom:train"),
        "load phantom-classes:train (512 images 28x28)": lambda: load("phantom-classes:train"),
    }
    rows = [(name, _median_seconds(step, args.repeats)) for name, step in steps.items()]

    command = "python " + " ".join(shlex.quote(a) for a in [f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    lines = [
        "# Data layer speed",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()} (shared CPU, other jobs running)",
        f"- median of {args.repeats} runs",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.2f} |" for name, seconds in rows],
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
