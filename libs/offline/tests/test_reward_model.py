"""The cross-fitted reward model: smoothing and back-off, cross-fitting, the block-wise
predictions, and the doubly robust estimate built on it.

Simulation (the statistical tests): a categorical context ``segment`` with 4 values drawn
uniformly, 5 actions, Bernoulli rewards with probability ``REWARD_PROB[segment, action]``, a
logging policy ``LOGGING[segment]`` (every probability at least 0.04) and a target policy
``TARGET[segment]``. Seeds and run counts are given in each test.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from cineamate.common.errors import InvalidInput
from cineamate.offline import reward_model
from cineamate.offline.estimators import dm, dr, ips
from cineamate.offline.logged import LoggedFeedback
from cineamate.offline.reward_model import KnownRewardModel, cross_fit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SEGMENTS = np.array(["north", "south", "east", "west"], dtype=object)
N_ACTIONS = 5
_tables = np.random.default_rng(11)
REWARD_PROB = _tables.uniform(0.05, 0.6, size=(SEGMENTS.size, N_ACTIONS))
LOGGING = _tables.dirichlet(np.full(N_ACTIONS, 4.0), size=SEGMENTS.size) * 0.8 + 0.2 / N_ACTIONS
TARGET = _tables.dirichlet(np.full(N_ACTIONS, 0.7), size=SEGMENTS.size)
TRUE_VALUE = float((TARGET * REWARD_PROB).sum(axis=1).mean())


def _log(
    actions: IntArray,
    rewards: FloatArray,
    positions: IntArray | None = None,
    **contexts: npt.NDArray[np.generic],
) -> LoggedFeedback:
    return LoggedFeedback(
        times=np.arange(actions.size),
        actions=actions,
        positions=positions,
        rewards=rewards,
        propensities=None,
        contexts=contexts,
        n_actions=int(actions.max()) + 1,
    )


def _simulate(rng: np.random.Generator, rounds: int) -> tuple[LoggedFeedback, IntArray, FloatArray]:
    """A log, each round's segment index, and its importance weight."""
    segment = rng.integers(SEGMENTS.size, size=rounds)
    actions = (rng.random((rounds, 1)) > LOGGING.cumsum(axis=1)[segment]).sum(axis=1)
    rewards = (rng.random(rounds) < REWARD_PROB[segment, actions]).astype(np.float64)
    log = _log(actions, rewards, segment=SEGMENTS[segment])
    weights = TARGET[segment, actions] / LOGGING[segment, actions]
    return log, segment, weights


def test_a_rounds_own_reward_never_enters_its_prediction() -> None:
    log, _, _ = _simulate(np.random.default_rng(1), 400)
    before = cross_fit(log, folds=4, seed=3).logged_prediction()
    flipped = log.rewards.copy()
    flipped[17] = 1.0 - flipped[17]
    changed = LoggedFeedback(
        log.times, log.actions, None, flipped, None, log.contexts, log.n_actions
    )
    after = cross_fit(changed, folds=4, seed=3).logged_prediction()
    assert after[17] == before[17]
    assert not np.array_equal(after, before)  # the other folds' models did see it


def test_well_observed_cells_predict_their_mean_and_unseen_ones_back_off() -> None:
    # action 0: 2,000 rounds in cell "x" (mean 0.8) and 2,000 in "y" (mean 0.2); action 1 never
    # in "y"; action 2 only in the target's action range
    rewards = np.tile([1.0, 1.0, 1.0, 1.0, 0.0], 400)
    log = _log(
        actions=np.r_[np.zeros(4000, dtype=np.int64), np.ones(2000, dtype=np.int64)],
        rewards=np.r_[rewards, 1.0 - rewards, np.full(2000, 0.5)],
        cell=np.array(["x"] * 2000 + ["y"] * 2000 + ["x"] * 2000, dtype=object),
    )
    model = cross_fit(log, folds=2, seed=0, n_actions=3)
    block = model.predictions(0, log.n_rounds)
    assert block[:2000, 0] == pytest.approx(0.8, abs=0.02)
    assert block[2000:4000, 0] == pytest.approx(0.2, abs=0.02)
    # action 1 in cell "y": only the action's mean (0.5) is known
    assert block[2000:4000, 1] == pytest.approx(0.5, abs=0.02)
    # action 2 was never logged: the global mean, (0.8 + 0.2 + 2 * 0.5) / 4
    assert block[:, 2] == pytest.approx(0.5, abs=0.02)


def test_prior_strength_follows_how_different_the_cells_are() -> None:
    rng = np.random.default_rng(5)
    cells = rng.integers(20, size=20_000)
    actions = np.zeros(20_000, dtype=np.int64)
    differing = (rng.random(20_000) < np.linspace(0.1, 0.9, 20)[cells]).astype(np.float64)
    alike = (rng.random(20_000) < 0.5).astype(np.float64)
    strong = cross_fit(_log(actions, alike, cell=cells)).describe()["prior_strength"]["cell"]
    weak = cross_fit(_log(actions, differing, cell=cells)).describe()["prior_strength"]["cell"]
    assert weak < 10 < 1_000 < strong


def _positions_log(rounds: int = 3_000) -> LoggedFeedback:
    rng = np.random.default_rng(9)
    actions = rng.integers(7, size=rounds)
    positions = rng.integers(3, size=rounds)
    age = rng.normal(40, 12, size=rounds)
    age[::50] = np.nan
    prob = 0.1 + 0.05 * positions + 0.3 * (age > 40) + 0.02 * actions
    rewards = (rng.random(rounds) < prob).astype(np.float64)
    return _log(
        actions,
        rewards,
        positions,
        age=age,
        gender=rng.choice(np.array(["F", "M", None], dtype=object), size=rounds),
    )


def test_blocks_agree_with_the_logged_prediction_and_the_sparse_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _positions_log()
    dense = cross_fit(log, folds=3, seed=2)
    rows = np.arange(log.n_rounds)
    assert dense.predictions(0, log.n_rounds)[rows, log.actions] == pytest.approx(
        dense.logged_prediction(), abs=1e-12
    )
    monkeypatch.setattr(reward_model, "TABLE_ELEMENTS", 0)
    sparse = cross_fit(log, folds=3, seed=2)
    assert sparse.predictions(0, log.n_rounds) == pytest.approx(
        dense.predictions(0, log.n_rounds), abs=1e-12
    )


def test_direct_value_is_the_target_weighted_prediction_at_the_logged_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _positions_log()
    assert log.positions is not None
    target = (
        np.random.default_rng(4).dirichlet(np.ones(7), size=(log.n_rounds, 3)).transpose(0, 2, 1)
    )
    monkeypatch.setattr(reward_model, "BLOCK_ELEMENTS", 100)  # many small blocks
    model = cross_fit(log, folds=3, seed=2)
    rows = np.arange(log.n_rounds)
    expected = (target[rows, :, log.positions] * model.predictions(0, log.n_rounds)).sum(axis=1)
    assert model.direct(target) == pytest.approx(expected, abs=1e-12)


def test_description_states_the_model_and_the_context_cells() -> None:
    description = cross_fit(_positions_log(), folds=3, seed=2).describe()
    assert description["model"] == "smoothed_means"
    assert "(action, position, context cell)" in description["description"]
    assert description["contexts"] == {
        "age": "10 quantile bins and missing",
        "gender": "3 categories",
    }
    assert description["context_cells"] == 33
    assert description["folds"] == 3 and description["seed"] == 2


def test_without_contexts_the_model_is_the_smoothed_action_mean() -> None:
    actions = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    log = _log(actions, np.array([1.0, 1, 1, 1, 0, 0, 0, 0]))
    model = cross_fit(log, folds=2, seed=0)
    assert "per (action), backing off to the global mean" in model.describe()["description"]
    # each fold's model has seen only action 0's ones and action 1's zeros
    prediction = model.logged_prediction()
    assert (prediction[:4] > 0.5).all() and (prediction[4:] < 0.5).all()


def test_known_model_returns_the_given_values() -> None:
    values = np.array([[0.1, 0.9], [0.4, 0.6]])
    model = KnownRewardModel(values, actions=np.array([1, 0]))
    assert model.logged_prediction().tolist() == [0.9, 0.4]
    assert model.direct(np.array([[0.5, 0.5], [1.0, 0.0]])).tolist() == pytest.approx([0.5, 0.4])
    with pytest.raises(InvalidInput, match="shape"):
        KnownRewardModel(values, actions=np.array([1]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"folds": 1}, "folds must be between 2 and the number of rounds"),
        ({"folds": 9}, "folds must be between 2 and the number of rounds"),
        ({"bins": 1}, "bins must be at least 2"),
        ({"n_actions": 1}, "n_actions 1 is below the log's 2"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, int], message: str) -> None:
    log = _log(np.array([0, 1, 0, 1, 0, 1, 0, 1]), np.zeros(8))
    with pytest.raises(InvalidInput, match=message):
        cross_fit(log, **options)


def _cross_fitted_dr(
    log: LoggedFeedback, segment: IntArray, weights: FloatArray
) -> tuple[float, float, bool]:
    """DR with the cross-fitted model, DR with the true model, and whether DR's interval
    covers the truth."""
    model = cross_fit(log, folds=5, seed=0)
    direct = model.direct(TARGET[segment])
    estimate = dr(log.rewards, weights, direct, model.logged_prediction())
    true_direct = (TARGET * REWARD_PROB).sum(axis=1)[segment]
    true_model = dr(log.rewards, weights, true_direct, REWARD_PROB[segment, log.actions])
    return estimate.value, true_model.value, estimate.ci_low <= TRUE_VALUE <= estimate.ci_high


def test_cross_fitted_dr_is_unbiased_and_covers_the_truth() -> None:
    """200 runs of 2,000 rounds from default_rng(30): the mean of DR over runs is within 3
    standard errors of the true value, its 95% interval covers the truth in 95% +- 4.6% of
    the runs (3 binomial standard deviations), and its variance is below IPS's."""
    rng = np.random.default_rng(30)
    runs = 200
    dr_values, ips_values, covered = np.empty(runs), np.empty(runs), 0
    for run in range(runs):
        log, segment, weights = _simulate(rng, 2_000)
        dr_values[run], _, hit = _cross_fitted_dr(log, segment, weights)
        ips_values[run] = ips(log.rewards, weights).value
        covered += hit
    assert abs(dr_values.mean() - TRUE_VALUE) < 3 * dr_values.std(ddof=1) / math.sqrt(runs)
    assert abs(covered / runs - 0.95) < 3 * math.sqrt(0.95 * 0.05 / runs)
    assert dr_values.var() < ips_values.var()


def test_cross_fitted_dr_is_consistent_and_as_efficient_as_the_true_model() -> None:
    """20 runs each of 2,000 and 50,000 rounds from default_rng(31): the root mean squared
    error falls at the sqrt(n) rate (ratio below 0.3, 0.2 expected), and at 50,000 rounds
    the cross-fitted DR stays within 10% of DR with the true model in variance across runs."""
    rng = np.random.default_rng(31)
    errors: dict[int, list[float]] = {2_000: [], 50_000: []}
    fitted_values, true_values = [], []
    for rounds in errors:
        for _ in range(20):
            log, segment, weights = _simulate(rng, rounds)
            fitted, true_model, _ = _cross_fitted_dr(log, segment, weights)
            errors[rounds].append(fitted - TRUE_VALUE)
            if rounds == 50_000:
                fitted_values.append(fitted)
                true_values.append(true_model)
    rmse = {rounds: math.sqrt(np.mean(np.square(e))) for rounds, e in errors.items()}
    assert rmse[50_000] < 0.3 * rmse[2_000]
    assert np.var(fitted_values) < 1.1 * np.var(true_values)


def test_cross_fitted_dm_converges_on_a_saturated_model() -> None:
    """One log of 100,000 rounds (default_rng(32)): with categorical contexts every cell is
    observed, so DM is within 0.01 of the truth."""
    log, segment, _ = _simulate(np.random.default_rng(32), 100_000)
    model = cross_fit(log, folds=5, seed=0)
    assert dm(model.direct(TARGET[segment])).value == pytest.approx(TRUE_VALUE, abs=0.01)
