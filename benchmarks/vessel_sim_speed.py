"""Benchmark: how fast the public vessel simulator draws image + label pairs (96x96 and DRIVE's 584x565).

Writes ``benchmarks/results/vessel_sim_speed.md`` with the command, date and machine load.

    nice -n 10 .venv/bin/python benchmarks/vessel_sim_speed.py
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
import time
from pathlib import Path

from privmed.data.vessel_sim import simulate_vessels
from privmed.fileio import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    rows = []
    for size, n in ((96, 2000), ((584, 565), 40)):
        started = time.perf_counter()
        data = simulate_vessels(n, size, seed=0)
        seconds = time.perf_counter() - started
        fraction = float(data.segmentations[data.masks > 0].mean())
        rows.append(f"| {data.spatial_shape[0]}x{data.spatial_shape[1]} | {n} | {seconds:.1f} | {n / seconds * 60:,.0f} | {fraction:.3f} |")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# Vessel simulator speed",
        "",
        f"- command: `{command}`; date (UTC) {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; one process on the shared",
        f"  2-core CPU, load average {os.getloadavg()[0]:.1f} at the end (other engineers' jobs).",
        "",
        "| image size | images | seconds | images per minute | vessel fraction in the FOV |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "At 96 px only the largest trunks are wider than the 1-px resolution limit, hence the low vessel fraction.",
        "",
    ]
    write_text_atomic(ROOT / "benchmarks" / "results" / "vessel_sim_speed.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
