"""The DP-SGD classifier: calibrated to its target epsilon, reported through the accountant."""

from __future__ import annotations

import numpy as np
import pytest

from privmed.data import load
from privmed.errors import NotFittedError, PrivacyError, PrivmedError
from privmed.evaluate.classifier import class_scores, roc_auc
from privmed.methods.dpsgd_classifier import DPSGDClassifier
from privmed.privacy.calibration import default_delta, dpsgd_epsilon
from privmed.privacy.report import DPSGD_MECHANISM


@pytest.fixture(scope="module")
def phantom_train():
    data = load("phantom-classes:train")
    return data.subset(np.arange(192))


def test_reported_epsilon_is_the_accountants_and_within_target(phantom_train) -> None:
    method = DPSGDClassifier(4.0, epochs=2, batch_size=48, seed=0).fit(phantom_train)
    report = method.privacy_report()
    n_units = phantom_train.n_units("image")
    assert report.mechanism == DPSGD_MECHANISM and report.unit == "image"
    assert report.delta == default_delta(n_units) and report.n_units == n_units
    assert report.sample_rate == pytest.approx(48 / n_units)
    assert report.steps == 2 * round(n_units / 48)
    expected = dpsgd_epsilon(report.noise_multiplier, report.sample_rate, report.steps, report.delta)
    assert report.epsilon == pytest.approx(expected, rel=1e-9)
    assert report.epsilon <= 4.0
    probabilities = method.predict_proba(phantom_train.subset(np.arange(10)))
    assert probabilities.shape == (10, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_a_tiny_classifier_at_a_large_epsilon_learns_the_phantom_task() -> None:
    """The default recipe (Adam 1e-2, clipping 1) learns the task, not just the class prior, and returns a plain module."""
    train, test = load("phantom-classes:train"), load("phantom-classes:test")
    method = DPSGDClassifier(20.0, epochs=10, batch_size=64, seed=0, reproducible=True).fit(train)
    assert method.privacy_report().epsilon <= 20.0
    auc = roc_auc(test.labels, class_scores(method.predict_proba(test)))
    assert auc > 0.7, f"DP-SGD classifier at epsilon 20 did not learn the phantom task (test AUC {auc:.3f})"
    assert all(p.requires_grad for p in method.network_.parameters()), "the engine must hand the parameters back after training"


def test_invalid_privacy_parameters_are_refused(phantom_train) -> None:
    n_units = phantom_train.n_units("image")
    with pytest.raises(PrivacyError):
        DPSGDClassifier(1.0, delta=1.0 / n_units, epochs=1).fit(phantom_train)
    with pytest.raises(PrivacyError):
        DPSGDClassifier(0.0, epochs=1).fit(phantom_train)
    with pytest.raises(PrivmedError, match="batch size"):
        DPSGDClassifier(1.0, batch_size=n_units + 1, epochs=1).fit(phantom_train)


def test_report_before_fit_is_refused() -> None:
    with pytest.raises(NotFittedError):
        DPSGDClassifier(1.0).privacy_report()


def test_epsilon_matches_dp_accounting_and_the_release_is_booked(phantom_train, tmp_path, monkeypatch) -> None:
    """Trained through the shared DP trainer: epsilon as dp-accounting computes it for the same schedule, booked in the ledger."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    from privmed.privacy.accountants.rdp import RDP_ORDERS
    from privmed.privacy.ledger import BudgetLedger, dataset_key

    monkeypatch.setenv("PRIVMED_LEDGER", str(tmp_path / "ledger.json"))
    method = DPSGDClassifier(3.0, epochs=2, batch_size=48, seed=1, run_dir=tmp_path / "run").fit(phantom_train)
    report = method.privacy_report()
    independent = RdpAccountant(orders=list(RDP_ORDERS))
    event = dp_accounting.PoissonSampledDpEvent(report.sample_rate, dp_accounting.GaussianDpEvent(report.noise_multiplier))
    independent.compose(event, report.steps)
    assert report.epsilon == pytest.approx(independent.get_epsilon(report.delta), rel=1e-3)
    assert report.epsilon <= 3.0 and report.steps == 2 * round(phantom_train.n_units("image") / 48)
    entries = BudgetLedger().entries(dataset_key(phantom_train))
    assert len(entries) == 1 and entries[0]["epsilon"] == pytest.approx(report.epsilon) and entries[0]["status"] == "settled"
    loaded = DPSGDClassifier.load(tmp_path / "run")
    subset = phantom_train.subset(np.arange(8))
    np.testing.assert_allclose(loaded.predict_proba(subset), method.predict_proba(subset), rtol=1e-6)
    assert loaded.privacy_report().epsilon == pytest.approx(report.epsilon)
