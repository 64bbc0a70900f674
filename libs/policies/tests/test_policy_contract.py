"""Every policy keeps the same slate contract, checked by property tests over random states.

The contract: ``inclusion_probabilities`` gives each arm a probability in [0, 1] of being
in the slate, summing to min(k, eligible arms); ineligible arms get 0 and are never chosen;
``select`` returns distinct eligible arms with, for each, exactly the probability that
``inclusion_probabilities`` reports. Deterministic policies (UCB1, popularity, random,
epsilon-greedy) compute it exactly, sharing tied slots uniformly; Thompson Sampling
estimates it once per state and reuses that estimate.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cineamate.policies import POLICY_TYPES, ArmState, make_policy

PROPERTY_SETTINGS = settings(database=None, deadline=None, derandomize=True, max_examples=150)
DETERMINISTIC_TYPES = ("egreedy", "ucb1", "random", "popularity")
# A float sum of exact per-arm probabilities is exact up to rounding only.
DETERMINISTIC_SUM_TOLERANCE = 1e-12
# Thompson rescales its estimate to sum to k: only rounding should remain.
THOMPSON_SUM_TOLERANCE = 1e-9

BoolArray = npt.NDArray[np.bool_]
# Exact rationals where a policy ranks by a ratio of counts, floats for UCB1's square root.
Score = TypeVar("Score", Fraction, float)


@st.composite
def arm_states(draw: st.DrawFn, max_arms: int = 10) -> ArmState:
    """Small catalogues with many ties (few pulls) and some near-certain arms (many pulls)."""
    n_arms = draw(st.integers(1, max_arms))
    sparse = draw(st.booleans())
    ids = st.integers(-(2**40), 2**40) if sparse else st.integers(0, 3 * max_arms)
    arm_ids = draw(st.lists(ids, min_size=n_arms, max_size=n_arms, unique=True))
    pull_counts = st.one_of(st.integers(0, 4), st.integers(0, 60))
    pulls = draw(st.lists(pull_counts, min_size=n_arms, max_size=n_arms))
    successes = [draw(st.integers(0, p)) for p in pulls]
    version = draw(st.integers(0, 10_000))
    order = np.argsort(arm_ids)
    return ArmState(
        np.asarray(arm_ids, dtype=np.int64)[order],
        np.asarray(pulls, dtype=np.float64)[order],
        np.asarray(successes, dtype=np.float64)[order],
        version,
    )


@st.composite
def policy_params(draw: st.DrawFn, policy_type: str) -> dict[str, Any]:
    if policy_type == "thompson":
        return {
            "prior_alpha": draw(st.sampled_from([0.5, 1.0, 2.0])),
            "prior_beta": draw(st.sampled_from([0.5, 1.0, 2.0])),
            "propensity_draws": draw(st.sampled_from([2, 16, 128])),
            "propensity_seed": draw(st.integers(0, 2**32 - 1)),
        }
    if policy_type == "egreedy":
        epsilon = draw(st.floats(0.0, 1.0))
        return {
            "epsilon": epsilon,
            "decay": draw(st.sampled_from([0.0, 0.01, 1.0])),
            "min_epsilon": draw(st.floats(0.0, epsilon)),
        }
    return {}


def _eligible_masks(n_arms: int, at_least_one: bool) -> st.SearchStrategy[BoolArray | None]:
    masks = st.lists(st.booleans(), min_size=n_arms, max_size=n_arms)
    if at_least_one:
        masks = masks.filter(any)
    return st.one_of(st.none(), masks.map(lambda flags: np.asarray(flags, dtype=bool)))


def _n_eligible(state: ArmState, eligible: BoolArray | None) -> int:
    return state.n_arms if eligible is None else int(eligible.sum())


def _exact_top_k_inclusion(scores: list[Score], eligible: list[bool], k: int) -> list[Fraction]:
    """Reference: arms above the k-th score always in, the tie group sharing what is left."""
    allowed = sorted((s for s, ok in zip(scores, eligible, strict=True) if ok), reverse=True)
    slots = min(k, len(allowed))
    if slots == 0:
        return [Fraction(0)] * len(scores)
    kth = allowed[slots - 1]
    n_above = sum(s > kth for s in allowed)
    n_tied = sum(s == kth for s in allowed)
    shared = Fraction(slots - n_above, n_tied)
    return [
        Fraction(0) if not ok else Fraction(1) if s > kth else shared if s == kth else Fraction(0)
        for s, ok in zip(scores, eligible, strict=True)
    ]


def _reference_inclusion(
    policy_type: str, state: ArmState, eligible: list[bool], k: int
) -> list[Fraction]:
    """Exact inclusion of the ranking behind a policy (for egreedy: of its greedy slate)."""
    pulls = [int(p) for p in state.pulls]
    successes = [int(s) for s in state.successes]
    if policy_type == "ucb1":
        log_total = math.log(max(float(sum(pulls)), 1.0))
        bounds = [
            s / p + math.sqrt(2.0 * log_total / p) if p else math.inf
            for s, p in zip(successes, pulls, strict=True)
        ]
        return _exact_top_k_inclusion(bounds, eligible, k)
    if policy_type == "popularity":
        scores = [Fraction(s) for s in successes]
    elif policy_type == "random":
        scores = [Fraction(0)] * state.n_arms
    else:
        # The greedy half of egreedy ranks by empirical mean, 0 for unplayed arms.
        scores = [
            Fraction(s, p) if p else Fraction(0) for s, p in zip(successes, pulls, strict=True)
        ]
    return _exact_top_k_inclusion(scores, eligible, k)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_inclusion_probabilities_are_probabilities_summing_to_slate_size(
    policy_type: str, data: st.DataObject
) -> None:
    state = data.draw(arm_states())
    k = data.draw(st.integers(1, state.n_arms + 2))
    eligible = data.draw(_eligible_masks(state.n_arms, at_least_one=False))
    policy = make_policy(policy_type, data.draw(policy_params(policy_type)))

    inclusion = policy.inclusion_probabilities(state, k, eligible)

    assert inclusion.shape == (state.n_arms,)
    assert np.all(inclusion >= 0.0) and np.all(inclusion <= 1.0)
    if eligible is not None:
        assert np.all(inclusion[~eligible] == 0.0)
    tolerance = THOMPSON_SUM_TOLERANCE if policy_type == "thompson" else DETERMINISTIC_SUM_TOLERANCE
    assert inclusion.sum() == pytest.approx(min(k, _n_eligible(state, eligible)), abs=tolerance)


@pytest.mark.parametrize("policy_type", ["ucb1", "popularity", "random"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_ranking_policies_share_tied_slots_exactly(policy_type: str, data: st.DataObject) -> None:
    state = data.draw(arm_states())
    k = data.draw(st.integers(1, state.n_arms + 2))
    eligible = data.draw(_eligible_masks(state.n_arms, at_least_one=False))
    flags = [True] * state.n_arms if eligible is None else eligible.tolist()

    inclusion = make_policy(policy_type).inclusion_probabilities(state, k, eligible)

    expected = _reference_inclusion(policy_type, state, flags, k)
    # Each probability is r / t rounded once, so equality is exact.
    assert inclusion.tolist() == [float(p) for p in expected]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_egreedy_inclusion_mixes_greedy_slate_and_uniform_slate(data: st.DataObject) -> None:
    state = data.draw(arm_states())
    k = data.draw(st.integers(1, state.n_arms + 2))
    eligible = data.draw(_eligible_masks(state.n_arms, at_least_one=True))
    params = data.draw(policy_params("egreedy"))
    flags = [True] * state.n_arms if eligible is None else eligible.tolist()

    inclusion = make_policy("egreedy", params).inclusion_probabilities(state, k, eligible)

    decay, total = params["decay"], state.total_pulls
    epsilon = (
        max(params["min_epsilon"], params["epsilon"] / (1.0 + decay * total))
        if decay
        else params["epsilon"]
    )
    greedy = _reference_inclusion("egreedy", state, flags, k)
    n_eligible = sum(flags)
    uniform = Fraction(min(k, n_eligible), n_eligible)
    closed_form = [
        (1 - Fraction(epsilon)) * g + Fraction(epsilon) * uniform if ok else Fraction(0)
        for g, ok in zip(greedy, flags, strict=True)
    ]
    assert inclusion.tolist() == pytest.approx([float(p) for p in closed_form], rel=0, abs=1e-15)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_selection_holds_distinct_eligible_arms_with_their_inclusion_probabilities(
    policy_type: str, data: st.DataObject
) -> None:
    state = data.draw(arm_states())
    k = data.draw(st.integers(1, state.n_arms + 2))
    eligible = data.draw(_eligible_masks(state.n_arms, at_least_one=True))
    policy = make_policy(policy_type, data.draw(policy_params(policy_type)))
    seed = data.draw(st.integers(0, 2**32 - 1))

    selection = policy.select(state, k, np.random.default_rng(seed), eligible)

    positions = state.index_of(selection.arm_ids)
    assert len(selection.arm_ids) == min(k, _n_eligible(state, eligible))
    assert np.unique(selection.arm_ids).size == selection.arm_ids.size
    if eligible is not None:
        assert np.all(eligible[positions])
    # Deterministic policies: the same exact value; Thompson: the same cached estimate.
    inclusion = policy.inclusion_probabilities(state, k, eligible)
    np.testing.assert_array_equal(selection.propensities, inclusion[positions], strict=True)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_choose_returns_the_slate_select_returns_for_the_same_seed(
    policy_type: str, data: st.DataObject
) -> None:
    state = data.draw(arm_states())
    k = data.draw(st.integers(1, state.n_arms + 2))
    eligible = data.draw(_eligible_masks(state.n_arms, at_least_one=True))
    policy = make_policy(policy_type, data.draw(policy_params(policy_type)))
    seed = data.draw(st.integers(0, 2**32 - 1))

    chosen = policy.choose(state, k, np.random.default_rng(seed), eligible)
    selected = policy.select(state, k, np.random.default_rng(seed), eligible)

    np.testing.assert_array_equal(chosen, selected.arm_ids, strict=True)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_ineligible_arms_are_never_selected(policy_type: str) -> None:
    state = ArmState.empty(range(10)).updated(np.arange(10), np.ones(10))
    eligible = np.arange(10) % 3 == 0
    policy = make_policy(policy_type)
    rng = np.random.default_rng(11)

    seen = {int(arm) for _ in range(500) for arm in policy.select(state, 2, rng, eligible).arm_ids}

    assert seen == {0, 3, 6, 9}


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_select_with_no_eligible_arm_returns_an_empty_slate(policy_type: str) -> None:
    state = ArmState.empty(range(5)).updated([0, 1, 1], [1.0, 0.0, 1.0])
    nobody = np.zeros(5, dtype=bool)
    policy = make_policy(policy_type)

    selection = policy.select(state, 2, np.random.default_rng(3), nobody)

    assert selection.arm_ids.size == 0 and selection.propensities.size == 0
    assert policy.choose(state, 2, np.random.default_rng(3), nobody).size == 0
    assert np.all(policy.inclusion_probabilities(state, 2, nobody) == 0.0)


def _state_of_ten_pulls_each(successes: list[int]) -> ArmState:
    n_arms = len(successes)
    return ArmState(np.arange(n_arms), np.full(n_arms, 10.0), np.asarray(successes, float), 4)


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(_state_of_ten_pulls_each([1, 5, 3, 7, 2]), id="distinct-means"),
        pytest.param(_state_of_ten_pulls_each([5, 2, 5, 1, 5]), id="three-tied-best"),
    ],
)
def test_egreedy_propensities_match_empirical_selection_frequencies(state: ArmState) -> None:
    draws, k, epsilon = 40_000, 2, 0.3
    policy = make_policy("egreedy", {"epsilon": epsilon})
    rng = np.random.default_rng(2024)

    # ``choose`` draws the same slate as ``select`` (tested above), only faster.
    slates = np.concatenate([policy.choose(state, k, rng) for _ in range(draws)])
    frequencies = np.bincount(state.index_of(slates), minlength=state.n_arms) / draws

    inclusion = policy.inclusion_probabilities(state, k)
    greedy = _reference_inclusion("egreedy", state, [True] * state.n_arms, k)
    closed_form = [(1 - epsilon) * float(g) + epsilon * k / state.n_arms for g in greedy]
    np.testing.assert_allclose(inclusion, closed_form, rtol=0, atol=1e-15)
    standard_error = np.sqrt(inclusion * (1 - inclusion) / draws)
    assert np.all(np.abs(frequencies - inclusion) < 4 * standard_error), (
        frequencies,
        inclusion,
    )


@pytest.mark.parametrize(("n_arms", "k"), [(5, 2), (7, 3), (10, 1), (10, 10), (12, 5), (100, 7)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ucb1_plays_every_arm_once_before_any_arm_twice(n_arms: int, k: int, seed: int) -> None:
    policy = make_policy("ucb1")
    state = ArmState.empty(np.arange(100, 100 + n_arms))
    rng = np.random.default_rng(seed)
    rewards = np.random.default_rng(seed + 1000)

    played: list[int] = []
    for _ in range(math.ceil(n_arms / k)):
        slate = policy.select(state, k, rng).arm_ids
        played.extend(int(arm) for arm in slate)
        state = policy.update(state, slate, rewards.random(slate.size))

    # Slates are ranked best first, so the unplayed arms of the last slate lead it.
    assert sorted(played[:n_arms]) == list(range(100, 100 + n_arms))
    assert np.all(state.pulls >= 1)
