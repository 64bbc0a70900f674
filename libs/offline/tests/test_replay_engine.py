"""The block replay gives what a one-at-a-time rejection replay gives.

Compared statistically over many seeds on small logs (the two consume random
numbers differently, so only the distributions can agree), plus exact checks of
what a trace must hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from cineamate.offline.replay.engine import replay
from cineamate.offline.replay.log import ReplayLog
from cineamate.policies import ArmState, Policy, make_policy

SEEDS = 60


def _log(n_events: int = 1_500, n_items: int = 40, seed: int = 0) -> ReplayLog:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    items = rng.choice(n_items, n_events, p=popularity / popularity.sum())
    rates = np.linspace(0.1, 0.8, n_items)
    return ReplayLog.from_arrays(
        times=np.arange(n_events),
        users=rng.integers(0, 100, n_events),
        items=items,
        rewards=(rng.random(n_events) < rates[items]).astype(float),
        cohorts=rng.integers(0, 2, n_events),
        cohort_labels=("a", "b"),
        catalogue=np.arange(n_items),
    )


def _one_at_a_time(log: ReplayLog, policy: Policy, k: int, rng: np.random.Generator) -> np.ndarray:
    state = ArmState.empty(log.catalogue)
    matched = np.zeros(len(log), dtype=bool)
    for event in range(len(log)):
        if log.items[event] in policy.choose(state, k, rng):
            matched[event] = True
            state = policy.update(
                state, log.items[event : event + 1], log.rewards[event : event + 1]
            )
    return matched


@pytest.mark.slow
@pytest.mark.parametrize("policy_type", ["thompson", "egreedy", "ucb1", "popularity"])
def test_block_replay_matches_one_at_a_time_replay_in_distribution(policy_type: str) -> None:
    log = _log()
    block, single = [], []
    for seed in range(SEEDS):
        policy = make_policy(policy_type)
        trace = replay(log, policy, 4, np.random.default_rng([seed, 1]))
        naive = _one_at_a_time(log, make_policy(policy_type), 4, np.random.default_rng([seed, 2]))
        block.append((trace.matched.sum(), log.rewards[trace.matched].sum()))
        single.append((naive.sum(), log.rewards[naive].sum()))
    block_stats, single_stats = np.array(block, float), np.array(single, float)
    for column in range(2):  # matches, and reward earned
        a, b = block_stats[:, column], single_stats[:, column]
        standard_error = np.sqrt(a.var(ddof=1) / SEEDS + b.var(ddof=1) / SEEDS)
        assert abs(a.mean() - b.mean()) <= 4 * standard_error + 1e-9


@pytest.mark.parametrize("policy_type", ["thompson", "egreedy", "ucb1", "random"])
def test_the_final_state_holds_exactly_the_matched_events(policy_type: str) -> None:
    log = _log(seed=3)
    trace = replay(log, make_policy(policy_type), 5, np.random.default_rng(0))
    positions = log.item_positions()[trace.matched]
    expected_pulls = np.bincount(positions, minlength=log.catalogue.size)
    expected_successes = np.bincount(
        positions, weights=log.rewards[trace.matched], minlength=log.catalogue.size
    )
    assert trace.matched.any()
    assert np.array_equal(trace.final_state.pulls, expected_pulls)
    assert np.array_equal(trace.final_state.successes, expected_successes)


@pytest.mark.parametrize("policy_type", ["thompson", "egreedy"])
def test_a_slate_holding_the_whole_catalogue_matches_every_event(policy_type: str) -> None:
    log = _log(n_events=300, n_items=6, seed=1)
    trace = replay(log, make_policy(policy_type), 6, np.random.default_rng(0))
    assert trace.matched.all()


@pytest.mark.parametrize("policy_type", ["thompson", "ucb1"])
def test_slates_are_valued_by_every_reward_model(policy_type: str) -> None:
    log = _log(n_events=500, seed=2)
    constant = np.full((2, log.catalogue.size), 0.25)
    by_item = np.tile(np.arange(log.catalogue.size, dtype=float), (2, 1))
    trace = replay(
        log,
        make_policy(policy_type),
        3,
        np.random.default_rng(0),
        reward_models=np.stack([constant, by_item]),
    )
    assert trace.slate_values.shape == (500, 2)
    np.testing.assert_allclose(trace.slate_values[:, 0], 0.75)
    # A slate of 3 distinct item positions sums to between 0+1+2 and the three largest.
    assert np.all(trace.slate_values[:, 1] >= 3 - 1e-9)
    assert np.all(trace.slate_values[:, 1] <= 3 * log.catalogue.size - 6 + 1e-9)


def test_progress_counts_every_event_once() -> None:
    log = _log(n_events=2_345)
    seen: list[int] = []
    replay(log, make_policy("thompson"), 4, np.random.default_rng(0), on_progress=seen.append)
    assert sum(seen) == 2_345
