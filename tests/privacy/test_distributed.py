"""Data-parallel DP-SGD on 2 CPU processes (gloo) equals one process with the same global batch and noise.

One spawned 2-process job (``_worker``) computes everything the checks need and saves it; the test
process runs the single-process references and compares. A CLI test launches ``privmed train dpwgan
--distributed`` under torchrun.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from privmed.data import load
from privmed.data.phantom import make_class_phantom
from privmed.errors import PrivmedError
from privmed.methods.dpwgan import DPWGAN
from privmed.methods.flow_training import FlowTrainer
from privmed.models.flows import Glow
from privmed.privacy.distributed import SINGLE_PROCESS, ReplicaGroup, current_group, init_from_env, shutdown
from privmed.privacy.dpsgd import DPGradient
from privmed.privacy.ledger import BudgetLedger
from tests.privacy.independent_accounting import pld_epsilon, rdp_epsilon

WORLD = 2
TIMEOUT_S = 120
NOISE_SEED = 5
TINY_WGAN = {"patch_size": 32, "patches_per_subject": 8, "batch_size": 8, "generator_channels": 8, "critic_channels": 8, "max_steps": 4, "n_critic": 2}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- what both the workers and the single-process references compute -------------------------------------------


def _critic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.GroupNorm(2, 4), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64, 1))


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """10 private rows in 6 units (units of 1 to 3 rows) and 4 public rows."""
    rows = torch.randn(14, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    unit_ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, -1, -1, -1, -1])
    return rows, unit_ids


def engine_gradient(group: ReplicaGroup, noise_multiplier: float, *, secure: bool = False) -> list[torch.Tensor]:
    """The DP gradient of ``_critic`` on this rank's share of ``_global_batch`` (the whole batch on one process)."""
    model = _critic()
    engine = DPGradient(
        model, max_grad_norm=0.5, noise_multiplier=noise_multiplier, expected_batch_units=4.0,
        seed=None if secure else NOISE_SEED, reducer=group if group.distributed else None,
    )
    rows, unit_ids = _global_batch()
    private = torch.nonzero(unit_ids >= 0).flatten().numpy()
    public = torch.nonzero(unit_ids < 0).flatten().numpy()
    mine = torch.from_numpy(np.concatenate([group.shard_units(private, unit_ids.numpy()), group.shard(public)]))
    with engine.capture():
        scores = model(rows[mine]).squeeze(1)
    engine.backward(scores, unit_ids[mine])
    return [p.grad.clone() for p in model.parameters()]


def fit_flow(learning_rate: float) -> dict[str, Any]:
    """A tiny Glow trained for one epoch of 3 batches (16, 16, 8 images): final state, last batch's gradient, epoch loss."""
    images = torch.from_numpy(make_class_phantom(40, size=28, seed=0).images)
    torch.manual_seed(0)  # the coupling networks' default initialization (rank 0's is broadcast in a job)
    flow = Glow((1, 28, 28), levels=2, depth=1, hidden_channels=8, seed=0)
    trainer = FlowTrainer(flow, epochs=1, batch_size=16, learning_rate=learning_rate, seed=0).fit_tensors(images)
    return {
        "state": {name: value.clone() for name, value in flow.state_dict().items()},
        "grads": [p.grad.clone() for p in flow.parameters()],
        "loss": trainer.history_[0]["train_bits_per_dim"],
    }


def fit_dpwgan(run_dir: Path, resume: bool = False, **options: Any) -> DPWGAN:
    model = DPWGAN.from_run(run_dir, **options) if resume else DPWGAN(8.0, **TINY_WGAN, checkpoint_every=2, run_dir=run_dir, data_ref="phantom", **options)
    return model.fit(load("phantom"))


# ---- the 2-process job ------------------------------------------------------------------------------------------


def _worker(rank: int, port: int, out: Path) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    group = init_from_env()
    try:
        results: dict[str, Any] = {
            "engine_noise_free": engine_gradient(group, 0.0),
            "engine_noisy": engine_gradient(group, 1.3),
            "engine_secure": engine_gradient(group, 1.3, secure=True),
            "flow_frozen": fit_flow(0.0),
            "flow": fit_flow(1e-3),
        }
        fresh = fit_dpwgan(out / "fresh")
        results["fresh"] = {"generator": fresh.generator_.state_dict(), "epsilon": fresh.report_.epsilon, "steps": fresh.report_.steps}
        resumed = fit_dpwgan(out / "interrupted", resume=True)
        results["resumed"] = {"epsilon": resumed.report_.epsilon, "steps": resumed.report_.steps}
        torch.save(results, out / f"rank{rank}.pt")
    finally:
        shutdown()


def _run_job(out: Path) -> list[dict[str, Any]]:
    context = mp.start_processes(_worker, args=(_free_port(), out), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD}-process job did not finish in {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 2-process results, plus a single-process DP-WGAN run killed after its first checkpoint (the workers resume it)."""
    root = tmp_path_factory.mktemp("distributed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVMED_LEDGER", str(root / "ledger.json"))

        def stop_after_checkpoint(progress: Any) -> None:
            if progress.step == 3:
                raise _Interrupt

        with pytest.raises(_Interrupt):
            fit_dpwgan(root / "interrupted", on_progress=stop_after_checkpoint)
        ranks = _run_job(root)
    return {"root": root, "ranks": ranks, "ledger": root / "ledger.json"}


def _assert_close(actual: list[torch.Tensor], expected: list[torch.Tensor], tol: float) -> None:
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol)


# ---- (b) the 2-process gradient is the single-process gradient ------------------------------------------------


def test_noise_free_gradient_of_two_processes_equals_one_process(job: dict[str, Any]) -> None:
    expected = engine_gradient(SINGLE_PROCESS, 0.0)
    for rank in job["ranks"]:
        _assert_close(rank["engine_noise_free"], expected, tol=1e-5)


def test_noisy_gradient_of_two_processes_equals_one_process_with_the_same_noise_seed(job: dict[str, Any]) -> None:
    expected = engine_gradient(SINGLE_PROCESS, 1.3)
    noise_free = engine_gradient(SINGLE_PROCESS, 0.0)
    assert max(float((e - n).abs().max()) for e, n in zip(expected, noise_free)) > 0.05  # the noise is there, once
    for rank in job["ranks"]:
        _assert_close(rank["engine_noisy"], expected, tol=1e-5)


def test_secure_noise_is_added_once_and_every_rank_gets_the_same_gradient(job: dict[str, Any]) -> None:
    first, second = (rank["engine_secure"] for rank in job["ranks"])
    _assert_close(first, second, tol=0)
    noise = torch.cat([(g - n).flatten() for g, n in zip(first, engine_gradient(SINGLE_PROCESS, 0.0))])
    assert float(noise.std()) == pytest.approx(1.3 * 0.5 / 4.0, rel=0.35)  # one draw of sigma*C/B, not sqrt(2) of them


def test_units_are_never_split_across_ranks() -> None:
    batch = np.arange(10)
    units = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    shards = [ReplicaGroup(rank=r, world_size=WORLD).shard_units(batch, units) for r in range(WORLD)]
    assert sorted(np.concatenate(shards).tolist()) == batch.tolist()
    assert not set(units[shards[0]]) & set(units[shards[1]])


# ---- (a) one accounting for the whole job, (c) replicas stay identical --------------------------------------------


def test_the_job_epsilon_is_the_single_process_epsilon_and_is_booked_once(job: dict[str, Any], tmp_path: Path) -> None:
    report = json.loads((job["root"] / "fresh" / "privacy.json").read_text())
    single = fit_dpwgan(tmp_path / "single").privacy_report()
    assert report["steps"] == single.steps == TINY_WGAN["max_steps"]
    assert report["noise_multiplier"] == single.noise_multiplier and report["sample_rate"] == single.sample_rate
    args = (report["sample_rate"], report["noise_multiplier"], report["steps"], report["delta"])
    assert report["epsilon"] == single.epsilon
    assert pld_epsilon(*args) <= report["epsilon"] <= 1.05 * rdp_epsilon(*args)  # dp-accounting, not privmed
    assert all(rank["fresh"]["epsilon"] == report["epsilon"] for rank in job["ranks"])
    assert any("data-parallel on 2 processes" in note for note in report["notes"])
    releases = BudgetLedger(job["ledger"]).entries()
    descriptions = sorted(entry["description"] for entry in releases)
    assert len([d for d in descriptions if d.endswith("fresh")]) == 1
    assert len([d for d in descriptions if d.endswith("interrupted")]) == 1


def test_only_rank_0_wrote_the_run_and_every_rank_trained_the_same_networks(job: dict[str, Any]) -> None:
    first, second = job["ranks"]
    for name, value in first["fresh"]["generator"].items():
        assert torch.equal(value, second["fresh"]["generator"][name]), name
    for name, value in first["flow"]["state"].items():
        assert torch.equal(value, second["flow"]["state"][name]), name
    with (job["root"] / "fresh" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [2, 4]  # one row per checkpoint, written once
    assert all(math.isfinite(float(row["generator_loss"])) for row in rows)  # the generators did train (and stayed equal)


def test_a_run_resumed_on_two_processes_ends_with_the_steps_and_epsilon_of_an_uninterrupted_one(job: dict[str, Any]) -> None:
    report = json.loads((job["root"] / "interrupted" / "privacy.json").read_text())
    fresh = json.loads((job["root"] / "fresh" / "privacy.json").read_text())
    assert report["steps"] == fresh["steps"] and report["epsilon"] == fresh["epsilon"]
    assert all(rank["resumed"] == {"epsilon": fresh["epsilon"], "steps": fresh["steps"]} for rank in job["ranks"])
    statuses = [e["status"] for e in BudgetLedger(job["ledger"]).entries() if e["description"].endswith("interrupted")]
    assert statuses == ["settled"]


def test_the_data_parallel_flow_gradient_and_loss_equal_the_single_process_ones(job: dict[str, Any]) -> None:
    """At a learning rate of 0 every batch sees the same parameters: the summed gradient must be the one-process gradient."""
    expected = fit_flow(0.0)
    result = job["ranks"][0]["flow_frozen"]
    _assert_close(result["grads"], expected["grads"], tol=1e-5)
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    for name, value in result["state"].items():  # ActNorm initialized from the whole first batch, as on one process
        torch.testing.assert_close(value, expected["state"][name], rtol=1e-6, atol=1e-6, msg=name)


def test_without_torchrun_there_is_one_process_and_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert current_group() == SINGLE_PROCESS and SINGLE_PROCESS.shard(np.arange(5)).tolist() == list(range(5))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PrivmedError, match="torchrun"):
        init_from_env()


# ---- the CLI under torchrun --------------------------------------------------------------------------------------


def test_train_dpwgan_distributed_under_torchrun_writes_one_run(tmp_path: Path, isolated_ledger: Path) -> None:
    bin_dir = Path(sys.executable).parent
    torchrun, privmed = bin_dir / "torchrun", bin_dir / "privmed"
    if not (torchrun.exists() and privmed.exists()):
        pytest.skip("torchrun or the privmed script is not installed beside this Python")
    out = tmp_path / "R"
    command = [
        str(torchrun), "--nproc_per_node", str(WORLD), "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(privmed), "train", "dpwgan", "--distributed", "--data", "phantom", "--out", str(out), "--epsilon", "8",
        "--max-steps", "2", "--patch-size", "32", "--patches-per-subject", "8", "--batch-size", "8", "--base-channels", "8",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "PRIVMED_LEDGER": str(isolated_ledger)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("training done") == 1  # rank 0 alone prints
    report = json.loads((out / "privacy.json").read_text())
    assert report["steps"] == 2 and 0 < report["epsilon"] <= 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]
    assert len(BudgetLedger(isolated_ledger).entries()) == 1
