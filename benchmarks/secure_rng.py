"""The cost of secret DP randomness (the default): noise draws and whole DP critic steps, against torch's generator.

DP-SGD: the noise of one step of seed 000's critic at 64x64 (``Critic(2, 64, 64)``, 6.96M parameters),
drawn by the engine (``DPGradient.backward`` on an empty batch: noise only) from the secret AES-256-CTR
stream (the default), from the seeded stream of a ``reproducible`` run, and, for reference, from torch's
float32 ``normal_`` (the seeded default before issue 12; its tails stop at about 5.77 standard deviations).
Then one full DP critic step (batch 32 real + 32 generated rows) with each noise source: noise-free
(the floor), secret with the next step's noise drawn in a background thread (the default), secret drawn
in turn, and torch's float32 ``normal_``. Laplace: the noise of one pixel-LDP release of 10,000 28x28
images (7.84M values), secret stream against torch's ``exponential_`` (the old default). Each figure is
the median of ``--repeats`` rounds after a warm-up (the variants of a table take turns in each round), wall clock and process CPU time (all threads);
results/secure_rng.md and .json.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/secure_rng.py --repeats 7 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
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
Timing = tuple[float, float]


def _time(actions: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Median wall-clock and process-CPU seconds of each action over ``repeats`` rounds after one warm-up.

    The actions take turns within each round, so a change in the machine's load affects them alike.
    """
    for action in actions.values():
        action()
    wall: dict[str, list[float]] = {name: [] for name in actions}
    cpu: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            action()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in actions}


def _torch_float32_noise(engine: DPGradient) -> None:
    """Make ``engine`` draw torch's seeded float32 ``normal_`` instead of its AES stream (the old default, for reference)."""
    generator = torch.Generator().manual_seed(0)
    std = engine.noise_multiplier * engine.max_grad_norm / engine.expected_batch_units

    def draw() -> list[torch.Tensor]:
        flat = torch.empty(sum(p.numel() for p in engine.parameters)).normal_(0.0, std, generator=generator)
        return [piece.view(p.shape) for piece, p in zip(flat.split([p.numel() for p in engine.parameters]), engine.parameters)]

    engine._draw = draw  # type: ignore[method-assign]


def _engine(critic: Critic, source: str) -> DPGradient:
    noise = 0.0 if source == "none" else NOISE_MULTIPLIER
    seed = 0 if source == "reproducible" else None
    engine = DPGradient(
        critic, max_grad_norm=1.0, noise_multiplier=noise, expected_batch_units=BATCH, seed=seed,
        prefetch=source in ("secret, drawn ahead", "none"),
    )
    if source == "torch float32":
        engine.prefetch = False
        _torch_float32_noise(engine)
    return engine


def _noise_only(source: str) -> Callable[[], object]:
    engine = _engine(Critic(2, 64, 64), source)
    empty, no_units = torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return lambda: engine.backward(empty, no_units)


def _critic_step(source: str) -> Callable[[], object]:
    critic = Critic(2, 64, 64)
    engine = _engine(critic, source)
    rows = torch.rand(2 * BATCH, 2, 64, 64)
    unit_ids = torch.cat([torch.arange(BATCH), torch.full((BATCH,), -1)])

    def step() -> None:
        with engine.capture():
            scores = critic(rows).squeeze(1)
        engine.backward(torch.cat([-scores[:BATCH], scores[BATCH:] / BATCH]), unit_ids)

    return step


def _laplace(secret: bool) -> Callable[[], object]:
    images = torch.rand(10_000, 1, 28, 28)
    if secret:
        mechanism = LaplaceMechanism(784.0, 8.0)
        return lambda: mechanism.add_noise(images)
    generator, scale = torch.Generator().manual_seed(0), 784.0 / 8.0

    def old() -> torch.Tensor:  # the mechanism before issue 12: difference of two float32 exponentials
        positive = torch.empty(images.shape).exponential_(generator=generator)
        negative = torch.empty(images.shape).exponential_(generator=generator)
        return images + (positive - negative) * scale

    return old


def _percent(extra: float, base: float) -> str:
    return f"{100 * extra / base:+.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    draws = _time({source: _noise_only(source) for source in ("torch float32", "secret, drawn in turn", "reproducible")}, args.repeats)
    steps = _time({source: _critic_step(source) for source in ("none", "secret, drawn ahead", "secret, drawn in turn", "torch float32")}, args.repeats)
    laplace = _time({"torch exponential_ float32 (old default)": _laplace(False), "secret stream (default)": _laplace(True)}, args.repeats)
    load_after = os.getloadavg()[0]
    floor = steps["none"]
    extra = draws["secret, drawn in turn"][1] - draws["torch float32"][1]
    lines = [
        "# Secret DP randomness (the default since issue 12): cost against torch's generator",
        "",
        f"- command: `nice -n 10 env OMP_NUM_THREADS=1 python {shlex.join(['benchmarks/secure_rng.py', *sys.argv[1:]])}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        (
            f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch thread(s) "
            f"(+ the one noise thread when the next step's noise is drawn ahead); load average {load_before:.1f} before, "
            f"{load_after:.1f} after (a shared machine: other jobs ran beside this one)"
        ),
        (
            f"- median of {args.repeats} rounds after a warm-up, the variants of a table taking turns in each round; "
            "secret = AES-256-CTR keystream (cryptography) keyed by os.urandom, "
            "52-bit uniforms refined below 2^-32, Box-Muller in float64, cast to float32; reproducible = the same keyed by the seed"
        ),
        "",
        "## Drawing one step's DP-SGD noise, 6.96M-parameter critic (64x64)",
        "",
        "| noise source | wall s | CPU s |",
        "|---|---:|---:|",
        *(f"| {source} | {wall:.4f} | {cpu:.4f} |" for source, (wall, cpu) in draws.items()),
        "",
        f"## One DP critic step at 64x64 (batch {BATCH} real + {BATCH} generated rows)",
        "",
        "| noise | wall s | CPU s | wall vs noise-free | CPU vs noise-free |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {
        "none": "noise-free (noise multiplier 0: the floor)",
        "secret, drawn ahead": "secret, next step's noise drawn in a background thread (the default)",
        "secret, drawn in turn": "secret, drawn in turn (prefetch=False)",
        "torch float32": "torch float32 normal_, seeded (the old default; tails cut at 5.77 sd)",
    }
    for source, (wall, cpu) in steps.items():
        lines.append(f"| {names[source]} | {wall:.3f} | {cpu:.3f} | {_percent(wall - floor[0], floor[0])} | {_percent(cpu - floor[1], floor[1])} |")
    lines += [
        "",
        "## One pixel-LDP release: Laplace noise on 10,000 x 28x28 values",
        "",
        "| noise source | wall s | CPU s |",
        "|---|---:|---:|",
        *(f"| {source} | {wall:.4f} | {cpu:.4f} |" for source, (wall, cpu) in laplace.items()),
        "",
        (
            f"Secret noise against torch's float32 normal_ (the old default), from the noise-only rows: "
            f"{extra:+.4f} CPU s per step, {_percent(extra, floor[1])} of a noise-free 64x64 DP critic step ({floor[1]:.3f} CPU s). "
            f"All of the noise, secret: {draws['secret, drawn in turn'][1]:.4f} CPU s, {_percent(draws['secret, drawn in turn'][1], floor[1])} "
            "of that step; drawn ahead (the default), it runs in the noise thread while the step computes, so on a machine with a "
            "free core it leaves the step's wall-clock time unchanged (the step rows measure that, within this machine's load noise)."
        ),
        "",
    ]
    write_text_atomic(args.out, "\n".join(lines))
    rows = {
        "command": lines[2].removeprefix("- command: "), "load_average": [load_before, load_after], "repeats": args.repeats,
        "noise_draw": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in draws.items()},
        "critic_step": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in steps.items()},
        "laplace_release": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in laplace.items()},
        "extra_cpu_s_vs_torch_float32": extra, "extra_percent_of_step_cpu": 100 * extra / floor[1],
    }
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
