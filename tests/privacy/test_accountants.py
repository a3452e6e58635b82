"""The accountants agree with dp-accounting's independent analysis, and keep their state."""

from __future__ import annotations

import json

import dp_accounting
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from privmed.errors import PrivacyError
from privmed.privacy.accountants import LaplaceAccountant, PRVAccountant, RDPAccountant, make_accountant

DELTA = 1e-5
# (noise multiplier, sample rate, steps); the first is the Done-when point.
RDP_GRID = [(1.0, 0.01, 10000), (0.8, 0.004, 3000), (2.0, 0.1, 500), (1.5, 0.02, 100), (4.0, 0.05, 20000), (0.6, 0.001, 50000)]
PRV_GRID = [(1.0, 0.01, 10000), (1.2, 0.05, 300), (2.0, 0.1, 500)]


def dpsgd_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), steps
    )


@pytest.mark.parametrize(("noise", "rate", "steps"), RDP_GRID)
def test_rdp_epsilon_matches_dp_accounting(noise: float, rate: float, steps: int) -> None:
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=noise, sample_rate=rate, num_steps=steps)
    reference = RdpAccountant()
    reference.compose(dpsgd_event(noise, rate, steps))
    assert accountant.get_epsilon(DELTA) == pytest.approx(reference.get_epsilon(DELTA), rel=0.01)


def test_done_when_point_gives_the_known_rdp_epsilon() -> None:
    accountant = make_accountant("rdp")
    accountant.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=10000)
    assert accountant.get_epsilon(1e-5) == pytest.approx(6.71, abs=0.01)


@pytest.mark.parametrize(("noise", "rate", "steps"), PRV_GRID)
def test_prv_epsilon_matches_dp_accounting_pld(noise: float, rate: float, steps: int) -> None:
    accountant = PRVAccountant()
    accountant.step(noise_multiplier=noise, sample_rate=rate, num_steps=steps)
    reference = PLDAccountant()
    reference.compose(dpsgd_event(noise, rate, steps))
    epsilon, expected = accountant.get_epsilon(DELTA), reference.get_epsilon(DELTA)
    assert epsilon == pytest.approx(expected, rel=0.01)
    rdp = RDPAccountant()
    rdp.step(noise_multiplier=noise, sample_rate=rate, num_steps=steps)
    assert epsilon < rdp.get_epsilon(DELTA)


def test_heterogeneous_history_composes_like_dp_accounting() -> None:
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=1.2, sample_rate=0.02, num_steps=400)
    accountant.step(noise_multiplier=0.9, sample_rate=0.01, num_steps=800)
    reference = RdpAccountant()
    reference.compose(dp_accounting.ComposedDpEvent([dpsgd_event(1.2, 0.02, 400), dpsgd_event(0.9, 0.01, 800)]))
    assert accountant.get_epsilon(DELTA) == pytest.approx(reference.get_epsilon(DELTA), rel=0.01)


def test_history_merges_consecutive_identical_steps() -> None:
    accountant = RDPAccountant()
    for _ in range(3):
        accountant.step(noise_multiplier=1.0, sample_rate=0.01)
    accountant.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=7)
    accountant.step(noise_multiplier=2.0, sample_rate=0.01)
    accountant.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=0)
    assert accountant.history == [(1.0, 0.01, 10), (2.0, 0.01, 1)]
    assert accountant.steps == 11
    one_call = RDPAccountant()
    one_call.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=10)
    one_call.step(noise_multiplier=2.0, sample_rate=0.01)
    assert accountant.get_epsilon(DELTA) == one_call.get_epsilon(DELTA)


@pytest.mark.parametrize("name", ["rdp", "prv", "laplace"])
def test_no_steps_means_no_epsilon(name: str) -> None:
    accountant = make_accountant(name)
    assert accountant.steps == 0 and accountant.get_epsilon(DELTA) == 0.0


@pytest.mark.parametrize("name", ["rdp", "prv"])
def test_state_dict_survives_json_and_resumes_accounting(name: str) -> None:
    accountant = make_accountant(name)
    accountant.step(noise_multiplier=1.1, sample_rate=0.05, num_steps=30)
    accountant.step(noise_multiplier=0.9, sample_rate=0.05, num_steps=20)
    state = json.loads(json.dumps(accountant.state_dict()))
    resumed = make_accountant(name)
    resumed.load_state_dict(state)
    assert resumed.history == accountant.history and resumed.steps == 50
    assert resumed.get_epsilon(DELTA) == accountant.get_epsilon(DELTA)
    resumed.step(noise_multiplier=0.9, sample_rate=0.05)
    assert resumed.history[-1] == (0.9, 0.05, 21)


def test_state_of_another_accountant_is_refused() -> None:
    rdp = RDPAccountant()
    rdp.step(noise_multiplier=1.0, sample_rate=0.1)
    prv = PRVAccountant()
    with pytest.raises(PrivacyError, match="'rdp'"):
        prv.load_state_dict(rdp.state_dict())
    assert prv.history == []
    with pytest.raises(PrivacyError, match="state_dict"):
        prv.load_state_dict({"history": []})


def test_laplace_composition_is_the_sum_and_matches_dp_accounting() -> None:
    accountant = LaplaceAccountant()
    accountant.step(epsilon=0.5, num_steps=3)
    accountant.step(epsilon=2.0)
    epsilon = accountant.get_epsilon(1e-5)
    assert epsilon == pytest.approx(3.5) and accountant.get_epsilon(0.0) == epsilon
    assert accountant.history == [(0.5, 3), (2.0, 1)] and accountant.steps == 4
    # dp-accounting's LaplaceDpEvent has sensitivity 1: epsilon = 1 / noise_multiplier.
    reference = PLDAccountant()
    reference.compose(dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(dp_accounting.LaplaceDpEvent(2.0), 3),
        dp_accounting.LaplaceDpEvent(0.5),
    ]))
    assert reference.get_delta(epsilon) < 1e-12  # the sum is a pure-DP guarantee ...
    assert reference.get_delta(0.97 * epsilon) > 1e-4  # ... and a tight one


def test_laplace_state_round_trip() -> None:
    accountant = LaplaceAccountant()
    accountant.step(epsilon=0.25, num_steps=4)
    resumed = LaplaceAccountant()
    resumed.load_state_dict(json.loads(json.dumps(accountant.state_dict())))
    assert resumed.history == [(0.25, 4)] and resumed.get_epsilon(0) == 1.0


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"noise_multiplier": 0.0, "sample_rate": 0.1}, "noise_multiplier"),
        ({"noise_multiplier": -1.0, "sample_rate": 0.1}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5}, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "num_steps": -1}, "num_steps"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "num_steps": 2.5}, "num_steps"),
    ],
)
def test_bad_dpsgd_steps_are_refused(parameters: dict, message: str) -> None:
    accountant = RDPAccountant()
    with pytest.raises(PrivacyError, match=message):
        accountant.step(**parameters)
    assert accountant.history == []


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5])
def test_dpsgd_epsilon_needs_delta_in_open_unit_interval(delta: float) -> None:
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=1.0, sample_rate=0.1)
    with pytest.raises(PrivacyError, match="delta"):
        accountant.get_epsilon(delta)


def test_laplace_step_refuses_non_positive_epsilon() -> None:
    with pytest.raises(PrivacyError, match="epsilon"):
        LaplaceAccountant().step(epsilon=0.0)


def test_unknown_accountant_lists_the_names() -> None:
    with pytest.raises(PrivacyError, match="rdp, prv, laplace"):
        make_accountant("gdp")
    assert isinstance(make_accountant(" PRV "), PRVAccountant)
