"""Empirical privacy audit: a statistical lower bound on the epsilon a training procedure really has.

One-run auditing (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run",
NeurIPS; arXiv:2305.08846): m canaries (marked images) are each included in the training data
independently with probability 1/2; after one training run an attacker scores every canary,
guesses "included" for the k+ highest scores and "excluded" for the k- lowest, and abstains on
the rest. If training is (epsilon, delta)-DP, the number of correct guesses W among the r = k+ + k-
guesses is dominated by Binomial(r, e^eps / (1 + e^eps)) up to a delta term (their Theorem 3.1
and Algorithm 2). Every epsilon for which the observed W has p-value below 1 - confidence is
rejected; the largest rejected epsilon is the lower bound. Several independent runs
(``n_runs > 1``) pool their canaries, which is the repeated-runs audit with the same test.

A method takes part through :class:`AuditableMethod`: ``train_with(data, seed)`` trains on the
given images and returns a :data:`CanaryScorer` (canary images -> scores, higher = more likely
trained on). :class:`ReleaseAudit` turns any privmed generative or privatizing method into one,
scoring canaries with the pairwise attack against its release; :class:`ModelScoreAudit` scores
them with the trained model itself, for methods that offer a model-score attack (the AC-GAN's
discriminator).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from scipy import stats

from privmed.data.dataset import ImageDataset
from privmed.errors import PrivmedError
from privmed.evaluate.attacks.model_score import load_member_scorer, model_scores
from privmed.evaluate.attacks.pairwise import pairwise_scores

if TYPE_CHECKING:
    from privmed.methods.registry import MethodSpec

logger = logging.getLogger(__name__)

__all__ = [
    "AuditResult",
    "AuditableMethod",
    "CanaryScorer",
    "ModelScoreAudit",
    "ReleaseAudit",
    "audit_from_scores",
    "canaries_needed",
    "epsilon_ceiling",
    "epsilon_lower_bound",
    "insert_canaries",
    "make_canaries",
    "one_run_audit",
    "one_run_p_value",
]

CanaryScorer = Callable[[ImageDataset], np.ndarray]
"""Scores canary images after training: higher means "more likely included in the training data"."""


@runtime_checkable
class AuditableMethod(Protocol):
    """A training procedure the audit can run on data of its choosing."""

    def train_with(self, data: ImageDataset, seed: int) -> CanaryScorer: ...


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """P[at least v of r guesses correct] for an (epsilon, delta)-DP training run with m canaries.

    Steinke et al. 2023, Algorithm 2: the binomial tail at q = e^eps / (1 + e^eps), plus
    ``2 m delta`` times the largest average of the binomial mass just below v.
    """
    if not 0 <= v <= r <= m:
        raise PrivmedError(f"an audit needs 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    below = np.cumsum(stats.binom.pmf(v - np.arange(1, v + 1), r, q))  # P[v - i <= Bin < v], i = 1..v
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * alpha, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95, tolerance: float = 1e-4) -> float:
    """The largest epsilon rejected at ``confidence``: training is not (epsilon, delta)-DP for smaller values.

    Bisection on epsilon (the p-value grows with epsilon); 0 when even epsilon = 0 is not rejected.
    """
    if not 0 < confidence < 1:
        raise PrivmedError(f"confidence must be in (0, 1), got {confidence}")
    level = 1.0 - confidence
    if one_run_p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    low, high = 0.0, 1.0
    while one_run_p_value(m, r, v, high, delta) < level:
        low, high = high, 2.0 * high
        if high > 1e3:
            return low
    while high - low > tolerance:
        middle = 0.5 * (low + high)
        if one_run_p_value(m, r, v, middle, delta) < level:
            low = middle
        else:
            high = middle
    return low


def epsilon_ceiling(m: int, r: int, *, delta: float = 0.0, confidence: float = 0.95) -> float:
    """The largest epsilon this audit could prove at all: the bound when all ``r`` guesses are right.

    A claim at or above it can never be shown violated by ``m`` canaries and ``r`` guesses, however
    strong the attack.
    """
    return epsilon_lower_bound(m, r, r, delta=delta, confidence=confidence)


def default_guesses(m: int) -> int:
    """Guesses the audit makes on ``m`` canaries by default: k+ = k- = m // 4."""
    return 2 * (m // 4)


def canaries_needed(claimed_epsilon: float, *, delta: float = 0.0, confidence: float = 0.95, max_canaries: int = 10**6) -> int | None:
    """The fewest canaries (with the default guesses) whose ceiling exceeds ``claimed_epsilon``; None past ``max_canaries``.

    With delta > 0 the ceiling stops growing once m * delta is large, so some claims cannot be tested at any count.
    """
    def enough(m: int) -> bool:
        return epsilon_ceiling(m, default_guesses(m), delta=delta, confidence=confidence) > claimed_epsilon

    if not math.isfinite(claimed_epsilon):
        return None
    low, high = 3, 8
    while not enough(high):
        low, high = high, 2 * high
        if high > max_canaries:
            return max_canaries if enough(max_canaries) else None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


@dataclass
class AuditResult:
    """What an audit found: the guesses, their accuracy and the epsilon lower bound (per ``unit``: one canary record)."""

    epsilon_lower_bound: float
    confidence: float
    delta: float
    canaries: int
    guesses: int
    correct: int
    included: int
    runs: int
    claimed_epsilon: float | None = None
    unit: str = "image"
    notes: list[str] = field(default_factory=list)
    epsilon_ceiling: float | None = None

    @property
    def consistent(self) -> bool | None:
        """Whether the lower bound stays at or below the claimed epsilon (None without a claim)."""
        return None if self.claimed_epsilon is None else self.epsilon_lower_bound <= self.claimed_epsilon

    @property
    def can_test_claim(self) -> bool | None:
        """Whether a perfect attacker could have shown the claim violated (ceiling above the claim); None without a claim."""
        if self.claimed_epsilon is None or self.epsilon_ceiling is None:
            return None
        return self.epsilon_ceiling > self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["consistent"] = self.consistent
        payload["can_test_claim"] = self.can_test_claim
        if self.claimed_epsilon is not None and math.isinf(self.claimed_epsilon):
            payload["claimed_epsilon"] = "inf"
        return payload


def audit_from_scores(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_plus: int,
    k_minus: int,
    delta: float = 0.0,
    confidence: float = 0.95,
    claimed_epsilon: float | None = None,
    runs: int = 1,
    unit: str = "image",
) -> AuditResult:
    """Guess "included" for the k+ top scores and "excluded" for the k- bottom ones; bound epsilon.

    k+ and k- must be fixed before the scores are seen: choosing them after looking would void the
    confidence level.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    included = np.asarray(included, dtype=bool).reshape(-1)
    m = scores.size
    if included.size != m:
        raise PrivmedError(f"{m} canary scores for {included.size} inclusion flags")
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus == 0 or k_plus + k_minus > m:
        raise PrivmedError(f"guesses k+={k_plus}, k-={k_minus} must be non-negative, not both 0, and sum to at most {m} canaries")
    # Random tie-breaking would need a seed; a stable order by index is as valid, as it ignores the truth.
    order = np.argsort(-scores, kind="stable")
    correct = int(included[order[:k_plus]].sum()) + int((~included[order[m - k_minus :]]).sum() if k_minus else 0)
    guesses = k_plus + k_minus
    bound = epsilon_lower_bound(m, guesses, correct, delta=delta, confidence=confidence)
    ceiling = epsilon_ceiling(m, guesses, delta=delta, confidence=confidence)
    result = AuditResult(bound, confidence, delta, m, guesses, correct, int(included.sum()), runs, claimed_epsilon, unit, epsilon_ceiling=ceiling)
    if result.can_test_claim is False:
        needed = canaries_needed(float(claimed_epsilon), delta=delta, confidence=confidence)
        more = f"about {needed} canaries would be needed" if needed else "no number of canaries can at this delta"
        result.notes.append(
            f"this audit cannot test the claim: with {m} canaries and {guesses} guesses even a perfect attacker proves at most "
            f"epsilon = {ceiling:.3g}, not above the claimed {claimed_epsilon:g} ({more})"
        )
    return result


def make_canaries(pool: ImageDataset, n: int, *, seed: int = 0, side: int | None = None, mislabel: bool = False) -> ImageDataset:
    """``n`` canaries: pool images, each marked with a bright square at its own random position.

    The marks make every canary distinct from the rest of the data, so that a release which keeps
    a canary shows it. With ``mislabel`` (labelled pools only) each canary also gets a class other
    than its image's, drawn uniformly: a class-conditional model that learns a canary learns an
    (image, class) pair no other image supports, which its class head then gives away.
    """
    if n < 2 or n > len(pool):
        raise PrivmedError(f"{pool.name}: cannot draw {n} canaries from {len(pool)} images (need 2 <= n <= {len(pool)})")
    if mislabel and (pool.labels is None or pool.n_classes < 2):
        raise PrivmedError(f"{pool.name}: mislabelled canaries need a pool with at least two classes")
    rng = np.random.default_rng(seed)
    chosen = pool.subset(np.sort(rng.choice(len(pool), size=n, replace=False)))
    height, width = chosen.spatial_shape[-2:]
    side = side or max(2, min(height, width) // 6)
    if not 1 <= side <= min(height, width):
        raise PrivmedError(f"the canary mark's side must be between 1 and {min(height, width)} pixels, got {side}")
    images = chosen.images.copy()
    for image in images:
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        image[..., top : top + side, left : left + side] = 1.0
    labels = chosen.labels
    if mislabel:
        labels = (labels + rng.integers(1, pool.n_classes, size=n)) % pool.n_classes
    return ImageDataset(
        images=images,
        subjects=np.array([f"canary-{i}" for i in range(n)]),
        sources=np.array([f"canary-{i}" for i in range(n)]),
        segmentations=chosen.segmentations,
        labels=labels,
        class_names=chosen.class_names,
        name="canaries",
        record_kind=chosen.record_kind,
    )


def _joined(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
    return None if first is None or second is None else np.concatenate([first, second])


def _with_canaries(data: ImageDataset, canaries: ImageDataset) -> ImageDataset:
    """The training data with the included canaries appended (labels and segmentations kept where both have them)."""
    return ImageDataset(
        images=np.concatenate([data.images, canaries.images]),
        subjects=np.concatenate([data.subjects, canaries.subjects]),
        sources=np.concatenate([data.sources, canaries.sources]),
        segmentations=_joined(data.segmentations, canaries.segmentations),
        labels=_joined(data.labels, canaries.labels),
        class_names=data.class_names,
        name=data.name,
        record_kind=data.record_kind,
        subjects_known=data.subjects_known,
    )


def insert_canaries(data: ImageDataset, canaries: ImageDataset, rng: np.random.Generator) -> tuple[ImageDataset, np.ndarray]:
    """The training data plus each canary independently with probability 1/2, and which ones went in.

    This coin flip per canary is what the one-run audit's test rests on: run it once per training
    run, before training, and keep ``included`` secret from the scorer.
    """
    if canaries.images.shape[1:] != data.images.shape[1:]:
        raise PrivmedError(f"canaries of shape {canaries.images.shape[1:]} do not match the data's {data.images.shape[1:]}")
    included = rng.random(len(canaries)) < 0.5
    return _with_canaries(data, canaries.subset(np.flatnonzero(included))), included


def one_run_audit(
    method: AuditableMethod,
    data: ImageDataset,
    canaries: ImageDataset,
    *,
    k_plus: int | None = None,
    k_minus: int | None = None,
    runs: int = 1,
    delta: float | None = None,
    confidence: float = 0.95,
    claimed_epsilon: float | None = None,
    seed: int = 0,
    on_run: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """Train ``runs`` times on ``data`` plus a random half of the canaries; bound epsilon from the guesses.

    Default guesses: k+ = k- = a quarter of all canaries (pooled over runs). ``delta`` and
    ``claimed_epsilon`` default to what the method claims (its ``claimed_delta`` / ``claimed_epsilon``).
    """
    if runs < 1:
        raise PrivmedError(f"an audit needs at least one run, got {runs}")
    rng = np.random.default_rng(seed)
    all_scores, all_included = [], []
    for run in range(runs):
        training, included = insert_canaries(data, canaries, rng)
        scorer = method.train_with(training, seed + run)
        scores = np.asarray(scorer(canaries), dtype=np.float64).reshape(-1)
        if scores.size != len(canaries):
            raise PrivmedError(f"the audited method gave {scores.size} scores for {len(canaries)} canaries")
        all_scores.append(scores)
        all_included.append(included)
        if on_run is not None:
            on_run(run + 1, runs)
    if claimed_epsilon is None:
        claimed_epsilon = getattr(method, "claimed_epsilon", None)
    if delta is None:
        delta = getattr(method, "claimed_delta", None) or 0.0
    total = runs * len(canaries)
    k_plus = total // 4 if k_plus is None else k_plus
    k_minus = total // 4 if k_minus is None else k_minus
    result = audit_from_scores(
        np.concatenate(all_scores), np.concatenate(all_included), k_plus=k_plus, k_minus=k_minus,
        delta=delta, confidence=confidence, claimed_epsilon=claimed_epsilon, runs=runs, unit=canaries.record_kind,
    )
    logger.info("audit: %d of %d guesses correct, epsilon >= %.3f at %.0f%% confidence", result.correct, result.guesses, result.epsilon_lower_bound, 100 * confidence)
    return result


class _TrainedMethodAudit:
    """What the audits of trained privmed methods share: the claim comes from the last trained method."""

    last_method: Any = None

    @property
    def claimed_epsilon(self) -> float | None:
        """The epsilon the last trained method reports (``privacy_report()``), None if it makes no claim."""
        report = getattr(self.last_method, "privacy_report", None)
        return float(report().epsilon) if callable(report) else None

    @property
    def claimed_delta(self) -> float | None:
        """The delta the last trained method reports, None if it makes no claim."""
        report = getattr(self.last_method, "privacy_report", None)
        return float(report().delta) if callable(report) else None


class ReleaseAudit(_TrainedMethodAudit):
    """Audit any privmed method through its release: fit, release, score canaries by the pairwise attack.

    ``make_method()`` builds a fresh method; a generative method (with ``sample``) is fitted and releases
    ``n_samples`` images (default: as many as it trained on), a privatizing method (with ``privatize``,
    ready to use) releases its privatized training data. A canary's score is minus its distance to the nearest
    released image.
    """

    def __init__(self, make_method: Callable[[], Any], n_samples: int | None = None) -> None:
        self.make_method = make_method
        self.n_samples = n_samples

    def train_with(self, data: ImageDataset, seed: int) -> CanaryScorer:
        method = self.make_method()
        if hasattr(method, "sample"):
            release = method.fit(data).sample(self.n_samples or len(data), seed=seed)
        elif hasattr(method, "privatize"):  # not fitted on ``data``: a privatizer's fit learns from public data only
            release = method.privatize(data, seed=seed)
        else:
            raise PrivmedError(f"{type(method).__name__} neither samples nor privatizes: it cannot be audited through a release")
        self.last_method = method
        return lambda canaries: pairwise_scores(canaries.images, release.images)


class ModelScoreAudit(_TrainedMethodAudit):
    """Audit a method through its trained model: canaries are scored by the method's ``score_members``.

    ``make_method(run_dir)`` builds a fresh, unfitted method that writes its run to ``run_dir``
    (``run_root/run-<seed>``; ``run_root`` must not hold these runs yet). The method's module must
    offer a model-score attack (:mod:`privmed.evaluate.attacks.model_score`), e.g. the AC-GAN's
    discriminator score. A white-box audit: it reads what the private steps trained, which DP covers.
    """

    def __init__(self, make_method: Callable[[Path], Any], run_root: str | Path) -> None:
        self.make_method = make_method
        self.run_root = Path(run_root)

    def train_with(self, data: ImageDataset, seed: int) -> CanaryScorer:
        run_dir = self.run_root / f"run-{seed}"
        if run_dir.exists():
            raise PrivmedError(f"{run_dir} exists: an audit trains fresh runs, give it an empty folder")
        method = self.make_method(run_dir)
        method.fit(data)
        self.last_method = method
        scorer = load_member_scorer(run_dir)
        return lambda canaries: model_scores(run_dir, canaries, scorer)


class _Memorizer:
    """The non-private baseline: its "release" is the training data itself."""

    def fit(self, data: ImageDataset) -> "_Memorizer":
        return self

    def privatize(self, data: ImageDataset, seed: int | None = None) -> ImageDataset:
        return data


MEMORIZE = "memorize"
"""The non-private baseline an audit configuration may name besides the registered methods."""


def audit_methods() -> tuple[str, ...]:
    """Methods ``privmed audit`` can train from a configuration file: the registered generative and privatizing ones, and the baseline."""
    from privmed.methods.registry import MethodKind, method_names

    return (*method_names(MethodKind.GENERATIVE, MethodKind.PRIVATIZING), MEMORIZE)


AUDIT_SCORES: tuple[str, ...] = ("model", "release")
"""How ``privmed audit`` scores a generative method's canaries: its trained model (a member scorer), or the nearest released image."""

_RESERVED_OPTIONS = frozenset({"epsilon", "run_dir", "resume", "data_ref", "on_progress", "on_epoch"})


def _epsilon(config: dict[str, Any], name: str) -> float:
    if "epsilon" not in config:
        raise PrivmedError(f"the {name} audit needs an 'epsilon' in its configuration")
    try:
        return float(config["epsilon"])
    except (TypeError, ValueError):
        raise PrivmedError(f"epsilon must be a number or \"inf\", got {config['epsilon']!r}") from None


def _options(config: dict[str, Any], spec: MethodSpec) -> dict[str, Any]:
    """The configuration's ``options`` for ``spec``, checked by building the method once."""
    options = config.get("options", {})
    if not isinstance(options, dict):
        raise PrivmedError(f"'options' must be a JSON object of {getattr(spec.cls, 'method_label', spec.name)} options, got {options!r}")
    reserved = sorted(_RESERVED_OPTIONS & set(options))
    if reserved:
        raise PrivmedError(f"'options' cannot set {', '.join(reserved)}: the audit sets them")
    try:
        spec.make(_epsilon(config, spec.name), **options)
    except TypeError as exc:
        raise PrivmedError(f"unknown {getattr(spec.cls, 'method_label', spec.name)} option in 'options': {exc}") from None
    return options


def _generative_audit(config: dict[str, Any], spec: MethodSpec, run_root: Path | None) -> AuditableMethod:
    """A generative method trained with ``config["options"]``, scored by its trained model or by its release."""
    epsilon = _epsilon(config, spec.name)
    options = _options(config, spec)
    score = str(config.get("score", "model" if spec.member_scorer is not None else "release")).strip().lower()
    if score == "release":
        return ReleaseAudit(lambda: spec.make(epsilon, **options), n_samples=int(config["samples"]) if "samples" in config else None)
    if score != "model":
        raise PrivmedError(f"unknown audit score {score!r}: use one of {', '.join(AUDIT_SCORES)}")
    if spec.member_scorer is None:
        raise PrivmedError(f"{spec.name} offers no model-score attack: use \"score\": \"release\"")
    if run_root is None:
        raise PrivmedError("a model-score audit needs a folder for its training runs")
    return ModelScoreAudit(lambda run_dir: spec.make(epsilon, run_dir=run_dir, **options), run_root)


def audited_spec(config: dict[str, Any]) -> MethodSpec | None:
    """The registered method an audit configuration names (None for the memorizing baseline)."""
    from privmed.methods.registry import get_method

    name = str(config.get("method", "")).strip().lower()
    return None if name == MEMORIZE else get_method(name)


def auditable_from_config(config: dict[str, Any], run_root: str | Path | None = None) -> AuditableMethod:
    """The auditable method a configuration names (its claimed epsilon comes from its privacy report).

    ``{"method": "pixel-ldp", "epsilon": 2.0}`` audits a privatizing method through its privatized
    release (``options``: its other options); ``{"method": "memorize"}`` is a release equal to its
    training data; ``{"method": "acgan", "epsilon": E, "options": {...}, "score": "model"|"release"}``
    trains a generative method (``options`` are its keywords) into ``run_root`` and scores canaries
    by its trained model (``model``, the default where the method offers a member scorer) or by its
    ``samples`` released images.
    """
    from privmed.methods.registry import MethodKind, get_method

    name = str(config.get("method", "")).strip().lower()
    if name == MEMORIZE:
        return ReleaseAudit(_Memorizer)
    if name not in audit_methods():
        raise PrivmedError(f"cannot audit method {name or '(none)'!r}: use one of {', '.join(audit_methods())}")
    spec = get_method(name)
    if spec.kind is MethodKind.GENERATIVE:
        return _generative_audit(config, spec, None if run_root is None else Path(run_root))
    epsilon = _epsilon(config, spec.name)
    options = _options(config, spec)  # validates epsilon and options with the method's own messages
    return ReleaseAudit(lambda: spec.make(epsilon, **options))


def read_audit_config(config_or_run: str | Path) -> tuple[dict[str, Any], Path]:
    """The audit configuration in a JSON file, or in a folder's config.json, and that file's path."""
    import json

    config_or_run = Path(config_or_run)
    config_path = config_or_run / "config.json" if config_or_run.is_dir() else config_or_run
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrivmedError(f"{config_path}: no audit configuration there") from None
    except json.JSONDecodeError as exc:
        raise PrivmedError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "data" not in config:
        raise PrivmedError(f"{config_path}: the audit configuration must be a JSON object with a 'data' reference")
    return config, config_path


DEFAULT_CANARIES = 100


def _canary_count(config: dict[str, Any], available: int) -> int:
    """The configured canary count, else the fewest whose audit can exceed the claimed epsilon (if the pool has them).

    Planned at the configured delta (0 if none), the claim's epsilon from the configuration; without
    a finite claim, or when the pool is too small, the default 100 (the result then says it cannot test the claim).
    """
    if "canaries" in config:
        return int(config["canaries"])
    claim = config.get("epsilon")
    if claim is None or str(claim) == "inf":
        return DEFAULT_CANARIES
    needed = canaries_needed(float(claim), delta=float(config.get("delta", 0.0)), confidence=float(config.get("confidence", 0.95)))
    if needed is None or needed > available:
        logger.warning(
            "an audit able to show epsilon=%g violated needs %s; the pool has %d: using %d, and the result will say it cannot test the claim",
            float(claim), "more canaries than any count gives at this delta" if needed is None else f"{needed} canaries",
            available, min(DEFAULT_CANARIES, available),
        )
        return min(DEFAULT_CANARIES, available)
    return max(needed, 2)


def _canaries_and_data(config: dict[str, Any], spec: MethodSpec | None) -> tuple[ImageDataset, ImageDataset]:
    """The canaries (from ``canary_pool``, else cut from the front of the data) and the training data left."""
    from privmed.data import load

    data = load(str(config["data"]))
    n_canaries = _canary_count(config, len(load(str(config["canary_pool"]))) if "canary_pool" in config else len(data) - 1)
    options = {"seed": int(config.get("seed", 0)), "side": int(config["canary_side"]) if "canary_side" in config else None,
               "mislabel": bool(config.get("mislabel", spec is not None and spec.class_conditional))}
    if "canary_pool" in config:
        return make_canaries(load(str(config["canary_pool"])), n_canaries, **options), data
    if n_canaries >= len(data):
        raise PrivmedError(f"{config['data']}: {len(data)} images cannot give {n_canaries} canaries and leave training data")
    return make_canaries(data.subset(range(n_canaries)), n_canaries, **options), data.subset(range(n_canaries, len(data)))


def run_audit(
    config_or_run: str | Path, out: str | Path | None = None, on_run: Callable[[int, int], None] | None = None
) -> tuple[AuditResult, dict[str, Any], Path]:
    """Run the audit a configuration file describes (see ``privmed audit --help`` for its keys) and write audit.json.

    Returns the result, the JSON payload written, and where it went (``out``, default: beside the configuration).
    """
    import tempfile

    from privmed.fileio import write_json_atomic
    from privmed.methods.registry import MethodKind

    config, config_path = read_audit_config(config_or_run)
    with tempfile.TemporaryDirectory(prefix="privmed-audit-") as scratch:
        method = auditable_from_config(config, run_root=Path(config["run_dir"]) if "run_dir" in config else Path(scratch))
        spec = audited_spec(config)
        canaries, data = _canaries_and_data(config, spec)
        result = one_run_audit(
            method, data, canaries, k_plus=int(config["k_plus"]) if "k_plus" in config else None,
            k_minus=int(config["k_minus"]) if "k_minus" in config else None, runs=int(config.get("runs", 1)),
            delta=float(config["delta"]) if "delta" in config else None, confidence=float(config.get("confidence", 0.95)),
            seed=int(config.get("seed", 0)), on_run=on_run,
        )
    payload = {"method": config.get("method"), "data": config["data"], **result.to_dict()}
    if spec is not None and spec.kind is MethodKind.GENERATIVE:
        payload["score"] = str(config.get("score", "model" if spec.member_scorer is not None else "release"))
    target = write_json_atomic(Path(out or config_path.parent) / "audit.json", payload)
    return result, payload, Path(target)
