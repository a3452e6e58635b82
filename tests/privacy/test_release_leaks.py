"""What a release publishes besides the mechanism's output must not depend on the private data.

Each release kind is made twice, on neighbouring datasets (one unit's data changed) with the same
options and seed. Every published file other than the mechanism's output must then be identical:
no hash of the data, no parameter or count read off it. The mechanism's outputs (generated or
privatized images, the samples/ grids) may differ; so may the fields that are not computed from any
data at all (``created`` timestamps, the random ``run_id``). Files that are never published are left
out and named: checkpoints (private training state) and metrics.csv (losses on private batches,
for the operator). The comparison holds whether or not the two runs draw the same noise.

The second half checks privmed's epsilons against dp-accounting alone on a grid of settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from privmed.data import load
from privmed.data.dataset import ImageDataset
from tests.privacy.independent_accounting import pld_epsilon, rdp_epsilon

VARYING = {"created", "run_id"}
"""Fields set from the clock or a fresh random id: never from the data."""
NOT_PUBLISHED = ("checkpoints/", "metrics.csv")
"""Private training state and operator-only losses: never part of a release."""


def _neighbour(data: ImageDataset, unit: int = 0) -> ImageDataset:
    """``data`` with every record of one subject changed: inverted images, and for segmentations a
    nearly empty vessel map (one subject whose vessel area shrinks)."""
    records = data.subjects == data.subjects[np.flatnonzero(data.unit_ids("patient") == unit)[0]]
    images = data.images.copy()
    images[records] = 1.0 - images[records]
    changed = {"images": images}
    if data.segmentations is not None:
        segmentations = data.segmentations.copy()
        segmentations[records] = 0
        segmentations[records, 0, 30:33, 30:33] = 1
        changed["segmentations"] = segmentations
    return dataclasses.replace(data, **changed)


def _strip(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _published(root: Path, outputs: tuple[str, ...]) -> dict[str, object]:
    """Every file under ``root`` except the mechanism's ``outputs`` and what is never published; JSON parsed."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name.startswith(outputs) or name.startswith(NOT_PUBLISHED):
            continue
        if path.suffix == ".json":
            files[name] = _strip(json.loads(path.read_text()))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                files[name] = {key: _strip(json.loads(str(archive[key]))) if key == "metadata" else archive[key].tolist()
                               for key in archive.files if key != "images"}
        else:
            files[name] = path.read_bytes()
    return files


def _assert_same_besides_output(first: Path, second: Path, outputs: tuple[str, ...]) -> None:
    a, b = _published(first, outputs), _published(second, outputs)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between neighbouring datasets"
    assert "privacy.json" in a or any(name.endswith("privacy.json") for name in a)


# ---------------------------------------------------------------- releases on neighbouring datasets

WGAN = {"patch_size": 32, "patches_per_subject": 6, "batch_size": 2, "max_steps": 4, "generator_channels": 8,
        "critic_channels": 8, "latent_dim": 16, "seed": 3}
ACGAN_OPTIONS = {"batch_size": 16, "max_steps": 2, "generator_channels": 8, "discriminator_channels": 8, "latent_dim": 16, "seed": 3}


@pytest.fixture(scope="module")
def vessels() -> ImageDataset:
    return load("phantom:train", n=6, size=64)


@pytest.fixture(scope="module")
def wgan_runs(vessels: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from privmed.methods.dpwgan import DPWGAN

    root = tmp_path_factory.mktemp("wgan")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(root / "ledger.json"))
        for name, data in (("a", vessels), ("b", _neighbour(vessels))):
            DPWGAN(8.0, unit="patient", run_dir=root / name / "run", **WGAN).fit(data)
    return root / "a", root / "b"


@pytest.mark.parametrize("unit", ["patch", "patient"])
def test_dpwgan_patch_count_is_a_public_parameter(vessels: ImageDataset, unit: str) -> None:
    """Finding 4: min(1000, what the smallest subject supplies) made every patient's patches depend on one patient's vessels."""
    from privmed.methods.dpwgan import DPWGAN

    model = DPWGAN(8.0, unit=unit, patch_size=32)
    first, second = model.training_pairs(vessels), model.training_pairs(_neighbour(vessels))
    assert len(first) == len(second) == vessels.n_units("patient") * 1000
    others = first.subjects != vessels.subjects[0]
    assert np.array_equal(first.images[others], second.images[others])  # the other patients' patches are untouched


def test_dpwgan_run_publishes_nothing_data_dependent(wgan_runs: tuple[Path, Path]) -> None:
    first, second = wgan_runs
    _assert_same_besides_output(first / "run", second / "run", outputs=("samples/",))
    report = json.loads((first / "run" / "privacy.json").read_text())
    assert report["dataset"] == "phantom"  # a name, no hash (finding 2)


def test_generated_release_publishes_nothing_data_dependent(wgan_runs: tuple[Path, Path]) -> None:
    from privmed.methods.release import release_from_run

    for root in wgan_runs:
        release_from_run(root / "run", root / "generated", n=8, seed=0, output_format="png")
    _assert_same_besides_output(wgan_runs[0] / "generated", wgan_runs[1] / "generated", outputs=("data/images/", "data/labels/"))


def test_acgan_run_publishes_nothing_data_dependent(tmp_path: Path) -> None:
    from privmed.methods.acgan import ACGAN

    data = load("phantom-classes:train")
    data = data.subset(np.arange(64))
    for name, version in (("a", data), ("b", _neighbour(data))):
        ACGAN(8.0, unit="image", run_dir=tmp_path / name, **ACGAN_OPTIONS).fit(version)
    _assert_same_besides_output(tmp_path / "a", tmp_path / "b", outputs=("samples/",))


@pytest.fixture(scope="module")
def glow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny unconditional flow trained on public data (not the data privatized below)."""
    from typer.testing import CliRunner

    from privmed.cli import app

    out = tmp_path_factory.mktemp("glow") / "flow"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(out.parent / "ledger.json"))
        result = CliRunner().invoke(app, ["train", "flow", "--data", "phantom-classes:train", "--out", str(out), "--levels", "1",
                                          "--depth", "2", "--hidden", "8", "--epochs", "1", "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    return out


def _privatizer(kind: str, glow: Path):
    from privmed.methods.cadp import CADP
    from privmed.methods.dpglow import DPGLOW
    from privmed.methods.flow_training import load_trained_flow
    from privmed.methods.pixel_ldp import PixelLDP

    if kind == "pixel-ldp":
        return PixelLDP(5.0)
    trained = load_trained_flow(glow)
    if kind == "cadp":
        return CADP(trained.flow, 5.0, 2.0)
    return DPGLOW(trained.flow, 50.0).fit_range(trained.latent_min, trained.latent_max)


@pytest.mark.parametrize("kind", ["cadp", "dpglow", "pixel-ldp"])
@pytest.mark.parametrize("output_format", ["npz", "png"])
def test_privatized_release_publishes_nothing_data_dependent(kind: str, output_format: str, glow_dir: Path, tmp_path: Path) -> None:
    """Finding 5 (labels, subjects and sources are not written) and finding 2 (no hash)."""
    from privmed.methods.release import release

    data = load("phantom-classes:test")
    data = dataclasses.replace(data.subset(np.arange(24)), subjects=[f"patient-{i // 2}" for i in range(24)])
    for name, version in (("a", data), ("b", _neighbour(data))):
        root = tmp_path / name
        root.mkdir()
        target = root / ("data.npz" if output_format == "npz" else "images")
        release(_privatizer(kind, glow_dir), root, data=version, data_path=target, release_id=f"{kind}-{name}",
                description="leak test", output_format=output_format)
    _assert_same_besides_output(tmp_path / "a", tmp_path / "b", outputs=("images/images/",))
    released = load(str(tmp_path / "a" / ("data.npz" if output_format == "npz" else "images")))
    assert released.labels is None and not set(released.subjects) & set(data.subjects)


def test_neighbouring_datasets_really_differ(vessels: ImageDataset) -> None:
    """The comparisons above are not vacuous: the neighbour changes one patient's images and vessel map."""
    other = _neighbour(vessels)
    changed = [int(not np.array_equal(vessels.images[i], other.images[i])) for i in range(len(vessels))]
    assert 1 <= sum(changed) < len(vessels)


def test_privacy_json_holds_no_hash_of_the_data(tmp_path: Path) -> None:
    """Finding 2: dataset was name@sha256(data)[:16], which one changed pixel changes."""
    from privmed.methods.pixel_ldp import PixelLDP
    from privmed.methods.release import release

    data = load("phantom-classes:test").subset(np.arange(8))
    pixel = data.images.copy()
    pixel[0, 0, 0, 0] = 1.0 - pixel[0, 0, 0, 0]
    for name, version in (("a", data), ("b", dataclasses.replace(data, images=pixel))):
        (tmp_path / name).mkdir()
        release(PixelLDP(1.0), tmp_path / name, data=version, release_id=name, description="")
    first, second = (json.loads((tmp_path / n / "privacy.json").read_text()) for n in "ab")
    assert first["dataset"] == second["dataset"] == data.name
    assert _strip(first) == _strip(second)


# ---------------------------------------------------------------- epsilons against dp-accounting

def _grid() -> list[tuple[float, float, int, float]]:
    """36 settings: the corners of the ranges and 20 log-uniform draws (fixed seed), q in [1e-3, 0.5],
    noise in [0.4, 10], steps in [10, 1e5], delta in [1e-9, 1e-3]."""
    corners = [(q, s, t, d) for q in (1e-3, 0.5) for s in (0.4, 10.0) for t in (10, 100_000) for d in (1e-3, 1e-9)]
    rng = np.random.default_rng(2026)
    draws = [
        (float(10 ** rng.uniform(-3, math.log10(0.5))), float(10 ** rng.uniform(math.log10(0.4), 1)),
         round(10 ** rng.uniform(1, 5)), float(10 ** rng.uniform(-9, -3)))
        for _ in range(20)
    ]
    return corners + draws


GRID = _grid()


def test_the_grid_covers_the_ranges() -> None:
    q, s, t, d = (np.array(column) for column in zip(*GRID))
    assert len(GRID) >= 30
    assert (q.min(), q.max(), s.min(), s.max(), t.min(), t.max(), d.min(), d.max()) == (1e-3, 0.5, 0.4, 10.0, 10, 100_000, 1e-9, 1e-3)


@pytest.mark.filterwarnings("ignore:Optimal order")
@pytest.mark.parametrize("setting", GRID, ids=lambda s: "q{:.3g}-s{:.3g}-T{}-d{:.0e}".format(*s))
def test_rdp_epsilon_is_never_below_the_pld_and_within_five_percent_of_dp_accountings_rdp(setting: tuple[float, float, int, float]) -> None:
    """Finding 10: one-sided checks against dp-accounting, not against privmed itself."""
    from privmed.privacy.calibration import dpsgd_epsilon

    sample_rate, noise, steps, delta = setting
    epsilon = dpsgd_epsilon(noise, sample_rate, steps, delta, accountant="rdp")
    # Pessimistic PLD: an upper bound on the exact epsilon; fine enough that its rounding stays far below the RDP-PLD gap.
    exact = pld_epsilon(sample_rate, noise, steps, delta, interval=min(1e-2, max(2e-5, epsilon / 2000)))
    assert epsilon >= exact
    assert epsilon <= 1.05 * rdp_epsilon(sample_rate, noise, steps, delta)
