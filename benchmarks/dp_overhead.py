"""Cost of DP-SGD on the seed-000 WGAN critic step: privmed's engine vs Opacus 1.6, side by side.

One critic step = forward of a batch of real and generated pairs, backward, RMSprop step, WGAN
weight clipping, zeroing the gradients. Modes: ``nonprivate`` (plain autograd), ``privmed`` (DPGradient, automatic norm
strategy; generated rows are public), ``privmed-allrows`` (every row clipped, as Opacus does),
``privmed-ghost`` / ``privmed-materialize`` (one norm strategy forced), and Opacus's
``opacus-hooks``, ``opacus-functorch``, ``opacus-ew`` (expanded weights) and ``opacus-ghost``
(fast gradient clipping). All modes of one patch size run interleaved in one process (rotating
order, after warm-up) and the median is reported with its ratio to the non-private step. Before
timing, privmed's noise-free gradient is compared with Opacus's (hooks) on the same critic.

    python benchmarks/dp_overhead.py --sizes 32 64 96 --repeats 9 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import opacus
import torch
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import Tensor, nn

from privmed.fileio import write_json_atomic, write_text_atomic
from privmed.models.wgan import Critic, Generator
from privmed.privacy.dpsgd import DPGradient

MODES = ("nonprivate", "privmed", "privmed-allrows", "privmed-ghost", "privmed-materialize", "opacus-hooks", "opacus-functorch", "opacus-ew", "opacus-ghost")
DEFAULT_MODES = ("nonprivate", "privmed", "privmed-allrows", "privmed-ghost", "opacus-hooks", "opacus-functorch", "opacus-ew", "opacus-ghost")
LEARNING_RATE = 5e-5  # seed 000
WEIGHT_CLIP = 0.01  # seed 000's WGAN weight clipping
MAX_GRAD_NORM = 1.0  # seed 000's DP clipping bound
NOISE_MULTIPLIER = 1.0


class SignedScore(nn.Module):
    """WGAN critic loss per row: ``sign * score`` (sign -1 for real rows, +1 for generated ones)."""

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, scores: Tensor, signs: Tensor) -> Tensor:
        losses = signs * scores.squeeze(1)
        return losses.sum() if self.reduction == "sum" else losses.mean() if self.reduction == "mean" else losses


def clip_weights(module: nn.Module) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.clamp_(-WEIGHT_CLIP, WEIGHT_CLIP)


def make_step(mode: str, critic: nn.Module, batch: Tensor, n_real: int) -> Callable[[], None]:
    """One critic step of ``mode`` on ``batch`` (the first ``n_real`` rows real, the rest generated)."""
    signs = torch.cat([-torch.ones(n_real), torch.ones(len(batch) - n_real)])
    if mode == "nonprivate":
        optimizer = torch.optim.RMSprop(critic.parameters(), lr=LEARNING_RATE)

        def step() -> None:
            (SignedScore()(critic(batch), signs) / n_real).backward()
            optimizer.step()
            clip_weights(critic)
            optimizer.zero_grad(set_to_none=True)

        return step
    if mode.startswith("privmed"):
        variant = mode.partition("-")[2]
        strategy = variant if variant in ("ghost", "materialize") else "auto"
        engine = DPGradient(
            critic, max_grad_norm=MAX_GRAD_NORM, noise_multiplier=NOISE_MULTIPLIER, expected_batch_units=n_real, seed=0, norm_strategy=strategy
        )
        optimizer = torch.optim.RMSprop(engine.parameters, lr=LEARNING_RATE)
        public = torch.arange(n_real, len(batch)) if variant == "allrows" else torch.full((len(batch) - n_real,), -1)
        unit_ids = torch.cat([torch.arange(n_real), public])
        # Real rows: their own loss (the engine divides by the expected batch); generated rows: their mean.
        fake_scale = 1.0 if variant == "allrows" else 1.0 / max(len(batch) - n_real, 1)
        row_scale = torch.cat([torch.ones(n_real), torch.full((len(batch) - n_real,), fake_scale)])

        def step() -> None:
            with engine.capture():
                losses = SignedScore(reduction="none")(critic(batch), signs) * row_scale
            engine.backward(losses, unit_ids)
            optimizer.step()
            clip_weights(critic)
            optimizer.zero_grad(set_to_none=True)

        return step
    grad_sample_mode = mode.removeprefix("opacus-")
    if grad_sample_mode == "ghost":
        module = GradSampleModuleFastGradientClipping(critic, batch_first=True, loss_reduction="sum", max_grad_norm=MAX_GRAD_NORM, use_ghost_clipping=True)
        optimizer = DPOptimizerFastGradientClipping(
            torch.optim.RMSprop(module.parameters(), lr=LEARNING_RATE),
            noise_multiplier=NOISE_MULTIPLIER,
            max_grad_norm=MAX_GRAD_NORM,
            expected_batch_size=n_real,
            loss_reduction="sum",
        )
        criterion = DPLossFastGradientClipping(module, optimizer, SignedScore(reduction="sum"), loss_reduction="sum")

        def ghost_step() -> None:
            criterion(module(batch), signs).backward()
            optimizer.step()
            clip_weights(critic)
            optimizer.zero_grad(set_to_none=True)

        return ghost_step
    module = prepare_module(critic, grad_sample_mode, batch_first=True, loss_reduction="sum")
    optimizer = DPOptimizer(
        torch.optim.RMSprop(module.parameters(), lr=LEARNING_RATE),
        noise_multiplier=NOISE_MULTIPLIER,
        max_grad_norm=MAX_GRAD_NORM,
        expected_batch_size=n_real,
        loss_reduction="sum",
    )

    def opacus_step() -> None:
        SignedScore()(module(batch), signs).backward()
        optimizer.step()
        clip_weights(critic)
        optimizer.zero_grad(set_to_none=True)  # also frees Opacus's per-sample gradients

    return opacus_step


def deviation_from_opacus(template: nn.Module, batch: Tensor, n_real: int) -> float:
    """Max |privmed - Opacus hooks| / max |Opacus| of the noise-free clipped gradient, every row private."""
    signs = torch.cat([-torch.ones(n_real), torch.ones(len(batch) - n_real)])
    critic = copy.deepcopy(template)
    module = prepare_module(critic, "hooks", batch_first=True, loss_reduction="sum")
    optimizer = DPOptimizer(torch.optim.SGD(module.parameters(), lr=0.0), noise_multiplier=0.0, max_grad_norm=MAX_GRAD_NORM, expected_batch_size=1, loss_reduction="sum")
    SignedScore()(module(batch), signs).backward()
    optimizer.pre_step()
    reference = [p.grad for p in critic.parameters()]
    ours = copy.deepcopy(template)
    engine = DPGradient(ours, max_grad_norm=MAX_GRAD_NORM, noise_multiplier=0.0, expected_batch_units=1.0)
    with engine.capture():
        losses = SignedScore(reduction="none")(ours(batch), signs)
    engine.backward(losses, torch.arange(len(batch)))
    scale = max(float(r.abs().max()) for r in reference)
    return max(float((p.grad - r).abs().max()) for p, r in zip(ours.parameters(), reference)) / scale


def benchmark_size(size: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(size)
    generator = Generator(image_size=size, base_channels=args.base_channels)
    with torch.no_grad():
        fake = generator(torch.randn(args.batch_size, generator.latent_dim))
    batch = torch.cat([torch.rand(args.batch_size, 2, size, size), fake])
    template = Critic(image_size=size, base_channels=args.base_channels)
    deviation = deviation_from_opacus(template, batch, args.batch_size)
    steps = {mode: make_step(mode, copy.deepcopy(template), batch, args.batch_size) for mode in args.modes}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):
        order = args.modes[repeat % len(args.modes) :] + args.modes[: repeat % len(args.modes)]
        for mode in order:
            start = time.perf_counter()
            steps[mode]()
            times[mode].append(time.perf_counter() - start)
        print(f"  size {size}: repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    base = medians.get("nonprivate")
    return {
        "size": size,
        "critic_parameters": sum(p.numel() for p in template.parameters()),
        "deviation_from_opacus_hooks": deviation,
        "median_seconds": medians,
        "ratio_to_nonprivate": {mode: (m / base if base else None) for mode, m in medians.items()},
        "all_seconds": times,
    }


def markdown(results: list[dict], args: argparse.Namespace, command: str, started: str, loads: tuple) -> str:
    lines = [
        "# DP-SGD overhead on the seed-000 WGAN critic step",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {started} (UTC). torch {torch.__version__}, opacus {opacus.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores, {args.threads} torch threads.",
        "",
        f"Step: critic forward of {args.batch_size} real + {args.batch_size} generated {2}-channel pairs in one batch, backward, "
        f"RMSprop (lr {LEARNING_RATE}), weight clipping +-{WEIGHT_CLIP}; DP: clip {MAX_GRAD_NORM}, noise multiplier {NOISE_MULTIPLIER}. "
        f"Critic `Critic(image_size, base_channels={args.base_channels}, norm='group')`. privmed clips the real rows only "
        "(generated rows are public), privmed-allrows and Opacus clip every row. "
        f"Median of {args.repeats} interleaved repeats after {args.warmup} warm-up steps per mode.",
        "",
        f"The machine's 2 cores were shared with other developers' jobs: load average {loads[0]:.2f} at the start, "
        f"{loads[1]:.2f} at the end, so single timings are noisy; the medians and ratios of one size were taken side by side.",
        "",
        "| size | critic params | mode | median s/step | x non-private |",
        "|---:|---:|---|---:|---:|",
    ]
    for result in results:
        for mode, seconds in result["median_seconds"].items():
            ratio = result["ratio_to_nonprivate"][mode]
            lines.append(f"| {result['size']} | {result['critic_parameters']:,} | {mode} | {seconds:.3f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "Noise-free clipped gradient, privmed vs Opacus hooks (every row private), max abs difference / max abs value:", ""]
    lines += [f"- {r['size']}x{r['size']}: {r['deviation_from_opacus_hooks']:.1e}" for r in results]
    fastest = {r["size"]: min((m for m in r["median_seconds"] if m != "nonprivate"), key=r["median_seconds"].get) for r in results}
    lines += ["", "Fastest DP mode per size: " + ", ".join(f"{size}: {mode}" for size, mode in fastest.items()) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96], help="patch sizes (pixels per side)")
    parser.add_argument("--repeats", type=int, default=9, help="timed steps per mode and size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per mode and size first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=32, help="real rows (and as many generated rows) per step")
    parser.add_argument("--base-channels", type=int, default=64, help="critic width (seed-000-sized: 64)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(DEFAULT_MODES), help="what to time ('nonprivate' is the baseline)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "dp_overhead", help="results path without suffix (.md and .json are written)")
    args = parser.parse_args(argv)
    command = "python benchmarks/dp_overhead.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()[0]
    results = []
    for size in args.sizes:
        result = benchmark_size(size, args)
        results.append(result)
        print(f"size {size}: " + ", ".join(f"{m} {s:.3f}s ({result['ratio_to_nonprivate'][m] or 0:.2f}x)" for m, s in result["median_seconds"].items()), flush=True)
    report = markdown(results, args, command, started, (load_start, os.getloadavg()[0]))
    print(report)
    write_text_atomic(args.output.with_suffix(".md"), report)
    write_json_atomic(
        args.output.with_suffix(".json"),
        {"command": command, "date_utc": started, "torch": torch.__version__, "opacus": opacus.__version__, "threads": args.threads, "results": results},
    )


if __name__ == "__main__":
    main()
