"""Bucketing: users stay in their bucket, the split matches the configuration, and a change
moves no more buckets than it must.

Statistical checks run on 100,000 fixed user ids, so their outcome is reproducible; with a
uniform hash each chi-square test would fail by chance with probability 0.001.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from cineamate.assignment.bucketing import (
    BUCKETS,
    Allocation,
    allocate,
    bucket_of,
    target_counts,
)

USERS = tuple(f"user-{i}" for i in range(100_000))
SALT = "exp_bucketing0"
CONTROL = "control"
# Outside the experiment's traffic a bucket has no owner; its users see the control.
OUTSIDE = None

Weights = Sequence[tuple[str, float]]


@functools.cache
def _buckets(salt: str) -> tuple[int, ...]:
    return tuple(bucket_of(salt, user) for user in USERS)


def _owners(allocation: Allocation) -> list[str | None]:
    return [allocation.owner(bucket) for bucket in range(BUCKETS)]


def _moved(before: Allocation, after: Allocation) -> int:
    """Buckets whose owner differs (entering or leaving the traffic counts as a move)."""
    return sum(old != new for old, new in zip(_owners(before), _owners(after), strict=True))


def _intended(weights: Weights, traffic: float) -> dict[str | None, int]:
    """Buckets per owner the configuration asks for, including those outside the traffic."""
    total = round(traffic * BUCKETS)
    return {**target_counts(weights, total), OUTSIDE: BUCKETS - total}


def _total_variation(before: dict[str | None, int], after: dict[str | None, int]) -> int:
    """The fewest buckets that must change owner to turn one split into the other."""
    owners = before.keys() | after.keys()
    return sum(max(0, before.get(owner, 0) - after.get(owner, 0)) for owner in owners)


def _assert_is_allocation_of(allocation: Allocation, weights: Weights, traffic: float) -> None:
    total = round(traffic * BUCKETS)
    segments = allocation.segments
    assert all(segment.size > 0 for segment in segments), segments
    position = 0
    for segment in segments:  # sorted, so disjoint and gapless means each starts where one ends
        assert segment.start == position, segments
        position = segment.end
    assert position == total, segments
    expected = {name: count for name, count in target_counts(weights, total).items() if count}
    assert allocation.counts() == expected


def test_bucket_of_is_sticky_across_calls_and_releases() -> None:
    # Pinned values: a changed hash would silently move every user of every experiment.
    assert bucket_of("salt-1", "user-1") == 2036
    assert bucket_of("exp_0123456789ab", "u-42") == 361
    assert _buckets(SALT) == tuple(bucket_of(SALT, user) for user in USERS)
    assert all(0 <= bucket < BUCKETS for bucket in _buckets(SALT))


def test_bucket_of_depends_on_the_salt() -> None:
    same = sum(a == b for a, b in zip(_buckets("salt-a"), _buckets("salt-b"), strict=True))
    # Independent salts agree on a user's bucket with probability 1/BUCKETS: about 10 here.
    assert same < 40


def test_buckets_are_uniform() -> None:
    observed = Counter(_buckets(SALT))
    frequencies = [observed.get(bucket, 0) for bucket in range(BUCKETS)]
    assert chisquare(frequencies).pvalue > 0.001


@pytest.mark.parametrize(
    ("weights", "traffic"),
    [
        ([(CONTROL, 1.0), ("ts", 1.0)], 1.0),
        ([(CONTROL, 2.0), ("ts", 1.0), ("egreedy", 1.0)], 0.6),
        ([(CONTROL, 1.0), ("ts", 3.0), ("ucb", 0.5), ("popular", 0.25)], 0.8),
        ([(CONTROL, 1.0), ("ts", 1.0)], 0.05),
    ],
)
def test_observed_split_matches_configured_shares(weights: Weights, traffic: float) -> None:
    allocation = allocate(weights, traffic)
    served = Counter(allocation.owner(bucket) or CONTROL for bucket in _buckets(SALT))
    intended = _intended(weights, traffic)
    shares = {name: count / BUCKETS for name, count in intended.items() if name is not None}
    shares[CONTROL] += intended[OUTSIDE] / BUCKETS
    names = sorted(shares)
    assert set(served) <= set(names)
    for name in names:
        assert abs(served[name] / len(USERS) - shares[name]) < 0.01, (name, served, shares)
    observed = [served[name] for name in names]
    expected = [shares[name] * len(USERS) for name in names]
    assert chisquare(observed, expected).pvalue > 0.001, (served, shares)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([(CONTROL, 1.0), ("ts", 1.0)], [(CONTROL, 1.0), ("ts", 3.0)]),
        ([(CONTROL, 1.0), ("ts", 1.0), ("eg", 1.0)], [(CONTROL, 1.0), ("ts", 2.0), ("eg", 1.0)]),
        ([(CONTROL, 5.0), ("ts", 1.0), ("eg", 2.0)], [(CONTROL, 1.0), ("ts", 1.0), ("eg", 7.0)]),
    ],
)
@pytest.mark.parametrize("traffic", [1.0, 0.37])
def test_weight_change_moves_only_the_minimum_share(
    before: Weights, after: Weights, traffic: float
) -> None:
    current = allocate(before, traffic)
    changed = allocate(after, traffic, current)
    _assert_is_allocation_of(changed, after, traffic)
    minimum = _total_variation(_intended(before, traffic), _intended(after, traffic))
    assert minimum > 0
    assert _moved(current, changed) == minimum


@pytest.mark.parametrize(
    ("before", "after"),
    [(0.5, 1.0), (0.2, 0.7), (0.0, 0.3)],
)
@pytest.mark.parametrize(
    "weights", [[(CONTROL, 1.0), ("ts", 1.0)], [(CONTROL, 2.0), ("ts", 1.0), ("eg", 1.0)]]
)
def test_traffic_increase_moves_only_the_minimum_share(
    weights: Weights, before: float, after: float
) -> None:
    current = allocate(weights, before)
    changed = allocate(weights, after, current)
    _assert_is_allocation_of(changed, weights, after)
    minimum = _total_variation(_intended(weights, before), _intended(weights, after))
    assert _moved(current, changed) == minimum


@pytest.mark.parametrize(
    ("before", "after"),
    [(1.0, 0.5), (0.8, 0.3)],
)
@pytest.mark.parametrize(
    "weights", [[(CONTROL, 1.0), ("ts", 1.0)], [(CONTROL, 2.0), ("ts", 1.0), ("eg", 1.0)]]
)
def test_traffic_decrease_moves_only_the_minimum_share(
    weights: Weights, before: float, after: float
) -> None:
    current = allocate(weights, before)
    changed = allocate(weights, after, current)
    _assert_is_allocation_of(changed, weights, after)
    # The first traffic share of buckets is in the experiment, so the buckets past the new
    # share must leave; the rest need only be rebalanced to the new targets.
    old_total, new_total = round(before * BUCKETS), round(after * BUCKETS)
    kept: dict[str | None, int] = {}
    for owner in _owners(current)[:new_total]:
        kept[owner] = kept.get(owner, 0) + 1
    minimum = (old_total - new_total) + _total_variation(
        kept, dict(target_counts(weights, new_total))
    )
    moved = _moved(current, changed)
    assert moved == minimum, (
        f"moved {moved} buckets where {minimum} suffice: {current.to_json()} -> {changed.to_json()}"
    )


_NAMES = (CONTROL, "ts", "eg", "ucb", "pop", "rand")
_traffics = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def _weight_lists(draw: st.DrawFn, count: int) -> list[tuple[str, float]]:
    weights = draw(
        st.lists(
            st.floats(min_value=0.01, max_value=100.0, allow_nan=False),
            min_size=count,
            max_size=count,
        )
    )
    return list(zip(_NAMES[:count], weights, strict=True))


@st.composite
def _histories(draw: st.DrawFn) -> list[tuple[list[tuple[str, float]], float]]:
    """A fresh configuration followed by up to four changes of weights and traffic."""
    count = draw(st.integers(min_value=2, max_value=len(_NAMES)))
    steps = draw(st.integers(min_value=1, max_value=5))
    return [(draw(_weight_lists(count)), draw(_traffics)) for _ in range(steps)]


_PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None)


@_PROPERTY_SETTINGS
@given(history=_histories())
def test_every_allocation_partitions_its_traffic_by_target_counts(
    history: list[tuple[list[tuple[str, float]], float]],
) -> None:
    allocation: Allocation | None = None
    for weights, traffic in history:
        allocation = allocate(weights, traffic, allocation)
        _assert_is_allocation_of(allocation, weights, traffic)
        assert Allocation.from_json(allocation.to_json()).segments == allocation.segments


@_PROPERTY_SETTINGS
@given(history=_histories())
def test_reallocating_unchanged_weights_moves_nothing(
    history: list[tuple[list[tuple[str, float]], float]],
) -> None:
    allocation: Allocation | None = None
    for weights, traffic in history:
        allocation = allocate(weights, traffic, allocation)
    assert allocation is not None
    weights, traffic = history[-1]
    again = allocate(weights, traffic, allocation)
    assert again.segments == allocation.segments


@_PROPERTY_SETTINGS
@given(
    count=st.integers(min_value=2, max_value=len(_NAMES)),
    data=st.data(),
)
def test_changes_that_do_not_shrink_traffic_move_only_the_minimum_share(
    count: int, data: st.DataObject
) -> None:
    before_weights = data.draw(_weight_lists(count))
    after_weights = data.draw(_weight_lists(count))
    before_traffic = data.draw(_traffics)
    after_traffic = data.draw(st.floats(min_value=before_traffic, max_value=1.0))
    current = allocate(before_weights, before_traffic)
    changed = allocate(after_weights, after_traffic, current)
    minimum = _total_variation(
        _intended(before_weights, before_traffic), _intended(after_weights, after_traffic)
    )
    assert _moved(current, changed) == minimum
