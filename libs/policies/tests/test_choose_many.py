"""``choose_many`` draws slates distributed exactly as ``choose`` draws them, many at once.

Checked by frequencies over many slates against the exact inclusion probabilities
(deterministic policies) or against one-at-a-time ``choose`` (Thompson), with
tolerances of 5 binomial standard deviations per arm.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from cineamate.common.errors import InvalidInput
from cineamate.policies import ArmState, make_policy
from cineamate.policies.ranking import random_subsets, top_k_inclusion, top_k_many
from cineamate.policies.thompson_slates import ThresholdSplit, beta_quantile, draw_slates

SLATES = 20_000


def _state(n_arms: int, pulls: int, seed: int) -> ArmState:
    rng = np.random.default_rng(seed)
    arms = rng.integers(0, n_arms, pulls)
    rates = rng.uniform(0.05, 0.6, n_arms)
    return ArmState.empty(np.arange(100, 100 + n_arms)).updated(
        100 + arms, (rng.random(pulls) < rates[arms]).astype(float)
    )


def _frequencies(state: ArmState, slates: np.ndarray) -> np.ndarray:
    return np.bincount(state.lookup(slates.ravel()), minlength=state.n_arms) / slates.shape[0]


def _assert_close(observed: np.ndarray, expected: np.ndarray, draws: int) -> None:
    tolerance = 5 * np.sqrt(np.clip(expected * (1 - expected), 1e-4, None) / draws) + 1e-9
    assert np.all(np.abs(observed - expected) <= tolerance), np.abs(observed - expected).max()


@pytest.mark.parametrize("policy_type", ["egreedy", "ucb1", "random", "popularity"])
@pytest.mark.parametrize("pulls", [0, 30, 3_000])
def test_exact_policies_match_their_inclusion_probabilities(policy_type: str, pulls: int) -> None:
    state = _state(60, pulls, seed=pulls)
    policy = make_policy(policy_type)
    slates = policy.choose_many(state, 5, np.random.default_rng(1), SLATES)
    assert slates.shape == (SLATES, 5)
    assert all(len(set(row)) == 5 for row in slates.tolist())
    _assert_close(_frequencies(state, slates), policy.inclusion_probabilities(state, 5), SLATES)


@pytest.mark.parametrize("pulls", [0, 40, 20_000])
def test_thompson_slates_match_one_at_a_time_slates(pulls: int) -> None:
    # Over 400 arms the threshold path is taken (the catalogue is large enough).
    state = _state(400, pulls, seed=7)
    policy = make_policy("thompson")
    rng = np.random.default_rng(3)
    many = policy.choose_many(state, 10, rng, SLATES)
    single = np.stack([policy.choose(state, 10, rng) for _ in range(SLATES)])
    assert all(len(set(row)) == 10 for row in many.tolist())
    for column in (slice(None), slice(0, 1)):  # anywhere in the slate, and first place
        expected = _frequencies(state, single[:, column])
        # Two samples: the difference has twice the variance of one.
        _assert_close(_frequencies(state, many[:, column]), expected, SLATES // 2)


def test_thompson_draw_completes_slates_whose_top_falls_below_the_threshold() -> None:
    rng = np.random.default_rng(5)
    alpha, beta = rng.uniform(1, 4, 200), rng.uniform(1, 4, 200)
    # A threshold so high that most slates have fewer than k draws above it.
    threshold = 0.97
    split = ThresholdSplit(alpha, beta, threshold, special.betainc(alpha, beta, threshold))
    slates = draw_slates(split, 10, rng, 8_000)
    dense = rng.beta(alpha, beta, size=(8_000, 200))
    reference = np.argsort(-dense, axis=1)[:, :10]
    for column in (slice(None), slice(0, 1)):
        observed = np.bincount(slates[:, column].ravel(), minlength=200) / 8_000
        expected = np.bincount(reference[:, column].ravel(), minlength=200) / 8_000
        _assert_close(observed, expected, 4_000)


def test_beta_quantile_agrees_with_the_general_inversion() -> None:
    rng = np.random.default_rng(0)
    alpha = rng.choice([1.0, 1.0, 2.0, 7.5, 0.5], 5_000)
    beta = rng.choice([1.0, 3.0, 1.0, 40.0, 0.5], 5_000)
    uniforms = rng.random(5_000)
    expected = special.betaincinv(alpha, beta, uniforms)
    np.testing.assert_allclose(beta_quantile(alpha, beta, uniforms), expected, atol=1e-12)


@pytest.mark.parametrize(("population", "size"), [(3706, 10), (12, 10), (5, 5), (40, 3)])
def test_random_subsets_are_distinct_and_uniform(population: int, size: int) -> None:
    rows = random_subsets(np.random.default_rng(2), SLATES, population, size)
    assert rows.shape == (SLATES, size)
    assert all(len(set(row)) == size for row in rows[:2_000].tolist())
    share = np.full(population, size / population)
    _assert_close(np.bincount(rows.ravel(), minlength=population) / SLATES, share, SLATES)
    first = np.bincount(rows[:, 0], minlength=population) / SLATES
    _assert_close(first, np.full(population, 1 / population), SLATES)


def test_top_k_many_shares_tied_slots_uniformly() -> None:
    scores = np.array([5.0, 3.0, 3.0, 3.0, 3.0, 1.0, np.inf, 3.0])
    rows = top_k_many(scores, 4, np.random.default_rng(4), SLATES)
    assert np.all(rows[:, 0] == 6)  # +inf first
    assert np.all(rows[:, 1] == 0)
    observed = np.bincount(rows.ravel(), minlength=scores.size) / SLATES
    _assert_close(observed, top_k_inclusion(scores, 4), SLATES)


def test_a_few_updates_add_as_the_histogram_path_does() -> None:
    state = _state(50, 500, seed=9)
    arms = np.array([103, 110, 103, 149, 103])
    rewards = np.array([0.3, 1.0, 0.1, 0.7, 0.2])
    few = state.updated(arms, rewards)  # under the few-updates limit
    positions = state.index_of(arms)
    order = np.lexsort((rewards, positions))
    expected_successes = state.successes + np.bincount(
        positions[order], weights=rewards[order], minlength=50
    )
    assert np.array_equal(few.successes, expected_successes)
    assert np.array_equal(few.pulls, state.pulls + np.bincount(positions, minlength=50))
    assert few.version == state.version + 1
    with pytest.raises(InvalidInput, match="rewards must lie in"):
        state.updated([103], [float("nan")])


def test_choose_many_refuses_a_bad_size() -> None:
    policy = make_policy("ucb1")
    state = _state(5, 0, seed=0)
    assert policy.choose_many(state, 10, np.random.default_rng(0), 3).shape == (3, 5)
    with pytest.raises(InvalidInput, match="number of slates"):
        policy.choose_many(state, 3, np.random.default_rng(0), -1)
