"""The cost of secure DP noise (``--secure-rng``): seconds per noise draw, secure vs torch's generator.

DP-SGD: the noise of one step of seed 000's critic at 64x64 (``Critic(2, 64, 64)``, 6.96M
parameters), drawn by the engine itself (``DPGradient.backward`` on an empty batch: noise only), with
the default seeded generator and with ``secure_rng=True``; for scale, one full DP critic step
(batch 32 real + 32 generated rows) with the default noise. Laplace: the noise of one pixel-LDP
release of 10,000 28x28 images (7.84M values). Each figure is the median of ``--repeats`` runs after
a warm-up, wall clock and process CPU time (the machine is shared: CPU time is the steadier figure).

    .venv/bin/python benchmarks/secure_rng.py --repeats 7 --threads 1
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
from collections.abc import Callable
from pathlib import Path

import torch

from privmed.fileio import write_text_atomic
from privmed.models.wgan import Critic
from privmed.privacy.dpsgd import DPGradient
from privmed.privacy.mechanisms import LaplaceMechanism

RESULTS = Path(__file__).resolve().parent / "results" / "secure_rng.md"
NOISE_MULTIPLIER, BATCH = 0.9, 32


def _time(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU seconds of ``action`` over ``repeats`` runs after one warm-up."""
    action()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _noise_only(secure: bool) -> Callable[[], object]:
    critic = Critic(2, 64, 64)
    engine = DPGradient(critic, max_grad_norm=1.0, noise_multiplier=NOISE_MULTIPLIER, expected_batch_units=BATCH, secure_rng=secure)
    empty, no_units = torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return lambda: engine.backward(empty, no_units)


def _critic_step() -> Callable[[], object]:
    critic = Critic(2, 64, 64)
    engine = DPGradient(critic, max_grad_norm=1.0, noise_multiplier=NOISE_MULTIPLIER, expected_batch_units=BATCH, seed=0)
    rows = torch.rand(2 * BATCH, 2, 64, 64)
    unit_ids = torch.cat([torch.arange(BATCH), torch.full((BATCH,), -1)])

    def step() -> None:
        with engine.capture():
            scores = critic(rows).squeeze(1)
        engine.backward(torch.cat([-scores[:BATCH], scores[BATCH:] / BATCH]), unit_ids)

    return step


def _laplace(secure: bool) -> Callable[[], object]:
    mechanism = LaplaceMechanism(784.0, 8.0, secure_rng=secure) if secure else LaplaceMechanism(784.0, 8.0, torch.Generator().manual_seed(0))
    images = torch.rand(10_000, 1, 28, 28)
    return lambda: mechanism.add_noise(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    default_noise = _time(_noise_only(False), args.repeats)
    secure_noise = _time(_noise_only(True), args.repeats)
    step = _time(_critic_step(), max(3, args.repeats // 2))
    default_laplace = _time(_laplace(False), args.repeats)
    secure_laplace = _time(_laplace(True), args.repeats)
    rows = [
        ("DP-SGD Gaussian noise, 6.96M-parameter critic", default_noise, secure_noise),
        ("Laplace noise, 10,000 x 28x28 values (pixel LDP)", default_laplace, secure_laplace),
    ]
    lines = [
        "# Secure DP noise (`--secure-rng`): cost against torch's generator",
        "",
        f"- command: `python {shlex.join(['benchmarks/secure_rng.py', *sys.argv[1:]])}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        (
            f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch thread(s); "
            f"load average {os.getloadavg()[0]:.1f} at the end (shared machine: CPU seconds are the steadier figure)"
        ),
        (
            f"- median of {args.repeats} runs after a warm-up; secure = AES-256-CTR keystream (cryptography), 53-bit uniforms, "
            "Box-Muller / inverse CDF in float64"
        ),
        "",
        "| noise | default wall s | secure wall s | default CPU s | secure CPU s | ratio (CPU) | extra CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (d_wall, d_cpu), (s_wall, s_cpu) in rows:
        lines.append(f"| {name} | {d_wall:.4f} | {s_wall:.4f} | {d_cpu:.4f} | {s_cpu:.4f} | {s_cpu / d_cpu:.2f}x | {s_cpu - d_cpu:.4f} |")
    extra = secure_noise[1] - default_noise[1]
    lines += [
        "",
        (
            f"One full DP critic step at 64x64 (batch {BATCH} real + {BATCH} generated rows, default noise) takes "
            f"{step[0]:.3f} s wall, {step[1]:.3f} s CPU: the secure noise adds {extra:.3f} CPU s, "
            f"{100 * extra / step[1]:.1f}% of a step."
        ),
        "",
    ]
    write_text_atomic(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
