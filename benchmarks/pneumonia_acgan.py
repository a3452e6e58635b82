"""AC-GAN on PneumoniaMNIST at several epsilons: the privacy spent, wall time, and utility on real data.

For each epsilon the AC-GAN (seed 001 architecture, narrowed by ``--base-channels``) trains on the
4708 training images (privacy unit: image) for ``--steps`` discriminator steps; then a small CNN is
trained on ``--n-synthetic`` generated images and tested on the 624 real test images (ROC AUC of
"pneumonia", 95% BCa interval). A CNN trained on the real training images gives the reference. The
schedule is modest on purpose (a few minutes of shared CPU per epsilon), far from convergence.

    python benchmarks/pneumonia_acgan.py --epsilons inf 10 1 --steps 300
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.evaluate.classifier import evaluate_classifier
from privmed.methods.acgan import ACGAN

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "pneumoniamnist.npz"
RESULTS = REPO / "benchmarks" / "results" / "pneumonia_acgan.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[float("inf"), 10.0, 1.0])
    parser.add_argument("--steps", type=int, default=300, help="discriminator steps per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--n-synthetic", type=int, default=2000)
    parser.add_argument("--classifier-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the AC-GAN runs (networks, batches, noise)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", *sys.argv]).replace(str(REPO) + "/", "")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    train = load(f"{DATA}:train")
    test = load(f"{DATA}:test")

    def utility(data: ImageDataset, seed: int = 0) -> str:
        """ROC AUC [95% CI] on the real test images of a CNN trained on ``data``."""
        metrics, _ = evaluate_classifier(data, test, epochs=args.classifier_epochs, seed=seed, n_resamples=1000)
        return f"{metrics.roc_auc:.3f} [{metrics.roc_auc_low:.3f}, {metrics.roc_auc_high:.3f}]"

    rows = [f"| real training images (reference) | - | - | - | - | - | {utility(train)} |"]
    with tempfile.TemporaryDirectory() as scratch:
        for epsilon in args.epsilons:
            start = time.perf_counter()
            model = ACGAN(
                epsilon, max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                generator_channels=args.base_channels, discriminator_channels=args.base_channels,
                seed=args.seed, run_dir=Path(scratch) / f"eps-{epsilon}",
            ).fit(train)
            seconds = time.perf_counter() - start
            report = model.privacy_report()
            synthetic = model.sample(args.n_synthetic, seed=1)
            noise = "-" if report.noise_multiplier is None else f"{report.noise_multiplier:.3f}"
            rows.append(
                f"| AC-GAN, target epsilon {epsilon:g} | {report.epsilon:.3f} | {report.delta:.2e} | {noise} | "
                f"{report.sample_rate:.4f} x {report.steps} | {seconds:.0f} | {utility(synthetic)} |"
            )
            print(rows[-1], flush=True)
    text = "\n".join([
        "# AC-GAN on PneumoniaMNIST (seed 001 architecture, DP-SGD on the discriminator)",
        "",
        f"Command: `{command}`  ",
        f"Date: {started}; machine: {platform.machine()}, {torch.get_num_threads()} torch threads on a shared CPU "
        "(wall times include other developers' load).",
        "",
        f"Training: {len(train)} PneumoniaMNIST training images (unit: image), {args.steps} discriminator steps, "
        f"expected batch {args.batch_size}, base width {args.base_channels}, Adam lr {args.learning_rate:g}, seed {args.seed}. "
        f"Utility: a small CNN ({args.classifier_epochs} epochs) trained on {args.n_synthetic} synthetic images "
        f"(classes by the run's sampling frequencies: uniform for DP runs) and tested on the {len(test)} real test images.",
        "Epsilon, delta, noise multiplier and steps are read from each run's privacy.json.",
        "",
        "| release | epsilon (per image) | delta | noise multiplier | sample rate x steps | train seconds | test ROC AUC [95% CI] |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
