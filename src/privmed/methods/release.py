"""The one release path: write a release directory (the data and its privacy.json) and book it.

:func:`release` is what ``privmed generate``, ``privmed privatize``, the sweep, the demo and the
benchmarks call. For a privatizing method it is the whole booked release: reserve the epsilon in the
budget ledger, privatize, write the data, then privacy.json, then settle. For a fitted generative
method the private step was its training, which :class:`~privmed.methods.trainer.DPTrainer` booked
already; drawing samples is post-processing, so the release writes them with the training's report
and books nothing new.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivacyError, PrivmedError
from privmed.methods.base import GenerativeMethod, PrivatizingMethod
from privmed.privacy.report import PrivacyReport

DATA_NAME = "data"
OUTPUT_FORMATS = ("npz", "png", "nifti")


@dataclass(frozen=True)
class Release:
    """A written release: the released data, its guarantee, and where both went."""

    data: ImageDataset
    report: PrivacyReport
    data_path: Path
    privacy_path: Path


def output_path(out: str | Path, output_format: str = "npz") -> Path:
    """Where a release writes its data inside ``out``: data.npz, or a data/ folder for png and nifti."""
    output_format = str(getattr(output_format, "value", output_format))
    if output_format not in OUTPUT_FORMATS:
        raise PrivmedError(f"unknown output format {output_format!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    return Path(out) / (f"{DATA_NAME}.npz" if output_format == "npz" else DATA_NAME)


def release(
    method: GenerativeMethod | PrivatizingMethod,
    out: str | Path,
    *,
    data: ImageDataset | None = None,
    n: int | None = None,
    seed: int | None = None,
    output_format: str = "npz",
    data_path: str | Path | None = None,
    release_id: str | None = None,
    description: str = "",
    overwrite: bool = False,
    flow_saw_the_data: bool = False,
    flow_trained_on_private: bool = False,
    **sample_options: Any,
) -> Release:
    """Write the release of ``method`` into the directory ``out`` (data, then privacy.json) and book it.

    A fitted generative method draws ``n`` records (``seed``, ``sample_options`` such as
    ``class_label`` go to ``sample``); a privatizing method privatizes ``data`` under ``release_id``
    (default: a fresh one) with ``description`` in the ledger. ``data_path`` overrides
    :func:`output_path`. A directory that holds a release already is refused unless ``overwrite``.
    ``flow_saw_the_data``: a privatizer's flow was trained on ``data`` (see
    :func:`privmed.methods.flow_training.flow_trained_on`); the release is then refused unless
    ``flow_trained_on_private`` is given too, and states no guarantee.
    """
    from privmed.data import save

    out = Path(out)
    privacy_path = out / "privacy.json"
    if privacy_path.exists() and not overwrite:
        raise PrivmedError(f"{out} already holds a release (privacy.json): choose another --out")
    target = Path(data_path) if data_path is not None else output_path(out, output_format)
    output_format = str(getattr(output_format, "value", output_format))
    if isinstance(method, PrivatizingMethod):
        if data is None:
            raise PrivmedError("a privatizing method releases the data it is given: pass data")
        return _privatized(
            method, data, target, privacy_path, output_format, seed, release_id, description, overwrite,
            flow_saw_the_data, flow_trained_on_private,
        )
    if not isinstance(method, GenerativeMethod):
        raise PrivmedError(f"{type(method).__name__} releases no records (it is neither generative nor privatizing)")
    if n is None or n < 1:
        raise PrivmedError(f"the number of records to release must be positive, got {n}")
    report = method.privacy_report()
    samples = method.sample(n, seed=seed, **sample_options)
    out.mkdir(parents=True, exist_ok=True)
    written = Path(save(samples, target, format=output_format, overwrite=overwrite))
    report.to_json(privacy_path)
    return Release(samples, report, written, privacy_path)


def _privatized(
    method: PrivatizingMethod, data: ImageDataset, target: Path, privacy_path: Path, output_format: str, seed: int | None,
    release_id: str | None, description: str, overwrite: bool, flow_saw_the_data: bool, flow_trained_on_private: bool,
) -> Release:
    """Reserve, privatize, write the data and privacy.json, settle: a local-DP release is never written unbooked."""
    from privmed.data import save
    from privmed.privacy.group import group_sizes
    from privmed.privacy.ledger import BudgetLedger, dataset_key
    from privmed.privacy.units import PrivacyUnit

    check = getattr(method, "check_data", None)
    if callable(check):
        check(data)
    if flow_saw_the_data and not flow_trained_on_private:
        raise PrivacyError(
            f"the flow was trained on {data.name}, the data this release privatizes: flow training is not private, so the "
            "release would protect nothing; train the flow on public data, or pass flow_trained_on_private "
            "(--flow-trained-on-private) to make a release that states no guarantee"
        )
    if flow_saw_the_data:
        method.flow_trained_on_private = True
        description += " (no guarantee: flow trained on this data)"
    unit = PrivacyUnit.IMAGE if data.record_kind == "image" else PrivacyUnit.RECORD
    release_id = release_id or f"{getattr(method, 'method_name', 'release')}-{uuid.uuid4().hex[:12]}"
    ledger = BudgetLedger()
    ledger.reserve(dataset_key(data), release_id, method.release_epsilon, 0.0, unit, description,
                   n_units=len(data), group_sizes=group_sizes(data, unit))
    privatized = method.privatize(data, seed=seed)
    report = method.privacy_report()
    privacy_path.parent.mkdir(parents=True, exist_ok=True)
    written = Path(save(privatized, target, format=output_format, overwrite=overwrite))
    report.to_json(privacy_path)
    ledger.settle(release_id, method.accounted_epsilon)
    return Release(privatized, report, written, privacy_path)


def release_from_run(
    run_dir: str | Path, out: str | Path, *, n: int, seed: int | None = None, output_format: str = "npz", class_label: int | str | None = None
) -> Release:
    """Release ``n`` records sampled from the finished generative run in ``run_dir`` into ``out``.

    The run's method is looked up in :mod:`privmed.methods.registry`; ``class_label`` (index or name)
    is for class-conditional methods.
    """
    from privmed.methods.registry import MethodKind, method_of_run

    if (Path(out) / "privacy.json").exists():
        raise PrivmedError(f"{out} already holds a release (privacy.json): choose another --out")
    spec = method_of_run(run_dir)
    if spec.kind is not MethodKind.GENERATIVE:
        raise PrivmedError(f"{run_dir} is a {spec.name!r} run, which samples nothing: generate needs a generative method's run")
    if class_label is not None and not spec.class_conditional:
        raise PrivmedError(f"{run_dir} is a {spec.name!r} run: --class needs a class-conditional run (privmed train acgan)")
    options = {"class_label": class_label} if class_label is not None else {}
    return release(spec.load_run(run_dir), out, n=n, seed=seed, output_format=output_format, **options)
