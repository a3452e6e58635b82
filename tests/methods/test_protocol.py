"""One protocol for every registered method: fit(data) -> self, release, privacy_report(), save and load.

Parametrised over :mod:`privmed.methods.registry`, so a new method runs here from its registry entry;
it needs only its tiny options in ``TINY`` below (the test fails, naming it, until they are there).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from privmed.data import load
from privmed.data.dataset import ImageDataset
from privmed.methods.base import GenerativeMethod, PrivatizingMethod
from privmed.methods.flow_training import flow_run
from privmed.methods.registry import MethodKind, get_method, method_names

EPSILON = 4.0
TINY: dict[str, dict[str, Any]] = {
    "dpwgan": {"patch_size": 32, "patches_per_subject": 4, "batch_size": 8, "max_steps": 4, "n_critic": 2,
               "generator_channels": 8, "critic_channels": 8, "latent_dim": 16},
    "acgan": {"batch_size": 16, "max_steps": 4, "generator_channels": 8, "discriminator_channels": 8, "latent_dim": 16,
              "discriminator_steps": 2, "generator_ema": 0.9},
    "cadp": {"clip": 2.0},
    "dpglow": {"alpha": 0.4},
    "pixel-ldp": {},
    "dpsgd-classifier": {"epochs": 1, "batch_size": 16},
    "dpmerf": {"rff_features": 50, "conv_features": 50, "steps": 2, "batch_per_class": 4, "generator_width": 8, "latent_dim": 8},
    "vessel-sim": {"fit_images": 1, "fit_evaluations": 2},
}
"""Tiny options per registered method (``flow`` is added for the methods that take one)."""
DATA = {"dpwgan": "phantom:train", "vessel-sim": "phantom:train"}
"""The phantom each method trains on (default: phantom-classes, 64 images)."""


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Glow trained for one epoch on public phantom images, as a flow directory."""
    out = tmp_path_factory.mktemp("flow")
    public = load("phantom-classes:test", n=64)
    torch.manual_seed(0)
    flow_run(public, out, levels=2, depth=1, hidden=8, epochs=1, batch_size=32).fit(public)
    return out


def _data(name: str) -> ImageDataset:
    return load(DATA.get(name, "phantom-classes:train"), **({} if name in DATA else {"n": 64}))


def _make(name: str, run_dir: Path, flow_dir: Path) -> Any:
    spec = get_method(name)
    options = dict(TINY[name])
    accepted = spec.options()[1]
    if "flow" in accepted:
        options["flow"] = flow_dir
    if "run_dir" in accepted:
        options["run_dir"] = run_dir
    if "seed" in accepted:
        options["seed"] = 0
    return spec.make(EPSILON, **options)


def _output(method: Any, data: ImageDataset, seed: int) -> np.ndarray:
    """What the method releases for ``seed``: samples, a privatized copy, or the model's predictions."""
    if isinstance(method, GenerativeMethod):
        return method.sample(6, seed=seed).images
    if isinstance(method, PrivatizingMethod):
        return method.privatize(data, seed=seed).images
    return method.predict_proba(data.subset(np.arange(6)))


def test_every_registered_method_has_tiny_options() -> None:
    assert set(method_names()) <= set(TINY), f"add tiny options to TINY for {sorted(set(method_names()) - set(TINY))}"


@pytest.mark.parametrize("name", method_names())
def test_the_method_follows_the_protocol(name: str, tmp_path: Path, flow_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVMED_LEDGER", str(tmp_path / "ledger.json"))
    spec, data = get_method(name), _data(name)
    # A privatizer learns only from public data (here the flow's): it is fitted on that, then privatizes the private set.
    training = load("phantom-classes:test", n=64) if spec.kind is MethodKind.PRIVATIZING else data
    method = _make(name, tmp_path / "run", flow_dir)
    assert method.fit(training) is method
    released = _output(method, data, seed=3)
    report = method.privacy_report()
    assert 0 < report.epsilon <= EPSILON * (1 + 1e-9) and math.isfinite(report.epsilon)
    assert report.unit and report.delta is not None and 0 <= report.delta < 1
    if spec.kind is MethodKind.PRIVATIZING:
        # Nothing to save: the method is its options (and its flow directory); rebuilt, it releases the same for a seed.
        again = _make(name, tmp_path / "run", flow_dir).fit(training)
        np.testing.assert_array_equal(_output(again, data, seed=3), released)
        assert again.privacy_report().epsilon == pytest.approx(report.epsilon)
    else:
        loaded = spec.load_run(tmp_path / "run")
        np.testing.assert_allclose(_output(loaded, data, seed=3), released, rtol=1e-6, atol=1e-7)
        assert loaded.privacy_report().epsilon == pytest.approx(report.epsilon)
        assert loaded.privacy_report().unit == report.unit and loaded.privacy_report().delta == pytest.approx(report.delta)
