"""Pre-drawn slates: fresh draws for each request, dropped when the state changes, with the
propensities ``select`` would report. Frequencies over 6,000 slates are checked against the
policy's inclusion probabilities within 5 binomial standard deviations (for Thompson, whose
probabilities are Monte-Carlo estimates, the estimate's own deviation is added)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cineamate.assignment.slates import SlatePools
from cineamate.policies import ArmState, make_policy

TAKES = 6_000


def _state(seed: int = 0) -> ArmState:
    rng = np.random.default_rng(seed)
    arms = rng.integers(0, 300, 2_000)
    return ArmState.empty(np.arange(300)).updated(arms, (rng.random(2_000) < 0.2).astype(float))


@pytest.mark.parametrize("policy_type", ["thompson", "egreedy", "ucb1", "random", "popularity"])
async def test_pooled_slates_follow_the_policy_with_its_propensities(policy_type: str) -> None:
    policy, state = make_policy(policy_type), _state()
    pools = SlatePools(np.random.default_rng(1), size=16)
    inclusion = policy.inclusion_probabilities(state, 10)
    counts = np.zeros(state.n_arms)
    for take in range(TAKES):
        if take % 8 == 0:
            await asyncio.sleep(0)  # lets pools drawn in the background arrive
        arm_ids, propensities = pools.take(policy, state, 10)
        assert len(set(arm_ids)) == 10
        positions = state.lookup(arm_ids)
        np.testing.assert_allclose(propensities, inclusion[positions])
        counts[positions] += 1
    variance = np.clip(inclusion * (1 - inclusion), 1e-4, None)
    # Thompson's propensities are themselves Monte-Carlo estimates over its draws.
    draws = getattr(policy, "propensity_draws", None)
    estimate_variance = 0.0 if policy.exact_propensities else variance / draws
    tolerance = 5 * np.sqrt(variance / TAKES + estimate_variance)
    assert np.all(np.abs(counts / TAKES - inclusion) <= tolerance)


async def test_a_new_state_gets_a_new_pool_and_takes_are_fresh() -> None:
    policy, state = make_policy("thompson"), _state()
    pools = SlatePools(np.random.default_rng(2), size=8)
    first = [tuple(pools.take(policy, state, 5)[0]) for _ in range(8)]
    await asyncio.sleep(0.2)  # the successor drawn in the background is for the old state
    assert len(set(first)) > 1  # independent draws, not one slate repeated
    updated = state.updated([0] * 50, [1.0] * 50)  # arm 0 becomes a clear favourite
    after = [pools.take(policy, updated, 5)[0] for _ in range(8)]
    assert all(0 in slate for slate in after)
    assert len(pools.take(policy, updated, 3)[0]) == 3  # each slate size has its own pool
