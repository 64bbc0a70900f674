"""The live replay's clock and request attributes: when each event is due, cohort query."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cineamate.common.errors import ConfigError
from cineamate.offline.movielens import COHORT_LABELS
from cineamate.offline.replay.live_driver import Pacing, cohort_attributes


def test_events_are_due_at_their_event_time_over_the_speedup() -> None:
    times = np.array([1_000, 1_000, 1_060, 4_600], dtype=np.int64)
    offsets = Pacing(speedup=60.0).offsets(times)
    assert offsets.tolist() == [0.0, 0.0, 1.0, 60.0]


def test_a_rate_spreads_the_events_over_count_over_rate_seconds_keeping_their_shape() -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.integers(0, 14 * 86_400, size=2_001)).astype(np.int64)
    pacing = Pacing.for_rate(times, rate=200.0)
    offsets = pacing.offsets(times)
    assert offsets[-1] == pytest.approx(2_000 / 200.0)
    # Event-time gaps are scaled, not evened out.
    gaps = np.diff(times) / pacing.speedup
    np.testing.assert_allclose(np.diff(offsets), gaps)


def test_events_at_one_instant_are_all_due_at_once() -> None:
    times = np.full(5, 975_000_000, dtype=np.int64)
    pacing = Pacing.for_rate(times, rate=10.0)
    assert math.isinf(pacing.speedup)
    assert pacing.offsets(times).tolist() == [0.0] * 5


@pytest.mark.parametrize("speedup", [0.0, -1.0, math.nan])
def test_a_speedup_that_is_not_positive_is_refused(speedup: float) -> None:
    with pytest.raises(ConfigError):
        Pacing(speedup)


@pytest.mark.parametrize("rate", [0.0, -5.0, math.inf, math.nan])
def test_a_rate_that_is_not_a_positive_number_is_refused(rate: float) -> None:
    with pytest.raises(ConfigError):
        Pacing.for_rate(np.array([0, 10], dtype=np.int64), rate)


def test_movielens_cohorts_become_gender_and_age_attributes() -> None:
    attributes = [cohort_attributes(label) for label in COHORT_LABELS]
    assert {a["gender"] for a in attributes} == {"F", "M"}
    assert all(set(a) == {"gender", "age"} and a["age"] for a in attributes)
    assert len({tuple(a.values()) for a in attributes}) == len(COHORT_LABELS)


def test_logged_context_cells_become_one_attribute_per_column() -> None:
    assert cohort_attributes("device=ios,plan=free") == {"device": "ios", "plan": "free"}
    assert cohort_attributes("all") == {}
