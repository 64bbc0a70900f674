"""Off-policy estimators: hand-computed small cases, edge cases, and their behaviour over
simulated logs whose target value is known.

Simulation: 6 contexts drawn uniformly, 5 actions, reward probability ``REWARD_PROB[x, a]``,
a logging policy ``LOGGING[x]`` and a different target policy ``TARGET[x]`` (both fixed
tables, every logging probability at least 0.05). The true value is
``mean_x sum_a TARGET[x, a] REWARD_PROB[x, a]``. 200 runs of 2,000 rounds each, all drawn from
``default_rng(20240)``; each run is estimated independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from cineamate.common.errors import InvalidInput
from cineamate.offline.estimators import Estimate, dm, dr, effective_sample_size, ips, snips

FloatArray = npt.NDArray[np.float64]
Z95 = 1.959963984540054

RUNS = 200
ROUNDS = 2_000
N_CONTEXTS, N_ACTIONS = 6, 5
_tables = np.random.default_rng(7)
REWARD_PROB = _tables.uniform(0.05, 0.6, size=(N_CONTEXTS, N_ACTIONS))
LOGGING = _tables.dirichlet(np.full(N_ACTIONS, 4.0), size=N_CONTEXTS) * 0.75 + 0.25 / N_ACTIONS
TARGET = _tables.dirichlet(np.full(N_ACTIONS, 0.7), size=N_CONTEXTS)
TRUE_VALUE_PER_CONTEXT = (TARGET * REWARD_PROB).sum(axis=1)
TRUE_VALUE = float(TRUE_VALUE_PER_CONTEXT.mean())


# Hand-computed cases: four rounds.
REWARDS = [1.0, 0.0, 1.0, 1.0]
WEIGHTS = [2.0, 0.5, 0.0, 1.0]
DIRECT = [0.5, 0.2, 0.9, 0.4]
LOGGED_PREDICTION = [0.6, 0.1, 0.3, 0.8]


def test_ips_matches_hand_computed_value_and_interval() -> None:
    # terms w*r = [2, 0, 0, 1]: mean 0.75, squared deviations sum to 2.75
    half = Z95 * math.sqrt(2.75 / 3 / 4)
    estimate = ips(REWARDS, WEIGHTS)
    assert estimate.value == pytest.approx(0.75, abs=1e-9)
    assert estimate.ci_low == pytest.approx(0.75 - half, abs=1e-9)
    assert estimate.ci_high == pytest.approx(0.75 + half, abs=1e-9)


def test_snips_matches_hand_computed_value_and_delta_method_interval() -> None:
    # sum w r = 3, sum w = 3.5; linearised terms w (r - 6/7) / (3.5 / 4) = [16, -24, 0, 8] / 49
    half = Z95 * math.sqrt((16**2 + 24**2 + 8**2) / 49**2 / 3 / 4)
    estimate = snips(REWARDS, WEIGHTS)
    assert estimate.value == pytest.approx(6 / 7, abs=1e-9)
    assert estimate.ci_low == pytest.approx(6 / 7 - half, abs=1e-9)
    assert estimate.ci_high == pytest.approx(6 / 7 + half, abs=1e-9)


def test_dm_and_dr_match_hand_computed_values() -> None:
    assert dm(DIRECT).value == pytest.approx(0.5, abs=1e-12)
    # direct + w (r - q) = [1.3, 0.15, 0.9, 0.6]
    assert dr(REWARDS, WEIGHTS, DIRECT, LOGGED_PREDICTION).value == pytest.approx(
        2.95 / 4, abs=1e-12
    )


def test_effective_sample_size_is_kish() -> None:
    assert effective_sample_size(WEIGHTS) == pytest.approx(3.5**2 / 5.25, abs=1e-12)
    assert effective_sample_size(np.ones(10)) == pytest.approx(10.0)
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_interval_widens_with_level() -> None:
    narrow, wide = ips(REWARDS, WEIGHTS, level=0.5), ips(REWARDS, WEIGHTS, level=0.99)
    assert wide.ci_low < narrow.ci_low < narrow.value < narrow.ci_high < wide.ci_high


def test_single_round_has_a_value_and_no_interval() -> None:
    for estimate in (ips([1.0], [2.0]), snips([1.0], [2.0]), dm([0.3]), dr([1], [2], [0.3], [0.5])):
        assert math.isfinite(estimate.value)
        assert math.isnan(estimate.ci_low) and math.isnan(estimate.ci_high)


def test_all_zero_weights_give_nan_snips_and_zero_ips() -> None:
    assert all(math.isnan(v) for v in snips([1.0, 0.0], [0.0, 0.0]).to_dict().values())
    assert ips([1.0, 0.0], [0.0, 0.0]) == Estimate(0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("rewards", "weights", "message"),
    [
        ([1.0, 0.0], [1.0], "weights has 1 rounds but rewards has 2"),
        ([1.0, math.nan], [1.0, 1.0], "rewards is not finite at round 1"),
        ([1.0, 0.0], [1.0, math.inf], "weights is not finite at round 1"),
        ([1.0, 0.0], [1.0, -0.5], "weights must be >= 0, round 1"),
        ([[1.0, 0.0]], [[1.0, 1.0]], "rewards must be one-dimensional"),
        ([], [], "rewards is empty"),
    ],
)
def test_bad_inputs_are_rejected_with_the_array_named(
    rewards: list[float], weights: list[float], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        ips(rewards, weights)


def test_level_outside_zero_one_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="level"):
        dm([0.1, 0.2], level=1.0)


@dataclass(frozen=True)
class _Runs:
    """Every run's estimates: one row per run."""

    ips: list[Estimate]
    snips: list[Estimate]
    dr_constant_model: list[Estimate]


def _simulate_runs(rng: np.random.Generator, deterministic: bool = False) -> dict[str, FloatArray]:
    """Contexts, logged actions, propensities, target probabilities and rewards, (RUNS, ROUNDS)."""
    contexts = rng.integers(N_CONTEXTS, size=(RUNS, ROUNDS))
    cumulative = LOGGING.cumsum(axis=1)[contexts]
    actions = (rng.random((RUNS, ROUNDS, 1)) > cumulative).sum(axis=2)
    probability = REWARD_PROB[contexts, actions]
    if deterministic:
        rewards = probability
    else:
        rewards = (rng.random((RUNS, ROUNDS)) < probability).astype(np.float64)
    return {
        "contexts": contexts.astype(np.float64),
        "weights": TARGET[contexts, actions] / LOGGING[contexts, actions],
        "rewards": rewards,
    }


@pytest.fixture(scope="module")
def runs() -> _Runs:
    log = _simulate_runs(np.random.default_rng(20240))
    constant = np.full(ROUNDS, 0.3)
    return _Runs(
        ips=[ips(r, w) for r, w in zip(log["rewards"], log["weights"], strict=True)],
        snips=[snips(r, w) for r, w in zip(log["rewards"], log["weights"], strict=True)],
        dr_constant_model=[
            dr(r, w, constant, constant)
            for r, w in zip(log["rewards"], log["weights"], strict=True)
        ],
    )


def _values(estimates: list[Estimate]) -> FloatArray:
    return np.array([e.value for e in estimates])


def _coverage(estimates: list[Estimate]) -> float:
    return float(np.mean([e.ci_low <= TRUE_VALUE <= e.ci_high for e in estimates]))


# 3 binomial standard deviations around 95% coverage over RUNS runs.
COVERAGE_TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / RUNS)


@pytest.mark.parametrize("name", ["ips", "dr_constant_model"])
def test_unbiased_estimators_centre_on_the_true_value_and_cover_it(runs: _Runs, name: str) -> None:
    """IPS, and DR with a wrong (constant) reward model but right propensities, are unbiased."""
    values = _values(getattr(runs, name))
    standard_error = values.std(ddof=1) / math.sqrt(RUNS)
    assert abs(values.mean() - TRUE_VALUE) < 3 * standard_error
    assert abs(_coverage(getattr(runs, name)) - 0.95) < COVERAGE_TOLERANCE


def test_snips_has_lower_variance_than_ips(runs: _Runs) -> None:
    assert _values(runs.snips).var() < _values(runs.ips).var()
    assert abs(_values(runs.snips).mean() - TRUE_VALUE) < 0.005  # bias O(1/n)


def test_dr_with_the_true_model_has_only_the_context_sampling_variance(runs: _Runs) -> None:
    """With rewards deterministic given context and action and the true reward model, the
    correction ``w (r - q)`` is zero in every round, so DR is the mean of the true value of
    each drawn context: its variance across runs is ``Var_x V(x) / ROUNDS``, far below IPS's.
    """
    log = _simulate_runs(np.random.default_rng(20241), deterministic=True)
    contexts = log["contexts"].astype(np.int64)
    direct = TRUE_VALUE_PER_CONTEXT[contexts]
    estimates = [
        dr(r, w, d, r)  # the true model predicts the deterministic reward itself
        for r, w, d in zip(log["rewards"], log["weights"], direct, strict=True)
    ]
    values = _values(estimates)
    context_sampling = TRUE_VALUE_PER_CONTEXT.var() / ROUNDS
    # the sample variance of 200 runs is within +-30% of the truth with probability > 0.999
    assert 0.7 * context_sampling < values.var(ddof=1) < 1.3 * context_sampling
    assert values.var() < _values(runs.ips).var() / 20
    assert abs(values.mean() - TRUE_VALUE) < 3 * math.sqrt(context_sampling / RUNS)
