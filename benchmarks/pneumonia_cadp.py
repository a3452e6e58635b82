"""Seed 002, Fig. 4 on PneumoniaMNIST: a classifier trained on CADP-privatized images vs a DP-SGD classifier.

Rows (all tested on the real PneumoniaMNIST test split, 624 images):

- ``nonprivate``: the CNN trained on the private half of the training images, no privacy;
- ``dpsgd``: the same CNN trained on the private half with DP-SGD at (epsilon, delta) per image;
- ``cadp``: the same CNN trained (non-privately: post-processing) on the private half after CADP with
  per-image pure epsilon; the conditional flow is trained on the public half only.

Every epsilon in the table is the one the method's privacy report states (``privmed.privacy``).

    .venv/bin/python benchmarks/pneumonia_cadp.py --methods nonprivate dpsgd cadp
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pneumonia_common import DEFAULT_DATA, RESULTS_DIR, RUNS_DIR, ResultsFile, load_pneumonia, public_private_split

from privmed.data.dataset import ImageDataset
from privmed.evaluate.classifier import ClassifierMetrics, evaluate_classifier, score_classifier
from privmed.methods.cadp import CADP
from privmed.methods.dpsgd_classifier import DPSGDClassifier
from privmed.methods.flow_training import TrainedFlow, load_trained_flow

COLUMNS = [
    ("method", "method"),
    ("epsilon_target", "target epsilon"),
    ("epsilon", "reported epsilon"),
    ("delta", "delta"),
    ("unit", "unit"),
    ("epochs", "epochs"),
    ("accuracy", "accuracy"),
    ("roc_auc", "ROC AUC"),
    ("auc_ci", "95% CI"),
    ("details", "details"),
    ("wall_s", "wall time (s)"),
]


def _row(method: str, target: float | None, metrics: ClassifierMetrics, wall: float, **extra: object) -> dict[str, object]:
    return {
        "method": method,
        "epsilon_target": target,
        "accuracy": metrics.accuracy,
        "roc_auc": metrics.roc_auc,
        "roc_auc_low": metrics.roc_auc_low,
        "roc_auc_high": metrics.roc_auc_high,
        "auc_ci": f"[{metrics.roc_auc_low:.3f}, {metrics.roc_auc_high:.3f}]",
        "epochs": metrics.epochs,
        "wall_s": round(wall, 1),
        **extra,
    }


def run_nonprivate(private: ImageDataset, test: ImageDataset, args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    metrics, _ = evaluate_classifier(private, test, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    return _row("nonprivate", None, metrics, time.perf_counter() - start, epsilon=float("inf"), unit="image",
                details=f"CNN, {args.epochs} epochs, batch {args.batch_size}, Adam")


def run_dpsgd(private: ImageDataset, test: ImageDataset, epsilon: float, args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    method = DPSGDClassifier(
        epsilon, epochs=args.epochs, batch_size=args.dp_batch_size, max_grad_norm=args.max_grad_norm, seed=args.seed
    ).fit(private)
    metrics, _ = score_classifier(method.network_, test, model="cnn", n_train=len(private), epochs=args.epochs, seed=args.seed)
    report = method.privacy_report()
    return _row(
        "dpsgd", epsilon, metrics, time.perf_counter() - start,
        epsilon=report.epsilon, delta=report.delta, unit=report.unit,
        details=f"sigma {report.noise_multiplier:.3f}, q {report.sample_rate:.3f}, {report.steps} steps, C {args.max_grad_norm}",
    )


def run_cadp(private: ImageDataset, test: ImageDataset, flow: TrainedFlow, epsilon: float, args: argparse.Namespace) -> dict[str, object]:
    start = time.perf_counter()
    clip = min(epsilon / 2, 4.0)
    method = CADP(flow.flow, epsilon, clip=clip)
    released = method.privatize(private, seed=args.seed)
    report = method.privacy_report()
    metrics, _ = evaluate_classifier(released, test, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    return _row(
        "cadp", epsilon, metrics, time.perf_counter() - start,
        epsilon=report.epsilon, delta=report.delta, unit=report.unit,
        details=f"clip S {clip:g}, Laplace scale {report.laplace_scale:.3g} on {flow.flow.latent_dim} latent dims; CNN as non-private",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--methods", nargs="+", default=["nonprivate", "dpsgd", "cadp"], choices=["nonprivate", "dpsgd", "cadp"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[0.2, 0.5, 1.0, 2.0, 5.0, 10.0])
    parser.add_argument("--epochs", type=int, default=30, help="classifier epochs (all rows)")
    parser.add_argument("--batch-size", type=int, default=64, help="non-private batch size")
    parser.add_argument("--dp-batch-size", type=int, default=235, help="DP-SGD expected batch (q ~ 0.1 of 2354 images)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "pneumonia_cadp")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)

    train, test = load_pneumonia(args.data)
    public, private = public_private_split(train, seed=args.seed)
    results = ResultsFile(
        args.out,
        "PneumoniaMNIST: classifier on CADP-privatized images vs DP-SGD classifier (seed 002, Fig. 4 analogue)",
        COLUMNS,
        key=("method", "epsilon_target", "epochs"),
    )
    results.notes = [
        f"Training images split at random (seed {args.seed}): {len(public)} public (flow training only), "
        f"{len(private)} private (what every row trains on). Test: the real test split ({len(test)} images).",
        "Same GroupNorm CNN (privmed.models.classifiers.SmallCNN) in every row; AUC CI: BCa bootstrap, 2000 resamples.",
        "CADP: per-image pure epsilon (delta 0), class label public; DP-SGD: (epsilon, delta) per image, RDP accountant, "
        "delta = 1/(N+1).",
    ]
    for method in args.methods:
        if method == "nonprivate":
            results.put(run_nonprivate(private, test, args))
        elif method == "dpsgd":
            for epsilon in args.epsilons:
                results.put(run_dpsgd(private, test, epsilon, args))
        elif method == "cadp":
            flow = load_trained_flow(RUNS_DIR / "cinn")
            for epsilon in args.epsilons:
                results.put(run_cadp(private, test, flow, epsilon, args))
    results.write()


if __name__ == "__main__":
    main()
