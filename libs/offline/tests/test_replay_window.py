"""Window selection: all, dates, and auto finding a planted dense window."""

from __future__ import annotations

import numpy as np
import pytest

from cineamate.common.errors import InvalidInput
from cineamate.offline.replay.log import DAY_SECONDS, ReplayLog
from cineamate.offline.replay.window import _present_per_window, choose_window

START = 960_000_000 // DAY_SECONDS * DAY_SECONDS  # a midnight in 2000


def _planted(dense_start_day: int, seed: int = 0) -> ReplayLog:
    """200 days of sparse activity and one dense 14-day stretch of many users."""
    rng = np.random.default_rng(seed)
    background_days = rng.integers(0, 200, 4_000)
    dense_days = dense_start_day + rng.integers(0, 14, 6_000)
    days = np.concatenate([background_days, dense_days])
    users = np.concatenate([rng.integers(0, 50, 4_000), rng.integers(0, 2_000, 6_000)])
    items = rng.integers(0, 100, days.size)
    order = np.argsort(days, kind="stable")
    return ReplayLog.from_arrays(
        times=START + days[order] * DAY_SECONDS + 3_600,
        users=users[order],
        items=items[order],
        rewards=np.zeros(days.size),
        catalogue=np.arange(100),
    )


@pytest.mark.parametrize("dense_start_day", [0, 57, 186])
def test_auto_finds_a_planted_dense_window(dense_start_day: int) -> None:
    window = choose_window(_planted(dense_start_day), "auto", days=14, min_coverage=0.5)
    assert window.start == START + dense_start_day * DAY_SECONDS
    assert window.end == window.start + 14 * DAY_SECONDS
    assert "events x distinct users" in window.reason


def test_distinct_keys_per_window_agree_with_counting_by_hand() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 60, 800)
    days = np.sort(rng.integers(0, 90, 800))
    counted = _present_per_window(keys, days, 90, 9)
    expected = [len(set(keys[(days >= s) & (days < s + 9)].tolist())) for s in range(90)]
    assert counted.tolist() == expected


def test_all_and_dates() -> None:
    log = _planted(20)
    whole = choose_window(log, "all")
    assert (whole.start, whole.end) == (int(log.times[0]), int(log.times[-1]) + 1)
    dated = choose_window(log, "2000-06-10:2000-06-12")
    assert dated.end - dated.start == 2 * DAY_SECONDS
    assert dated.label() == "2000-06-10 to 2000-06-11"


@pytest.mark.parametrize("spec", ["yesterday", "2000-06-10", "2000-06-12:2000-06-10", "x:y"])
def test_a_bad_window_names_the_field(spec: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        choose_window(_planted(20), spec)
    assert caught.value.field == "window"


def test_no_window_covering_enough_of_the_catalogue_is_an_error() -> None:
    planted = _planted(20)
    # The events touch 100 items of a catalogue of 1,000.
    log = ReplayLog.from_arrays(
        times=planted.times,
        users=planted.users,
        items=planted.items,
        rewards=planted.rewards,
        catalogue=np.arange(1_000),
    )
    with pytest.raises(InvalidInput, match="lower --min-coverage"):
        choose_window(log, "auto", min_coverage=0.5)
