"""AC-GAN on PneumoniaMNIST at several epsilons: privacy, fidelity, diversity, attacks, audit and utility in one table.

One command trains one AC-GAN per epsilon (seed 001 architecture narrowed by ``--base-channels``,
DP-SGD on the discriminator, privacy unit: image) and evaluates each release every way privmed can:

- fidelity: FID and KID (``privmed.evaluate.fidelity``) of ``--n-synthetic`` samples against the
  real training and test images, all through one offline ``DomainEncoder`` trained once on the real
  training images (so the figures of all rows are comparable with each other, not with Inception FIDs);
- diversity: a MONAI ResNet-18 trained to tell real from synthetic images, macro ROC AUC on held-out
  images with a BCa 95% interval (``privmed.evaluate.diversity.real_vs_synthetic_auc``), trained for
  only ``--diversity-epochs`` epochs to fit the schedule;
- membership inference (``privmed.evaluate.attacks.run_attacks``): 1/3 members (training images),
  2/3 non-members (the validation split, drawn like the training split), the test split as the
  attacker's reference data (it differs from the training split: a discriminator tells test from
  validation images with AUC 0.55-0.58, so test images as non-members would confound); pairwise
  and distribution attacks in pixels and in an embedding, DOMIAS density ratio, and the
  discriminator's own score (``privmed.methods.acgan.score_members``); AUC with BCa CI, TPR at FPR
  0.1% and 1%, and the two controls;
- audit (Steinke et al. 2023, one run): ``--canaries`` training images are cut from the training set,
  marked with a bright square and given the other class; each goes back into the training data with
  probability 1/2. Every run is trained once, with its canaries, and serves both the table and the
  audit. Canaries are scored by the discriminator and, separately, by their nearest released image;
  ``--guesses`` most and least suspicious canaries are guessed in and out (fixed before the run);
- utility: a small CNN trained on the synthetic images, tested on the real test images (ROC AUC of
  "pneumonia" with a BCa 95% interval).

Schedule: 750 steps of expected batch 256 at seed 001's learning rate 1e-4 (about 45 epochs, 3-4 min
per run on one thread). Pilots with batch 64 at lr 5e-4 for 1000-2000 steps left every DP generator
mode-collapsed (one image per class, whatever the latent), with the seed's class loss as well; the
larger batch cuts the noise per step, and the smaller learning rate keeps epsilon 10 from collapsing.

Runs, reports and the figures behind the table go to ``--work`` (git-ignored); a finished run found
there is reused, so an interrupted benchmark resumes at the first unfinished epsilon. The budget
ledger is ``--work``/ledger.json unless PRIVMED_LEDGER is set.

    python benchmarks/pneumonia_acgan.py --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.evaluate.attacks import AttackEmbedding, model_scores, pairwise_scores, run_attacks, write_attack_report
from privmed.evaluate.audit import AuditResult, audit_from_scores, insert_canaries, make_canaries
from privmed.evaluate.classifier import evaluate_classifier
from privmed.evaluate.diversity import real_vs_synthetic_auc
from privmed.evaluate.features import DomainEncoder, preprocess_images
from privmed.evaluate.fidelity import FidelityConfig, evaluate_fidelity
from privmed.fileio import write_json_atomic, write_text_atomic
from privmed.methods.acgan import ACGAN
from privmed.privacy.ledger import dataset_key
from privmed.runs import RunDirectory

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "pneumoniamnist.npz"
RESULTS = REPO / "benchmarks" / "results" / "pneumonia_acgan.md"
WORK = REPO / "benchmarks" / "runs" / "pneumonia_acgan"
ATTACKS = ("pairwise-pixel", "pairwise-embedding", "distribution-pixel", "distribution-embedding", "density-ratio", "model-score")

logger = logging.getLogger("pneumonia_acgan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[float("inf"), 10.0, 1.0])
    parser.add_argument("--steps", type=int, default=750, help="discriminator steps per run")
    parser.add_argument("--batch-size", type=int, default=256, help="expected batch (the DP noise per step shrinks with it)")
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="Adam learning rate (seed 001's)")
    parser.add_argument("--n-synthetic", type=int, default=2000, help="released images per run (attacks, fidelity, diversity, utility)")
    parser.add_argument("--canaries", type=int, default=1000, help="audit canaries cut from the training set")
    parser.add_argument("--guesses", type=int, default=50, help="audit guesses k+ = k- (fixed before the runs, from a pilot with seed 1)")
    parser.add_argument("--encoder-steps", type=int, default=500, help="training steps of the offline domain encoder")
    parser.add_argument("--classifier-epochs", type=int, default=3, help="epochs of the utility CNN")
    parser.add_argument("--diversity-epochs", type=int, default=1, help="epochs of the real-vs-synthetic ResNet-18 (about 3 min each on one thread)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of every AUC interval")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the canaries, their coin flips and the AC-GAN runs")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def split_canaries(train: ImageDataset, n: int, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """The training images left after cutting ``n`` random ones out, and those ``n`` as mislabelled, marked canaries."""
    order = np.random.default_rng(seed).permutation(len(train))
    canaries = make_canaries(train.subset(np.sort(order[:n])), n, seed=seed, mislabel=True)
    return train.subset(np.sort(order[n:])), canaries


def train_run(training: ImageDataset, epsilon: float, run_dir: Path, args: argparse.Namespace) -> tuple[ACGAN, float | None]:
    """Train the AC-GAN (or load it when ``run_dir`` holds a finished run with the same options and data); seconds trained."""
    model = ACGAN(
        epsilon, max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        generator_channels=args.base_channels, discriminator_channels=args.base_channels, seed=args.seed, run_dir=run_dir,
    )
    if (run_dir / "privacy.json").exists():
        config = RunDirectory(run_dir).read_config()
        if config["data"]["key"] == dataset_key(training) and config["params"] == json.loads(json.dumps(model.get_params())):
            try:
                return ACGAN.load(run_dir), None
            except PrivmedError as exc:  # an unfinished run: start again below
                logger.warning("%s: %s; training again", run_dir, exc)
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    model.fit(training)
    return model, time.perf_counter() - start


def audit_row(result: AuditResult) -> dict[str, Any]:
    return {"bound": result.epsilon_lower_bound, "correct": result.correct, "guesses": result.guesses, "consistent": result.consistent}


def evaluate_release(
    name: str,
    synthetic: ImageDataset,
    base: ImageDataset,
    test: ImageDataset,
    encoder_path: Path,
    out: Path,
    args: argparse.Namespace,
    utility_train: ImageDataset | None = None,
) -> dict[str, Any]:
    """Fidelity, diversity and utility of one set of images (a release, or held-out real images as reference).

    Utility trains on ``utility_train`` when given (the real reference row), else on ``synthetic``.
    """
    row: dict[str, Any] = {"release": name}
    stamp = time.perf_counter()
    fidelity = evaluate_fidelity(base, synthetic, out / "fidelity", test=test, config=FidelityConfig(extractor=str(encoder_path), plots=False))
    row["fidelity"] = {key: fidelity[key] for key in ("fid_train", "fid_test", "kid_train_mean", "kid_train_sd", "kid_test_mean", "kid_test_sd")}
    row["fidelity"]["ssim_pairs"] = fidelity["diversity"]["synthetic"]["ssim_mean"]  # near 1: mode collapse
    real = base.subset(np.random.default_rng(args.seed).choice(len(base), size=min(len(base), len(synthetic)), replace=False))
    interval, n_test = real_vs_synthetic_auc(real, synthetic, model="resnet18", epochs=args.diversity_epochs, n_resamples=args.resamples, seed=args.seed)
    row["diversity"] = {"auc": interval.auc, "low": interval.low, "high": interval.high, "n_test": n_test}
    utility, _ = evaluate_classifier(synthetic if utility_train is None else utility_train, test, epochs=args.classifier_epochs, seed=args.seed, n_resamples=args.resamples)
    row["utility"] = {"auc": utility.roc_auc, "low": utility.roc_auc_low, "high": utility.roc_auc_high}
    row["evaluation_seconds"] = time.perf_counter() - stamp
    return row


def run_epsilon(epsilon: float, base: ImageDataset, canaries: ImageDataset, val: ImageDataset, test: ImageDataset, encoder_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one AC-GAN with canaries and evaluate it every way; the row for the table."""
    label = "inf" if math.isinf(epsilon) else f"{epsilon:g}"
    work = args.work / f"eps-{label}"
    # Each epsilon gets its own coin flips, fixed by the seed: a resumed benchmark rebuilds the same training set.
    training, included = insert_canaries(base, canaries, np.random.default_rng([args.seed, 0 if math.isinf(epsilon) else int(epsilon * 1000)]))
    model, seconds = train_run(training, epsilon, work / "run", args)
    report = model.privacy_report()
    synthetic = model.sample(args.n_synthetic, seed=args.seed + 1)
    row = evaluate_release(f"AC-GAN, epsilon {label}", synthetic, base, test, encoder_path, work, args)
    row.update(target_epsilon=label, train_seconds=seconds, privacy=report.to_dict())
    stamp = time.perf_counter()
    attack = run_attacks(
        base, val, synthetic, reference=test, model_dir=work / "run", privacy=report,
        embedding=AttackEmbedding(dim=16, encoder_steps=300, seed=args.seed), n_resamples=args.resamples, seed=args.seed,
    )
    write_attack_report(work / "attack", attack, report)
    row["attacks"] = {name: result.to_dict(curve=False) for name, result in attack.release.results.items()}
    row["controls"] = {key: {name: result.auc for name, result in control.results.items()} for key, control in attack.controls.items()}
    row["candidates"] = {"members": attack.n_members, "non_members": attack.n_non_members}
    row["attack_seconds"] = time.perf_counter() - stamp
    audits = {
        "discriminator": model_scores(work / "run", canaries),
        "release": pairwise_scores(canaries.images, synthetic.images),
    }
    row["audit"] = {
        scorer: audit_row(audit_from_scores(scores, included, k_plus=args.guesses, k_minus=args.guesses, delta=report.delta, claimed_epsilon=report.epsilon))
        for scorer, scores in audits.items()
    }
    row["audit"]["included"] = int(included.sum())
    write_json_atomic(work / "row.json", row)
    return row


def ci(block: dict[str, Any], key: str = "auc") -> str:
    return f"{block[key]:.3f} [{block['low']:.3f}, {block['high']:.3f}]"


def format_results(rows: list[dict[str, Any]], reference: dict[str, Any], meta: dict[str, Any], args: argparse.Namespace) -> str:
    def fidelity(row: dict[str, Any]) -> str:
        f = row["fidelity"]
        return f"{f['fid_train']:.2f} / {f['fid_test']:.2f} | {1e3 * f['kid_train_mean']:.1f} / {1e3 * f['kid_test_mean']:.1f} | {f['ssim_pairs']:.3f}"

    main = [
        "| release | epsilon (per image) | delta | noise multiplier | train s | FID train / test | KID x1e3 train / test | SSIM of image pairs "
        "| real-vs-synthetic AUC [95% CI] | highest attack AUC | audit epsilon >= (discriminator / release) | utility AUC [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {reference['release']} | - | - | - | - | {fidelity(reference)} | {ci(reference['diversity'])} | - | - | {ci(reference['utility'])} |",
    ]
    attacks = [
        "| release | attack | AUC [95% CI] | TPR at FPR 0.1% | TPR at FPR 1% | control: members copy | control: fresh non-members |",
        "|---|---|---|---|---|---|---|",
    ]
    audit = [
        "| release | claimed epsilon | canaries in | scorer | correct of guesses | epsilon lower bound (95%) | consistent |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        privacy = row["privacy"]
        epsilon = privacy["epsilon"] if isinstance(privacy["epsilon"], str) else f"{privacy['epsilon']:.3f}"
        noise = "-" if privacy.get("noise_multiplier") is None else f"{privacy['noise_multiplier']:.3f}"
        seconds = "reused" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}"
        best = max(row["attacks"], key=lambda name: row["attacks"][name]["auc"])
        bounds = " / ".join(f"{row['audit'][s]['bound']:.2f}" for s in ("discriminator", "release"))
        main.append(
            f"| {row['release']} | {epsilon} | {privacy['delta']:.2e} | {noise} | {seconds} | {fidelity(row)} | {ci(row['diversity'])} "
            f"| {row['attacks'][best]['auc']:.3f} ({best}) | {bounds} | {ci(row['utility'])} |"
        )
        for name in ATTACKS:
            if name not in row["attacks"]:
                continue
            result = row["attacks"][name]
            controls = [row["controls"].get(key, {}).get(name) for key in ("members-copy", "fresh-non-members")]
            attacks.append(
                f"| {row['release']} | {name} | {result['auc']:.3f} [{result['auc_low']:.3f}, {result['auc_high']:.3f}] "
                f"| {result['tpr_at_fpr']['0.001']:.3f} | {result['tpr_at_fpr']['0.01']:.3f} | "
                + " | ".join("-" if c is None else f"{c:.3f}" for c in controls) + " |"
            )
        for scorer in ("discriminator", "release"):
            found = row["audit"][scorer]
            audit.append(
                f"| {row['release']} | {epsilon} | {row['audit']['included']} of {args.canaries} | {scorer} | {found['correct']} of {found['guesses']} "
                f"| {found['bound']:.3f} | {'yes' if found['consistent'] else 'NO'} |"
            )
    candidates = rows[0]["candidates"] if rows else {"members": "?", "non_members": "?"}
    return "\n".join([
        "# AC-GAN on PneumoniaMNIST: privacy, fidelity, diversity, membership inference, audit, utility",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['started']} to {meta['finished']} ({meta['minutes']:.0f} min); machine: {platform.machine()}, "
        f"{args.threads} torch thread(s) on a CPU shared with other developers; load average (1/5/15 min) "
        f"{meta['load_start']} at the start, {meta['load_end']} at the end (wall times include that load).",
        "",
        f"Data: PneumoniaMNIST (`{meta['data']}`), 28x28. {args.canaries} training images were cut out as audit canaries "
        f"(bright square, class flipped); the other {meta['n_base']} training images are every run's training set, plus the "
        f"canaries that its coin flips put back. Privacy unit: image; delta = 1/(N+1) of each run's N images.",
        f"Training: {args.steps} discriminator steps, expected batch {args.batch_size}, base width {args.base_channels}, "
        f"Adam lr {args.learning_rate:g}, seed {args.seed}; the class head learns from real images only. "
        f"Each run releases {args.n_synthetic} images (classes uniform for DP runs, training frequencies for epsilon inf).",
        f"Fidelity: one offline domain encoder ({args.encoder_steps} steps on the {meta['n_base']} real training images, CLAHE) "
        "behind every FID/KID; 1000 images per set; FID/KID against real training / real test images; SSIM of image pairs: "
        "mean SSIM of 1000 random pairs of the set's images (near 1: mode collapse). "
        f"Diversity: ResNet-18 (MONAI, GroupNorm), {args.diversity_epochs} epoch(s) only (for time), on 70% of "
        f"{args.n_synthetic} real training + {args.n_synthetic} synthetic images, AUC on the other 30%: 0.5 = indistinguishable. "
        f"Utility: small CNN, {args.classifier_epochs} epochs on the release, tested on the {meta['n_test']} real test images. "
        f"All intervals: BCa bootstrap, {args.resamples} resamples.",
        f"Attacks: {candidates['members']} members (training images, no canaries) and {candidates['non_members']} non-members "
        f"(validation split) as candidates; the {meta['n_test']} test images are the attacker's reference set (density ratio, "
        "fresh-data control): the test split is not drawn like the training split, so it would confound as non-members. "
        "Embedding: a domain encoder trained on the attacker's real images, PCA to 16 dimensions.",
        f"Audit: one run per epsilon, {args.guesses} guesses in and {args.guesses} out (k fixed before the runs); the bound "
        "must stay at or below the run's claimed epsilon. The two scorers are separate tests at 95% each.",
        "",
        "## Summary",
        "",
        *main,
        "",
        "## Membership-inference attacks",
        "",
        *attacks,
        "",
        "## One-run audit",
        "",
        *audit,
        "",
    ])


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout, force=True)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PRIVMED_LEDGER", str(args.work / "ledger.json"))
    command = shlex.join(["python", *sys.argv]).replace(str(REPO) + "/", "")
    started, clock = datetime.datetime.now(datetime.UTC), time.perf_counter()
    load_start = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    ref = os.path.relpath(DATA)
    train, val, test = load(f"{ref}:train"), load(f"{ref}:val"), load(f"{ref}:test")
    base, canaries = split_canaries(train, args.canaries, args.seed)

    encoder_path = args.work / "domain_encoder.pt"
    if not encoder_path.exists():
        logger.info("training the offline domain encoder on %d real training images", len(base))
        encoder = DomainEncoder(in_channels=1, image_size=64).fit(preprocess_images(base), steps=args.encoder_steps, seed=args.seed)
        encoder.trained_on["dataset"] = f"{base.name} training images without the canaries"
        encoder.save(encoder_path)

    reference = evaluate_release("real images (reference)", val, base, test, encoder_path, args.work / "reference", args, utility_train=base)
    logger.info("reference: %s", json.dumps(reference))
    rows = []
    for epsilon in args.epsilons:
        rows.append(run_epsilon(epsilon, base, canaries, val, test, encoder_path, args))
        logger.info("epsilon %s: %s", epsilon, json.dumps({k: v for k, v in rows[-1].items() if k != "privacy"}))
    finished = datetime.datetime.now(datetime.UTC)
    meta = {
        "command": command, "started": started.strftime("%Y-%m-%d %H:%M UTC"), "finished": finished.strftime("%H:%M UTC"),
        "minutes": (time.perf_counter() - clock) / 60, "load_start": load_start, "load_end": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
        "data": f"{ref}:train|val|test", "n_base": len(base), "n_val": len(val), "n_test": len(test),
    }
    write_json_atomic(args.out.with_suffix(".json"), {"meta": meta, "reference": reference, "rows": rows})
    write_text_atomic(args.out, format_results(rows, reference, meta, args))
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
