"""PneumoniaMNIST frontier: which DP release trains a classifier nearly as well as DP-SGD on the data itself?

All 4708 training images are private (unit: image, delta = 1e-5 <= 1/(10 N)); the 524 validation images
serve every choice made by looking at results (``--validate``); the 624 test images are scored once per row.
Every row trains the same classifier (privmed's GroupNorm SmallCNN, 30 epochs, Adam 1e-3, batch 64) on its
release and reports test ROC AUC with a BCa interval. Rows:

- ``real``: the classifier on the real training images (no privacy);
- ``dpsgd-1``, ``dpsgd-8``: the classifier trained directly with DP-SGD (the reference a release must beat);
- ``dpmerf-{0.5,1,2,8,inf}``: the mean-embedding release (``privmed.methods.dpmerf``), 4708 images drawn;
- ``acgan-new-{1,8}``: the AC-GAN with Bie et al.'s recipe (k discriminator steps per generator step, a large
  batch, samples from a moving average of the generator's weights), options chosen on the validation split;
- ``acgan-seed001-1``: the AC-GAN of seed 001 at ``benchmarks/pneumonia_acgan.py``'s schedule;
- ``label-only``: uniform-noise images carrying the class balance of the epsilon-1 release (a control).

Image releases also get FID/KID (one offline ``DomainEncoder`` trained on the real training images, as in
``pneumonia_acgan.py``), a real-vs-synthetic AUC (the SmallCNN, 3 epochs, 70/30 split) and the strongest
membership attack of ``privmed.evaluate.attacks.run_attacks`` (members: training images; non-members:
validation images; reference: test images). Finished rows are cached in the results JSON and skipped on a
rerun (``--redo ROW`` recomputes one), so a killed run resumes.

    nice -n 10 python benchmarks/pneumonia_frontier.py                 # every row
    nice -n 10 python benchmarks/pneumonia_frontier.py --validate '{"steps": 1000}' --tag steps1000
    nice -n 10 python benchmarks/pneumonia_frontier.py --validate-method acgan --validate '{"discriminator_steps": 5}' \
        --validate-epsilon 8 --tag acgan-k5
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
from privmed.methods.base import GenerativeMethod
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
# The AC-GAN with Bie et al.'s recipe: the base every validation probe starts from, and the options the
# acgan-new rows use (chosen on the validation split at epsilon 8; see the validation table).
ACGAN_BASE: dict[str, Any] = {
    "max_steps": 2400, "batch_size": 256, "learning_rate": 2e-4, "generator_channels": 16, "discriminator_channels": 16,
}
ACGAN_NEW_CONFIG: dict[str, Any] = {**ACGAN_BASE, "discriminator_steps": 5, "generator_ema": 0.99}
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
    parser.add_argument("--validate", type=str, default=None, help="JSON of options: fit at --validate-epsilon, score on the validation split only")
    parser.add_argument("--validate-method", choices=("dpmerf", "acgan"), default="dpmerf",
                        help="what --validate fits: DPMERF (its options) or the AC-GAN (options over ACGAN_BASE)")
    parser.add_argument("--validate-epsilon", type=float, default=1.0)
    parser.add_argument("--validate-epochs", type=int, default=10, help="classifier epochs of a validation probe (shorter, for CPU time)")
    parser.add_argument("--tag", type=str, default="variant")
    parser.add_argument("--merf-config", type=str, default=None, help="JSON of DPMERF options replacing the defaults for the DP-MERF rows (rows get --suffix)")
    parser.add_argument("--acgan-config", type=str, default=None, help="JSON of ACGAN options updating ACGAN_NEW_CONFIG for the acgan-new rows (rows get --suffix)")
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


def save_grid(model: GenerativeMethod, path: Path) -> None:
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


def row_acgan_new(epsilon: float, splits: dict[str, ImageDataset], encoder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The AC-GAN with Bie et al.'s recipe (ACGAN_NEW_CONFIG), judged like every other release."""
    label = f"{epsilon:g}{args.suffix}"
    run_dir = WORK / f"acgan-new-{label}" / "run"
    model = ACGAN(epsilon, delta=DELTA, seed=args.seed, run_dir=run_dir, **ACGAN_NEW_CONFIG)
    seconds = None
    if (run_dir / "privacy.json").exists() and json.loads((run_dir / "config.json").read_text())["params"] == json.loads(json.dumps(model.get_params())):
        model = ACGAN.load(run_dir)
    else:
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        start = time.perf_counter()
        model.fit(splits["train"])
        seconds = time.perf_counter() - start
    report = model.privacy_report()
    synthetic = model.sample(len(splits["train"]), seed=args.seed + 1)
    row = {"release": f"AC-GAN, Bie et al. 2023 recipe, images ({len(synthetic)})", "epsilon": report.epsilon, "delta": report.delta,
           "fit_s": seconds, "details": f"options {json.dumps(ACGAN_NEW_CONFIG)}; sigma {report.noise_multiplier:.3f}, q {report.sample_rate:.4f}"}
    row.update(judge_release(f"acgan-new-{label}", synthetic, splits, encoder, args, privacy=report, model_dir=run_dir))
    save_grid(model, RESULTS_DIR / f"pneumonia_frontier_acgan_new_eps{label}.png")
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
    """One DP-MERF or AC-GAN variant at --validate-epsilon, scored on the validation split only (never the test split)."""
    config = json.loads(args.validate)
    results = ResultsFile(RESULTS_DIR / "pneumonia_frontier_validation", "PneumoniaMNIST frontier: DP-MERF and AC-GAN variants on the validation split",
                          VALIDATION_COLUMNS, key=("tag", "epsilon"))
    start = time.perf_counter()
    model: GenerativeMethod
    if args.validate_method == "acgan":
        config = {**ACGAN_BASE, **config}
        last: dict[str, Any] = {}
        model = ACGAN(args.validate_epsilon, delta=DELTA, seed=args.seed, on_epoch=last.update, **config).fit(splits["train"])
        loss: Any = f"D {last.get('discriminator_loss', math.nan):.3f} / G {last.get('generator_loss', math.nan):.3f}"
    else:
        model = DPMERF(args.validate_epsilon, seed=args.seed, **config).fit(splits["train"])
        loss = model.final_loss_
    fit_s = time.perf_counter() - start
    synthetic = model.sample(len(splits["train"]), seed=args.seed + 1)
    metrics, _ = evaluate_classifier(synthetic, splits["val"], epochs=args.validate_epochs, seed=args.seed, n_resamples=200)
    tag = args.tag if args.validate_method == "dpmerf" else f"acgan:{args.tag}"
    results.put({"tag": tag, "epsilon": args.validate_epsilon, "config": json.dumps(config), "val_auc": metrics.roc_auc, "fit_s": fit_s, "loss": loss})
    save_grid(model, WORK / "validation" / f"{tag.replace(':', '-')}.png")


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
    if args.acgan_config is not None:
        ACGAN_NEW_CONFIG.update(json.loads(args.acgan_config))
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
            row = row_acgan_new(float(name.split("-")[2]), splits, encoder, args)
        elif name.startswith("acgan-seed001-"):
            row = row_acgan_seed001(float(name.split("-")[2]), splits, encoder, args)
        else:
            row = row_label_only(splits, args)
        results.put({"row": name + args.suffix, **row})
        logger.info("%s: %s", name, json.dumps(row, default=str))
    write_json_atomic(WORK / "last_command.json", {"command": command_line()})


NOTES = [
    "Data: PneumoniaMNIST 28x28 (`../shared/data/pneumoniamnist.npz`): 4708 training images, all private (unit: image; 1214 normal, "
    "3494 pneumonia); 524 validation images for every choice (see pneumonia_frontier_validation.md); 624 test images, scored once per "
    "row.",
    "Privacy: (epsilon, delta) per image, delta = 1e-5 = min(1e-5, 1/(10 N)) for every DP row. DP-MERF: add/remove neighbouring, L2 "
    "sensitivity 1, one Gaussian release calibrated exactly (analytic Gaussian); class counts from the same release. DP-SGD and AC-GAN: "
    "Poisson sampling, RDP accountant. The number of training images N is treated as public.",
    "Classifier: privmed's GroupNorm SmallCNN, 30 epochs, batch 64, Adam 1e-3, seed 0, on each release (4708 images drawn from each "
    "generator by its released class frequencies); ROC AUC of 'pneumonia' on the 624 test images with a BCa 95% interval (2000 "
    "resamples).",
    "Fidelity: one offline DomainEncoder (500 steps on the 4708 real training images, CLAHE), 1000 images per set, as in "
    "pneumonia_acgan.md (the encoder is retrained here on all training images, so figures are comparable within this table). "
    "Real-vs-synthetic: SmallCNN, 3 epochs on 70% of 2000 real + 2000 synthetic images, AUC on the other 30% (0.5: indistinguishable). "
    "Attacks: run_attacks with 262 members (training) and 524 non-members (validation), the test images as reference; the highest AUC "
    "of every attack is shown.",
    "Departure: the validation split is used for DP-MERF's options (feature parts, generator steps) without accounting; it is held out "
    "from training and treated as a separate public set for these choices. The same holds for the AC-GAN recipe's options (three "
    "probes at epsilon 8 only, run at epsilon 1 unchanged) and for its -noema rows, which follow a validation comparison made after "
    "the EMA rows' test figures were known.",
    "Sample grids of the epsilon-8 DP-MERF releases (rows 1-2 normal, rows 3-4 pneumonia): the best, 600 steps x 128 images per class: "
    "[pneumonia_frontier_dpmerf_eps8-600x128.png](pneumonia_frontier_dpmerf_eps8-600x128.png); default options: "
    "[pneumonia_frontier_dpmerf_eps8.png](pneumonia_frontier_dpmerf_eps8.png).",
    "Reading (2026-11-27). Targets of issue 15: DP-MERF at epsilon 1 >= 0.88: met (0.885 [0.857, 0.908], default options). At epsilon 8 "
    ">= 0.92: met by the options chosen on the validation split for epsilon 8 (600 generator steps of 128 images per class: 0.929 "
    "[0.907, 0.946]); the default options give 0.896 [0.869, 0.917]. FID <= 5 for the best epsilon-8 release: met (4.92 / 2.98 train / "
    "test; default options 5.13 / 3.17). Non-private >= 0.93: met with the epsilon-8 options (0.933 [0.911, 0.951]; default options "
    "0.897). AC-GAN with Bie et al.'s recipe at epsilon 8 >= 0.88: not met (0.784 [0.745, 0.819]; with the generated rows clipped, "
    "0.791 [0.756, 0.825]; see the AC-GAN notes below). "
    "Stretch (epsilon 1 as good as direct DP-SGD): "
    "DP-SGD at epsilon 1 with delta 1e-5 reaches 0.901 [0.876, 0.923] here; DP-MERF at epsilon 1 reaches 0.885 [0.857, 0.908] with the "
    "default options and 0.909 [0.884, 0.930] with the epsilon-8 options (600 x 128). Departure: the 600 x 128 options were chosen on "
    "the validation split at epsilon 8 only and then run at epsilon 1 and inf (rows -600x128) without their own validation probe, after "
    "the default rows were scored; the default rows are the ones chosen for epsilon 1 by validation. Read the epsilon-1 600 x 128 row "
    "with that in mind.",
    "What the rows say: with the default options DP-MERF at epsilon 8 (0.896) equals its own non-private reference (0.897): at N = 4708 "
    "the noise stops being the limit above epsilon ~2, and the generator's training (steps, images per step) is; 4x the generator "
    "compute lifted epsilon 8 to 0.929, inf to 0.933 and epsilon 1 to 0.909. Every DP-MERF release is still told from real images with "
    "AUC ~1.0 and the classifiers trained on them reach a training loss near 1e-4 (the classes are separable by synthetic cues). Next "
    "steps: validate the 600 x 128 schedule (or longer) at every epsilon, features of a network trained on public chest images (DP-MEPF "
    "style); for the AC-GAN see its note.",
    "The seed-001 AC-GAN at epsilon 1 (750 steps of batch 256, width 8) gives 0.700 [0.658, 0.738] and FID 9.47 / 7.19: every DP-MERF "
    "row beats it by 0.16-0.23 AUC at a fraction of its CPU time. The label-only control (uniform noise with the released class "
    "balance) gives 0.418: the images, not the class balance, carry the signal. No membership attack reaches AUC 0.53 on any release.",
    "AC-GAN with Bie et al.'s recipe (rows acgan-new-*; every option a departure from seed 001, which took one discriminator step per "
    "generator step and sampled its last generator, and from seed 001's batch 32, Adam 1e-4, width 64; each run's privacy.json states "
    "the first two): 2400 DP discriminator steps of expected batch 256 (q 0.054; sigma 1.867 at epsilon 8, 10.875 at epsilon 1), 5 "
    "discriminator steps per generator step (480 generator steps), samples from the EMA of the generator's weights (decay 0.99), Adam "
    "2e-4, width 16; 760-930 s fit per row with 1 thread, two rows at a time. Epsilon 8: 0.784 [0.745, 0.819], FID 5.83 / 3.93; "
    "epsilon 1: 0.705 [0.664, 0.743], FID 8.12 / 5.98 (the seed-001 recipe at epsilon 1: 0.700). Target (>= 0.88 at epsilon 8): not met. "
    "Variants tried, on the validation split at epsilon 8 (10-epoch classifier, pneumonia_frontier_validation.md): 5 steps per generator "
    "step with EMA 0.99 0.624 (chosen), 20 with EMA 0.95 0.616, and seed 001's one step without EMA at the same budget (a control) 0.859, "
    "mode-collapsed (one image per class) and not run on the test split. On the finished epsilon-8 run the last raw generator scored "
    "0.830 on the validation split against 0.716 for its EMA, so the recipe without EMA was run too (rows -noema): 0.411 [0.365, 0.457] "
    "at epsilon 8 and 0.819 [0.782, 0.850] at epsilon 1. The same options thus give 0.41 to 0.83 from one run to the next. The grids "
    "([epsilon 8](pneumonia_frontier_acgan_new_eps8.png), [epsilon 1](pneumonia_frontier_acgan_new_eps1.png); rows 1-2 normal, 3-4 "
    "pneumonia, same latents) show images that vary with the latent but hardly with the requested class, so a classifier learns weak, "
    "run-dependent class cues (AUC below 0.5 when they flip). During training the discriminator's loss rises from 2.1 to 3.8-4.8: every "
    "real row's gradient is clipped (clipped fraction 1.0) and noised, while the generated rows' mean gradient is neither. Every AC-GAN "
    "release is told from real images with AUC 1.000; no attack passes 0.513. Next steps: bound the generated rows' gradient like the "
    "real rows' (it costs no privacy) so that the noisy real and class signal is not drowned, a larger class-loss weight, many more "
    "steps as Bie et al. ran (this CPU budget allowed 480 generator steps), a faster EMA, and several seeds per option before a choice.",
    "AC-GAN with the generated rows clipped (rows acgan-new-*-clipgen; lead, after the rows above): the first next step above, as "
    "the option clip_generated (each generated row's discriminator gradient clipped to the real units' bound C and scaled by the same "
    "expected batch, no noise: a stated departure from seed 001, no change to the accounting). Three probes on the validation split at "
    "epsilon 8, ACGAN_BASE plus clip_generated: 5 steps per generator step with EMA 0.99 0.814 (0.624 without clipping), 5 steps "
    "without EMA 0.852 (chosen), 1 step 0.675. Test: epsilon 8 0.791 [0.756, 0.825], FID 5.02 / 3.30; epsilon 1 0.670 [0.628, 0.710], "
    "FID 11.11 / 8.87; 745-758 s fit per row. Target (>= 0.88 at epsilon 8): still not met; the clipped rows are the chosen recipe's "
    "best test figure at epsilon 8 and the closest of any AC-GAN release to FID 5, but within the interval of the unclipped row. The "
    "grids ([epsilon 8](pneumonia_frontier_acgan_new_eps8-clipgen.png), [epsilon 1](pneumonia_frontier_acgan_new_eps1-clipgen.png)) "
    "show a class difference at epsilon 8 (pneumonia rows lighter and hazier) and little at epsilon 1. Departure: this choice, like the "
    "-noema rows', was made after the first AC-GAN rows' test figures were known (prompted by their training losses, chosen on "
    "validation). The discriminator's loss still rises (to 4.8); the next steps are the remaining ones above: many more steps than "
    "480 generator steps (a GPU-capable DP trainer), a larger class-loss weight, several seeds per option.",
    "Release time: the epsilon-2 DP-MERF fit (release + 300 generator steps) took 124 s wall at load ~2-5 on this 2-core machine and "
    "the epsilon-8 validation probe 202 s; the rows fitted at load 10-14 (other engineers' jobs) took 500-700 s wall. The default "
    "options fit in under 5 minutes on a machine that is not oversubscribed several times over; the 600 x 128 options cost about 4x "
    "(710 s wall at load ~4-5).",
    "Validation (524 images, 10-epoch classifier; [pneumonia_frontier_validation.md](pneumonia_frontier_validation.md)): the default "
    "options at epsilon 8 score 0.933, 600 steps x 128 per class 0.966. Validation AUCs sit 0.03-0.04 above the test AUCs.",
    "Run 7 re-scored the epsilon-8 600 x 128 release from its cached run directory (the same released embeddings and generator, `fit_s` "
    "therefore blank): run 4 had written that row, and the concurrent runs 5 and 6 rewrote the file without it. Its figures match what "
    "run 4 printed (0.929 [0.907, 0.946], FID 4.92 / 2.98).",
]


if __name__ == "__main__":
    main()
