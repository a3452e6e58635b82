"""PneumoniaMNIST frontier: which DP release trains a classifier nearly as well as DP-SGD on the data itself?

All 4708 training images are private (unit: image, delta = 1e-5 <= 1/(10 N)); the 524 validation images
serve every choice made by looking at results (``--validate``); the 624 test images are scored once per row.
Every row trains the same classifier (privmed's GroupNorm SmallCNN, 30 epochs, Adam 1e-3, batch 64) on its
release and reports test ROC AUC with a BCa interval. Rows:

- ``real``: the classifier on the real training images (no privacy);
- ``dpsgd-1``, ``dpsgd-8``: the classifier trained directly with DP-SGD (the reference a release must beat);
- ``dpmerf-{0.5,1,2,8,inf}``: the mean-embedding release (``privmed.methods.dpmerf``), 4708 images drawn;
- ``acgan-new-{1,8}``: the AC-GAN with Bie et al.'s recipe (not implemented yet: listed as not run);
- ``acgan-seed001-1``: the AC-GAN of seed 001 at ``benchmarks/pneumonia_acgan.py``'s schedule;
- ``label-only``: uniform-noise images carrying the class balance of the epsilon-1 release (a control).

Image releases also get FID/KID (one offline ``DomainEncoder`` trained on the real training images, as in
``pneumonia_acgan.py``), a real-vs-synthetic AUC (the SmallCNN, 3 epochs, 70/30 split) and the strongest
membership attack of ``privmed.evaluate.attacks.run_attacks`` (members: training images; non-members:
validation images; reference: test images). Finished rows are cached in the results JSON and skipped on a
rerun (``--redo ROW`` recomputes one), so a killed run resumes.

    nice -n 10 python benchmarks/pneumonia_frontier.py                 # every row
    nice -n 10 python benchmarks/pneumonia_frontier.py --validate '{"steps": 1000}' --tag steps1000
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pneumonia_common import DEFAULT_DATA, RESULTS_DIR, RUNS_DIR, ResultsFile, command_line
from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.data.grids import save_pair_grid
from privmed.evaluate.attacks import AttackEmbedding, run_attacks
from privmed.evaluate.classifier import evaluate_classifier, score_classifier
from privmed.evaluate.diversity import real_vs_synthetic_auc
from privmed.evaluate.features import DomainEncoder, preprocess_images
from privmed.evaluate.fidelity import FidelityConfig, evaluate_fidelity
from privmed.fileio import write_json_atomic
from privmed.methods.acgan import ACGAN
from privmed.methods.dpmerf import DPMERF
from privmed.methods.dpsgd_classifier import DPSGDClassifier

logger = logging.getLogger("pneumonia_frontier")
WORK = RUNS_DIR / "pneumonia_frontier"
DELTA = 1e-5
MERF_EPSILONS = (0.5, 1.0, 2.0, 8.0, math.inf)
ROWS = (
    "real", "dpsgd-1", "dpsgd-8", *(f"dpmerf-{e:g}" for e in MERF_EPSILONS), "acgan-new-1", "acgan-new-8", "acgan-seed001-1", "label-only",
)
# The DP-MERF configuration every row uses: chosen on the validation split (see the validation table).
MERF_CONFIG: dict[str, Any] = {}
COLUMNS = [
    ("row", "row"), ("release", "release"), ("epsilon", "epsilon (reported)"), ("delta", "delta"),
    ("auc", "test ROC AUC"), ("auc_ci", "95% BCa CI"), ("fid", "FID train / test"), ("kid", "KID x1e3 train / test"),
    ("real_vs_synthetic", "real-vs-synthetic AUC"), ("attack", "strongest attack AUC"), ("fit_s", "release s"), ("details", "details"),
]
VALIDATION_COLUMNS = [("tag", "variant"), ("epsilon", "epsilon"), ("config", "options"), ("val_auc", "validation AUC"), ("fit_s", "fit s"), ("loss", "final loss")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--redo", nargs="*", default=[], choices=ROWS, help="recompute these rows even if cached")
    parser.add_argument("--epochs", type=int, default=30, help="classifier epochs (the DP-SGD reference's)")
    parser.add_argument("--validate", type=str, default=None, help="JSON of DPMERF options: fit at --validate-epsilon, score on the validation split only")
    parser.add_argument("--validate-epsilon", type=float, default=1.0)
    parser.add_argument("--validate-epochs", type=int, default=10, help="classifier epochs of a validation probe (shorter, for CPU time)")
    parser.add_argument("--tag", type=str, default="variant")
    parser.add_argument("--merf-config", type=str, default=None, help="JSON of DPMERF options replacing the defaults for the DP-MERF rows (rows get --suffix)")
    parser.add_argument("--suffix", type=str, default="", help="appended to the row names of this invocation (e.g. a second DP-MERF configuration)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    return parser.parse_args()


def _ci(metrics: Any) -> str:
    return f"[{metrics.roc_auc_low:.3f}, {metrics.roc_auc_high:.3f}]"


def ensure_encoder(train: ImageDataset, seed: int) -> Path:
    path = WORK / "domain_encoder.pt"
    if not path.exists():
        encoder = DomainEncoder(in_channels=1, image_size=64).fit(preprocess_images(train), steps=500, seed=seed)
        encoder.trained_on["dataset"] = "PneumoniaMNIST training images (all 4708)"
        encoder.save(path)
    return path


def judge_release(
    name: str, synthetic: ImageDataset, splits: dict[str, ImageDataset], encoder: Path, args: argparse.Namespace,
    privacy: Any = None, model_dir: Path | None = None,
) -> dict[str, Any]:
    """Utility (30-epoch classifier on the release, real test set), fidelity, real-vs-synthetic AUC, strongest attack."""
    train, val, test = splits["train"], splits["val"], splits["test"]
    work = WORK / name
    utility, _ = evaluate_classifier(synthetic, test, epochs=args.epochs, seed=args.seed, n_resamples=args.resamples)
    fidelity = evaluate_fidelity(train, synthetic, work / "fidelity", test=test, config=FidelityConfig(extractor=str(encoder), plots=False))
    real = train.subset(np.random.default_rng(args.seed).choice(len(train), size=min(2000, len(synthetic)), replace=False))
    fake = synthetic.subset(np.arange(min(2000, len(synthetic))))
    detection, _ = real_vs_synthetic_auc(real, fake, model="cnn", epochs=3, n_resamples=args.resamples, seed=args.seed)
    attack = run_attacks(
        train, val, synthetic, reference=test, model_dir=model_dir, privacy=privacy,
        embedding=AttackEmbedding(dim=16, encoder_steps=300, seed=args.seed), n_resamples=args.resamples, seed=args.seed,
    )
    attack_name, attack_auc = attack.best_auc()
    return {
        "auc": utility.roc_auc, "auc_ci": _ci(utility), "auc_low": utility.roc_auc_low, "auc_high": utility.roc_auc_high,
        "fid": f"{fidelity['fid_train']:.2f} / {fidelity['fid_test']:.2f}", "fid_train": fidelity["fid_train"], "fid_test": fidelity["fid_test"],
        "kid": f"{1e3 * fidelity['kid_train_mean']:.1f} / {1e3 * fidelity['kid_test_mean']:.1f}",
        "real_vs_synthetic": f"{detection.auc:.3f} [{detection.low:.3f}, {detection.high:.3f}]",
        "attack": f"{attack_auc:.3f} ({attack_name})",
    }


def row_real(splits: dict[str, ImageDataset], args: argparse.Namespace) -> dict[str, Any]:
    metrics, _ = evaluate_classifier(splits["train"], splits["test"], epochs=args.epochs, seed=args.seed, n_resamples=args.resamples)
    return {"release": "real training images (no privacy)", "epsilon": math.inf, "auc": metrics.roc_auc, "auc_ci": _ci(metrics),
            "details": f"SmallCNN, {args.epochs} epochs, batch 64, Adam 1e-3"}


def row_dpsgd(epsilon: float, splits: dict[str, ImageDataset], args: argparse.Namespace) -> dict[str, Any]:
    train, test = splits["train"], splits["test"]
    start = time.perf_counter()
    method = DPSGDClassifier(epsilon, delta=DELTA, epochs=args.epochs, batch_size=470, max_grad_norm=1.0, seed=args.seed).fit(train)
    report = method.privacy_report()
    metrics, _ = score_classifier(method.network_, test, model="cnn", n_train=len(train), epochs=args.epochs, seed=args.seed, n_resamples=args.resamples)
    return {"release": "DP-SGD classifier (a model, not images)", "epsilon": report.epsilon, "delta": report.delta, "auc": metrics.roc_auc,
            "auc_ci": _ci(metrics), "fit_s": time.perf_counter() - start,
            "details": f"sigma {report.noise_multiplier:.3f}, q {report.sample_rate:.3f} (batch ~470), {report.steps} steps, C 1, Adam 1e-2"}


def fit_merf(epsilon: float, train: ImageDataset, run_dir: Path, config: dict[str, Any], seed: int) -> tuple[DPMERF, float | None]:
    """Fit (or load a finished run with the same options)."""
    model = DPMERF(epsilon, seed=seed, run_dir=run_dir, **config)
    if (run_dir / "generator.pt").exists():
        stored = json.loads((run_dir / "config.json").read_text())["params"]
        if stored == json.loads(json.dumps(model.get_params())):
            return DPMERF.load(run_dir), None
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    start = time.perf_counter()
    model.fit(train, data_ref="pneumoniamnist.npz:train")
    return model, time.perf_counter() - start


def row_merf(epsilon: float, splits: dict[str, ImageDataset], encoder: Path, args: argparse.Namespace) -> dict[str, Any]:
    label = ("inf" if math.isinf(epsilon) else f"{epsilon:g}") + args.suffix
    model, seconds = fit_merf(epsilon, splits["train"], WORK / f"dpmerf-{label}" / "run", MERF_CONFIG, args.seed)
    report = model.privacy_report()
    synthetic = model.sample(len(splits["train"]), seed=args.seed + 1)
    row = {"release": f"DP-MERF images ({len(synthetic)})", "epsilon": report.epsilon, "delta": report.delta, "fit_s": seconds,
           "details": f"options {json.dumps(MERF_CONFIG)} (the rest default); noise multiplier "
                      f"{0 if report.noise_multiplier is None else report.noise_multiplier:.4g}, sensitivity 1 (add/remove)"}
    row.update(judge_release(f"dpmerf-{label}", synthetic, splits, encoder, args, privacy=report))
    if epsilon == 8.0:
        save_grid(model, RESULTS_DIR / f"pneumonia_frontier_dpmerf_eps8{args.suffix}.png")
    return row


def save_grid(model: DPMERF, path: Path) -> None:
    """16 images per class (rows of 8: normal, then pneumonia) at 2x."""
    parts = [model.sample(16, seed=7, class_label=c) for c in (0, 1)]
    grid = ImageDataset(images=np.concatenate([p.images for p in parts]), labels=np.concatenate([p.labels for p in parts]),
                        subjects=np.arange(32), sources=np.arange(32), name="grid")
    save_pair_grid(grid, path, n=32, columns=8, scale=2)


def row_acgan_seed001(epsilon: float, splits: dict[str, ImageDataset], encoder: Path, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = WORK / f"acgan-seed001-{epsilon:g}" / "run"
    model = ACGAN(epsilon, delta=DELTA, max_steps=750, batch_size=256, learning_rate=1e-4, generator_channels=8,
                  discriminator_channels=8, seed=args.seed, run_dir=run_dir)
    start = time.perf_counter()
    if (run_dir / "privacy.json").exists():
        model = ACGAN.load(run_dir)
        seconds = None
    else:
        model.fit(splits["train"])
        seconds = time.perf_counter() - start
    report = model.privacy_report()
    synthetic = model.sample(len(splits["train"]), seed=args.seed + 1)
    row = {"release": f"AC-GAN seed 001 images ({len(synthetic)})", "epsilon": report.epsilon, "delta": report.delta, "fit_s": seconds,
           "details": f"pneumonia_acgan.py schedule: 750 steps, batch 256, width 8, Adam 1e-4; sigma {report.noise_multiplier:.3f}"}
    row.update(judge_release(f"acgan-seed001-{epsilon:g}", synthetic, splits, encoder, args, privacy=report, model_dir=run_dir))
    return row


def row_label_only(splits: dict[str, ImageDataset], args: argparse.Namespace) -> dict[str, Any]:
    run_dir = WORK / "dpmerf-1" / "run"
    if not (run_dir / "generator.pt").exists():
        raise SystemExit("label-only needs the dpmerf-1 row first (it uses that release's class balance)")
    frequencies = DPMERF.load(run_dir).release_.class_frequencies
    rng = np.random.default_rng(args.seed)
    n = len(splits["train"])
    labels = rng.choice(len(frequencies), size=n, p=frequencies)
    ids = np.arange(n)
    noise = ImageDataset(images=rng.random((n, 1, 28, 28), dtype=np.float32), labels=labels, subjects=ids, sources=ids, name="label-only")
    metrics, _ = evaluate_classifier(noise, splits["test"], epochs=args.epochs, seed=args.seed, n_resamples=args.resamples)
    return {"release": "uniform-noise images, released class balance", "epsilon": 1.0, "auc": metrics.roc_auc, "auc_ci": _ci(metrics),
            "details": f"class frequencies {np.round(frequencies, 3).tolist()} from the epsilon-1 DP-MERF release (post-processing)"}


def validate(splits: dict[str, ImageDataset], args: argparse.Namespace) -> None:
    """One DP-MERF variant at --validate-epsilon, scored on the validation split only (never the test split)."""
    config = json.loads(args.validate)
    results = ResultsFile(RESULTS_DIR / "pneumonia_frontier_validation", "PneumoniaMNIST frontier: DP-MERF variants on the validation split",
                          VALIDATION_COLUMNS, key=("tag", "epsilon"))
    start = time.perf_counter()
    model = DPMERF(args.validate_epsilon, seed=args.seed, **config).fit(splits["train"])
    fit_s = time.perf_counter() - start
    synthetic = model.sample(len(splits["train"]), seed=args.seed + 1)
    metrics, _ = evaluate_classifier(synthetic, splits["val"], epochs=args.validate_epochs, seed=args.seed, n_resamples=200)
    results.put({"tag": args.tag, "epsilon": args.validate_epsilon, "config": json.dumps(config), "val_auc": metrics.roc_auc, "fit_s": fit_s, "loss": model.final_loss_})
    save_grid(model, WORK / "validation" / f"{args.tag}.png")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout, force=True)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PRIVMED_LEDGER", str(WORK / "ledger.json"))
    ref = os.path.relpath(args.data)
    splits = {split: load(f"{ref}:{split}") for split in ("train", "val", "test")}
    if args.validate is not None:
        validate(splits, args)
        return
    results = ResultsFile(RESULTS_DIR / "pneumonia_frontier", "PneumoniaMNIST frontier: DP releases against DP-SGD on the data", COLUMNS, key=("row",))
    results.notes = NOTES
    if args.merf_config is not None:
        MERF_CONFIG.update(json.loads(args.merf_config))
    done = {row["row"] for row in results.rows}
    encoder = ensure_encoder(splits["train"], args.seed)
    for name in args.rows:
        if name + args.suffix in done and name not in args.redo:
            continue
        logger.info("row %s", name)
        if name == "real":
            row = row_real(splits, args)
        elif name.startswith("dpsgd-"):
            row = row_dpsgd(float(name.split("-")[1]), splits, args)
        elif name.startswith("dpmerf-"):
            row = row_merf(float(name.split("-")[1]), splits, encoder, args)
        elif name.startswith("acgan-new-"):
            row = {"release": "AC-GAN, Bie et al. 2023 recipe", "epsilon": float(name.split("-")[2]),
                   "details": "not run: the recipe (deliverable 3 of issue 15) is not implemented yet"}
        elif name.startswith("acgan-seed001-"):
            row = row_acgan_seed001(float(name.split("-")[2]), splits, encoder, args)
        else:
            row = row_label_only(splits, args)
        results.put({"row": name + args.suffix, **row})
        logger.info("%s: %s", name, json.dumps(row, default=str))
    write_json_atomic(WORK / "last_command.json", {"command": command_line()})


NOTES = [
    "Data: PneumoniaMNIST 28x28 (`../shared/data/pneumoniamnist.npz`): 4708 training images, all private (unit: image; 1214 normal, "
    "3494 pneumonia); 524 validation images for every choice (see pneumonia_frontier_validation.md); 624 test images, scored once per row.",
    "Privacy: (epsilon, delta) per image, delta = 1e-5 = min(1e-5, 1/(10 N)) for every DP row. DP-MERF: add/remove neighbouring, L2 "
    "sensitivity 1, one Gaussian release calibrated exactly (analytic Gaussian); class counts from the same release. DP-SGD and AC-GAN: "
    "Poisson sampling, RDP accountant. The number of training images N is treated as public.",
    "Classifier: privmed's GroupNorm SmallCNN, 30 epochs, batch 64, Adam 1e-3, seed 0, on each release (4708 images drawn from each generator "
    "by its released class frequencies); ROC AUC of 'pneumonia' on the 624 test images with a BCa 95% interval (2000 resamples).",
    "Fidelity: one offline DomainEncoder (500 steps on the 4708 real training images, CLAHE), 1000 images per set, as in pneumonia_acgan.md "
    "(the encoder is retrained here on all training images, so figures are comparable within this table). Real-vs-synthetic: SmallCNN, "
    "3 epochs on 70% of 2000 real + 2000 synthetic images, AUC on the other 30% (0.5: indistinguishable). Attacks: run_attacks with "
    "262 members (training) and 524 non-members (validation), the test images as reference; the highest AUC of every attack is shown.",
    "Departure: the validation split is used for DP-MERF's options (feature parts, generator steps) without accounting; it is "
    "held out from training and treated as a separate public set for these choices.",
]


if __name__ == "__main__":
    main()
