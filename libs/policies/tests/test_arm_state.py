"""ArmState adds observations whatever their order or batching, survives its Redis-hash form
bit for bit, and refuses rewards outside [0, 1] and arms outside its catalogue."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cineamate.common.errors import InvalidInput
from cineamate.policies import ArmState, UnknownArm, make_policy

PROPERTY_SETTINGS = settings(database=None, deadline=None, derandomize=True, max_examples=200)
# Rewards on a 1/64 grid: every partial sum of a batch is exact in float64, so the order of
# additions cannot matter. Clicks (0 or 1) are on this grid.
GRID_REWARDS = st.integers(0, 64).map(lambda step: step / 64)

FloatArray = npt.NDArray[np.float64]


@st.composite
def states_and_batches(
    draw: st.DrawFn, rewards: st.SearchStrategy[float] = GRID_REWARDS
) -> tuple[ArmState, npt.NDArray[np.int64], FloatArray]:
    n_arms = draw(st.integers(1, 8))
    arm_ids = np.asarray(
        sorted(
            draw(
                st.lists(
                    st.integers(-(10**12), 10**12), min_size=n_arms, max_size=n_arms, unique=True
                )
            )
        ),
        dtype=np.int64,
    )
    pulls = np.asarray(draw(st.lists(st.integers(0, 50), min_size=n_arms, max_size=n_arms)))
    successes = np.floor(pulls * draw(st.floats(0.0, 1.0)))
    state = ArmState(arm_ids, pulls.astype(float), successes, draw(st.integers(0, 1000)))
    size = draw(st.integers(0, 30))
    positions = draw(st.lists(st.integers(0, n_arms - 1), min_size=size, max_size=size))
    batch_rewards = draw(st.lists(rewards, min_size=size, max_size=size))
    return state, arm_ids[positions], np.asarray(batch_rewards, dtype=np.float64)


def _assert_same_counts(left: ArmState, right: ArmState) -> None:
    assert left.pulls.tobytes() == right.pulls.tobytes()
    assert left.successes.tobytes() == right.successes.tobytes()


@PROPERTY_SETTINGS
@given(data=st.data())
def test_batch_update_does_not_depend_on_observation_order(data: st.DataObject) -> None:
    state, arm_ids, rewards = data.draw(states_and_batches())
    order = np.asarray(data.draw(st.permutations(range(arm_ids.size))), dtype=np.int64)

    in_order = state.updated(arm_ids, rewards)
    shuffled = state.updated(arm_ids[order], rewards[order])

    _assert_same_counts(in_order, shuffled)
    assert in_order.version == shuffled.version == state.version + 1


def test_batch_update_does_not_depend_on_order_of_fractional_rewards() -> None:
    # Rewards are floats in [0, 1] (RewardEvent.reward), not only clicks.
    state = ArmState.empty([7])

    forward = state.updated([7, 7, 7], [0.1, 0.2, 0.3])
    backward = state.updated([7, 7, 7], [0.3, 0.2, 0.1])

    _assert_same_counts(forward, backward)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_batch_split_in_two_updates_gives_the_counts_of_one_update(data: st.DataObject) -> None:
    state, arm_ids, rewards = data.draw(states_and_batches())
    cut = data.draw(st.integers(0, arm_ids.size))

    whole = state.updated(arm_ids, rewards)
    split = state.updated(arm_ids[:cut], rewards[:cut]).updated(arm_ids[cut:], rewards[cut:])

    _assert_same_counts(whole, split)
    assert (whole.version, split.version) == (state.version + 1, state.version + 2)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_merged_partition_states_equal_one_state_fed_everything(data: st.DataObject) -> None:
    state, arm_ids, rewards = data.draw(states_and_batches())
    cut = data.draw(st.integers(0, arm_ids.size))
    empty = ArmState.empty(state.arm_ids)

    first = empty.updated(arm_ids[:cut], rewards[:cut])
    second = empty.updated(arm_ids[cut:], rewards[cut:])
    merged = first.merged(second)

    _assert_same_counts(merged, empty.updated(arm_ids, rewards))
    assert merged.version == 2


def test_update_leaves_the_original_state_untouched() -> None:
    state = ArmState.empty([1, 2, 3])
    policy = make_policy("thompson")

    after = policy.update(state, [2, 2, 3], [1.0, 0.0, 1.0])

    assert state.pulls.tolist() == [0.0, 0.0, 0.0] and state.version == 0
    assert after.pulls.tolist() == [0.0, 2.0, 1.0] and after.successes.tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="read-only"):
        after.pulls[0] = 5.0


@PROPERTY_SETTINGS
@given(
    arm_ids=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20, unique=True),
    data=st.data(),
)
def test_hash_form_round_trips_bit_for_bit(arm_ids: list[int], data: st.DataObject) -> None:
    n_arms = len(arm_ids)
    counts = st.floats(0.0, 1e300, allow_subnormal=True)
    pulls = np.asarray(data.draw(st.lists(counts, min_size=n_arms, max_size=n_arms)))
    fractions = data.draw(st.lists(st.floats(0.0, 1.0), min_size=n_arms, max_size=n_arms))
    successes = pulls * np.asarray(fractions, dtype=np.float64)
    version = data.draw(st.integers(0, 2**62))
    state = ArmState(np.asarray(sorted(arm_ids), dtype=np.int64), pulls, successes, version)
    as_bytes = data.draw(st.booleans())

    fields = state.to_hash()
    # Redis clients return bytes keys unless told to decode them.
    restored = ArmState.from_hash(
        {name.encode(): value for name, value in fields.items()} if as_bytes else fields
    )

    for name in ("arm_ids", "pulls", "successes"):
        original, copy = getattr(state, name), getattr(restored, name)
        assert copy.dtype == original.dtype
        assert copy.tobytes() == original.tobytes()
    assert restored.version == state.version


def test_hash_without_a_field_is_invalid_input() -> None:
    fields = ArmState.empty([1, 2]).to_hash()
    del fields["version"]

    with pytest.raises(InvalidInput, match="version"):
        ArmState.from_hash(fields)


@pytest.mark.parametrize(
    "reward", [-0.1, -1e-300, 1.0 + 1e-12, 2.0, float("nan"), float("inf"), float("-inf")]
)
def test_reward_outside_unit_interval_is_invalid_input(reward: float) -> None:
    state = ArmState.empty([1, 2, 3])

    with pytest.raises(InvalidInput) as raised:
        state.updated([1, 2], [1.0, reward])
    assert raised.value.code == "invalid.input"


@pytest.mark.parametrize(
    ("catalogue", "unknown"),
    [
        pytest.param([1, 2, 3], 4, id="compact-after-last"),
        pytest.param([1, 2, 3], 0, id="compact-before-first"),
        pytest.param([1, 3, 5], 2, id="compact-gap"),
        pytest.param([-(2**62), 0, 2**62], 1, id="sparse-gap"),
        pytest.param([-(2**62), 0, 2**62], 2**62 + 1, id="sparse-after-last"),
    ],
)
def test_unknown_arm_is_invalid_input(catalogue: list[int], unknown: int) -> None:
    state = ArmState.empty(catalogue)

    with pytest.raises(UnknownArm) as raised:
        state.updated([catalogue[0], unknown], [1.0, 1.0])
    assert isinstance(raised.value, InvalidInput)
    assert str(unknown) in raised.value.message


def test_ids_at_the_ends_of_the_int64_range_are_ordered_without_overflow() -> None:
    ids = np.asarray([-1, 2**63 - 1], dtype=np.int64)
    assert ArmState(ids, np.zeros(2), np.zeros(2), 0).n_arms == 2
    with pytest.raises(InvalidInput, match="strictly increasing"):
        ArmState(ids[::-1].copy(), np.zeros(2), np.zeros(2), 0)
