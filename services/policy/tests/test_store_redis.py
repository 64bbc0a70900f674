"""A posterior round-trips through a real Redis: what the learner saves is what it and the
assignment instances load, bit for bit, with the offsets it covers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from cineamate.policies import ArmState
from cineamate.policy.service import PosteriorKey
from cineamate.policy.store import PosteriorStore
from cineamate.stack.local import LocalStack
from cineamate.stack.testing import unique

pytestmark = pytest.mark.integration

PROPERTY_SETTINGS = settings(database=None, deadline=None, derandomize=True, max_examples=60)
DEDUP_WINDOW_SECONDS = 3_600


@st.composite
def arm_states(draw: st.DrawFn) -> ArmState:
    arm_ids = draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30, unique=True))
    n_arms = len(arm_ids)
    pulls = np.asarray(
        draw(st.lists(st.floats(0.0, 1e300), min_size=n_arms, max_size=n_arms)), dtype=np.float64
    )
    shares = draw(st.lists(st.floats(0.0, 1.0), min_size=n_arms, max_size=n_arms))
    version = draw(st.integers(0, 2**62))
    return ArmState(
        np.asarray(sorted(arm_ids), dtype=np.int64),
        pulls,
        pulls * np.asarray(shares, dtype=np.float64),
        version,
    )


async def _save_and_load(
    redis_url: str, state: ArmState, offsets: dict[int, int]
) -> tuple[bool, ArmState | None, dict[int, int], bool]:
    client = Redis.from_url(redis_url)
    try:
        store = PosteriorStore(client, dedup_window_seconds=DEDUP_WINDOW_SECONDS)
        key = PosteriorKey(unique("exp"), "ts")
        saved = await store.save(key, expected_version=None, state=state, offsets=offsets)
        loaded = await store.load(key)
        # A second writer computing from "nothing stored" must lose.
        overwritten = await store.save(
            key, expected_version=None, state=ArmState.empty([1]), offsets={}
        )
    finally:
        await client.aclose()
    if loaded is None:
        return saved, None, {}, overwritten
    return saved, loaded.state, loaded.offsets, overwritten


@PROPERTY_SETTINGS
@given(
    state=arm_states(),
    offsets=st.dictionaries(st.integers(0, 63), st.integers(0, 2**62), max_size=8),
)
def test_posterior_round_trips_through_redis_bit_for_bit(
    stack: LocalStack, state: ArmState, offsets: dict[int, int]
) -> None:
    saved, loaded, loaded_offsets, overwritten = asyncio.run(
        _save_and_load(stack.redis_url, state, offsets)
    )

    assert saved and not overwritten
    assert loaded is not None
    for name in ("arm_ids", "pulls", "successes"):
        original, copy = getattr(state, name), getattr(loaded, name)
        assert copy.dtype == original.dtype
        assert copy.tobytes() == original.tobytes()
    assert loaded.version == state.version
    assert loaded_offsets == offsets


async def _seen_after_save(redis_url: str) -> tuple[set[str], set[str]]:
    client = Redis.from_url(redis_url)
    try:
        store = PosteriorStore(client, dedup_window_seconds=DEDUP_WINDOW_SECONDS)
        key = PosteriorKey(unique("exp"), "ts")
        at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
        state = ArmState.empty([1, 2]).updated(np.asarray([1, 2]), np.asarray([1.0, 0.0]))
        before = await store.seen(key, [("r1", at), ("r2", at)])
        await store.save(
            key, expected_version=None, state=state, offsets={0: 7}, consumed=[("r1", at)]
        )
        after = await store.seen(key, [("r1", at), ("r2", at)])
    finally:
        await client.aclose()
    return before, after


def test_consumed_reward_ids_are_seen_after_the_save(stack: LocalStack) -> None:
    before, after = asyncio.run(_seen_after_save(stack.redis_url))

    assert before == set()
    assert after == {"r1"}
