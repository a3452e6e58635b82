"""One cell of a sweep: release the method at one epsilon and seed into its run directory, then measure utility.

Every cell is a real release of the private data and is booked in the user's budget ledger: the
GANs book themselves (``DPTrainer``), the local-DP privatizers are reserved and settled here with
the same ledger calls ``privmed privatize`` makes. The ``inf`` cells are non-private references
(a GAN trained without DP; for the privatizers the real data itself) and book nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privmed.errors import PrivmedError
from privmed.fileio import write_json_atomic
from privmed.sweep.config import GENERATIVE_METHODS, SWEEP_FORMAT, SweepConfig, _epsilon_json, _generative_class

if TYPE_CHECKING:
    from privmed.data.dataset import ImageDataset
    from privmed.methods.local_dp import LaplacePrivatizer

logger = logging.getLogger(__name__)


def run_cell(config: SweepConfig, epsilon: float, seed: int, cell_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Release one cell (train or privatize at ``epsilon`` with ``seed``) into ``cell_dir`` and measure its utility.

    Writes the method's run files, ``evaluation/`` for classifier metrics, and ``result.json`` last,
    which is returned. A cell that already holds result.json is not run again (that would be a second
    release); one without it is continued (GANs resume from their checkpoint).
    """
    from privmed.data import load

    cell = Path(cell_dir)
    result_path = cell / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text(encoding="utf-8"))
    epsilon = float(epsilon)
    start = time.monotonic()
    cell.mkdir(parents=True, exist_ok=True)
    test = load(config.test)
    if config.method in GENERATIVE_METHODS:
        metrics = _generative_cell(config, epsilon, seed, cell, test)
    else:
        metrics = _local_dp_cell(config, epsilon, seed, cell, test)
    result = {
        "format": SWEEP_FORMAT,
        "method": config.method,
        "epsilon": _epsilon_json(epsilon),
        "seed": seed,
        "metric": config.metric,
        "utility": float(metrics[config.metric]),
        "metrics": metrics,
        "wall_seconds": round(time.monotonic() - start, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(result_path, result)
    return result


def _generative_cell(config: SweepConfig, epsilon: float, seed: int, cell: Path, test: ImageDataset) -> dict[str, Any]:
    """Train the GAN in ``cell`` (resuming a started run), sample from it and evaluate the samples."""
    from privmed.data import load
    from privmed.runs import RunDirectory

    method_class = _generative_class(config.method)
    data = load(config.data)
    if RunDirectory(cell).config_path.exists():
        model = method_class.from_run(cell)
        model.fit(data, resume=True, data_ref=config.data)
    else:
        model = method_class(epsilon, seed=seed, run_dir=cell, **config.options)
        model.fit(data, data_ref=config.data)
    settings = config.evaluation
    n_samples = settings["samples"] or len(data)
    samples = model.sample(n_samples, seed=seed)
    if config.method == "dpwgan":
        from privmed.evaluate.segmentation import segmentation_utility

        return segmentation_utility(samples, test, settings["unet_steps"], settings["patch_size"], seed)
    return _classifier_utility(samples, test, settings, seed, cell)


def _classifier_utility(train: ImageDataset, test: ImageDataset, settings: dict[str, Any], seed: int, cell: Path) -> dict[str, Any]:
    """ROC AUC (with CI) and accuracy of a classifier trained on ``train`` and tested on real ``test``."""
    from privmed.evaluate.classifier import evaluate_classifier, write_classifier_report

    metrics, probabilities = evaluate_classifier(
        train, test, model=settings["model"], epochs=settings["epochs"], batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"], seed=seed, confidence=settings["confidence"], n_resamples=settings["n_resamples"],
    )
    write_classifier_report(cell / "evaluation", metrics, test.labels, probabilities)
    return {
        "roc_auc": metrics.roc_auc, "roc_auc_low": metrics.roc_auc_low, "roc_auc_high": metrics.roc_auc_high,
        "accuracy": metrics.accuracy, "n_train": metrics.n_train, "n_test": metrics.n_test,
    }


def _privatizer(config: SweepConfig, epsilon: float, data: ImageDataset) -> LaplacePrivatizer:
    """The configured local-DP method at ``epsilon`` (the flow loaded from options.flow)."""
    options = config.options
    secure_rng = bool(options.get("secure_rng", False))
    if config.method == "pixel-ldp":
        from privmed.methods.pixel_ldp import PixelLDP

        return PixelLDP(epsilon, secure_rng=secure_rng).fit(data)
    from privmed.methods.flow_training import load_trained_flow

    trained = load_trained_flow(options["flow"])
    if config.method == "cadp":
        from privmed.methods.cadp import CADP

        return CADP(trained.flow, epsilon, float(options["clip"]), paper_scale=bool(options.get("paper_scale", False)), secure_rng=secure_rng)
    from privmed.methods.dpglow import DPGLOW

    if trained.latent_min is None or trained.latent_max is None:
        raise PrivmedError(f"{options['flow']}: the flow has no training latent range (train it to the last epoch first)")
    return DPGLOW(trained.flow, epsilon, float(options.get("alpha", 0.4)), secure_rng=secure_rng).fit_range(trained.latent_min, trained.latent_max)


def _local_dp_cell(config: SweepConfig, epsilon: float, seed: int, cell: Path, test: ImageDataset) -> dict[str, Any]:
    """Privatize ``config.data`` at ``epsilon`` into ``cell`` (booked in the ledger) and evaluate a classifier on it."""
    from privmed.data import load

    data = load(config.data)
    privacy_path, data_path = cell / "privacy.json", cell / "data.npz"
    if math.isinf(epsilon):
        release = data
        if not privacy_path.exists():
            _non_private_report(data).to_json(privacy_path)
    elif privacy_path.exists() and data_path.exists():
        release = load(str(data_path))
        _settle(cell, privacy_path)
    else:
        release = _privatize(config, epsilon, data, cell, privacy_path, data_path)
    return _classifier_utility(release, test, config.evaluation, seed, cell)


def _release_id(cell: Path, stale_release: bool) -> str:
    """The cell's ledger release id, kept in ``cell/ledger.json`` so a re-run replaces its own entry.

    When a previous attempt left privatized data on disk without finishing (``stale_release``), that
    copy may have been read: its reservation stays in the ledger and the new attempt books a new id.
    """
    path = cell / "ledger.json"
    if path.exists() and not stale_release:
        return str(json.loads(path.read_text(encoding="utf-8"))["release_id"])
    if stale_release:
        logger.warning("%s: an unfinished earlier release left data on disk; it stays booked and a new release is booked", cell)
    release_id = f"sweep-{uuid.uuid4().hex[:16]}"
    write_json_atomic(path, {"release_id": release_id})
    return release_id


def _privatize(config: SweepConfig, epsilon: float, data: ImageDataset, cell: Path, privacy_path: Path, data_path: Path) -> ImageDataset:
    """Reserve, privatize, write data.npz and privacy.json, settle: the steps of ``privmed privatize``."""
    from privmed.methods.local_dp import release

    method = _privatizer(config, epsilon, data)
    release_id = _release_id(cell, stale_release=data_path.exists())
    privatized, _, _ = release(
        method, data, data_path, privacy_path, release_id=release_id,
        description=f"sweep {config.method} epsilon={epsilon:g} cell={cell}", overwrite=True,
    )
    return privatized


def _settle(cell: Path, privacy_path: Path) -> None:
    """Settle a finished release whose run stopped before its evaluation (settling twice is harmless)."""
    from privmed.privacy.ledger import BudgetLedger
    from privmed.privacy.report import PrivacyReport

    BudgetLedger().settle(_release_id(cell, stale_release=False), PrivacyReport.from_json(privacy_path).epsilon)


def _non_private_report(data: ImageDataset) -> Any:
    """The report of an ``inf`` local-DP cell: the real data itself, no guarantee, nothing booked."""
    from privmed.privacy.plan import NON_PRIVATE_MECHANISM
    from privmed.privacy.report import PrivacyReport
    from privmed.privacy.units import PrivacyUnit

    return PrivacyReport(
        mechanism=NON_PRIVATE_MECHANISM,
        accountant="none",
        unit=PrivacyUnit.RECORD.describe(data.record_kind),
        n_units=len(data),
        epsilon=math.inf,
        delta=0.0,
        notes=["epsilon = inf: the classifier is trained on the real data itself, a non-private reference; nothing is released or booked"],
        dataset=data.name,
    )
