"""Live against offline: the live CTR and its interval, interval overlap, the per-variant
comparison over the events the platform gave each variant, and the written report.

The drive is a recorded outcome (which variant served each event, which matched and
which were clicked), so no platform is needed: the driver itself is exercised against
the real services in ``tests/test_replay_live.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cineamate.offline.estimators import Estimate, dm
from cineamate.offline.replay.evaluate import prepare_evaluation
from cineamate.offline.replay.live import LiveResult, LiveSpec, write_live_report
from cineamate.offline.replay.live_compare import compare, intervals_overlap, live_ctr
from cineamate.offline.replay.live_driver import DriveResult, Pacing
from cineamate.offline.replay.log import ReplayLog
from cineamate.offline.replay.run import ReplaySpec, ReplayWindow, replay_policy
from cineamate.offline.replay.window import Window

POLICIES = ("thompson", "ucb1")
VARIANTS = (*POLICIES, "control")
TYPES = (*POLICIES, "random")


def _cut(n_events: int = 2_000, n_items: int = 20, seed: int = 5) -> ReplayWindow:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n_items, size=n_events)
    click_probability = np.linspace(0.2, 0.8, n_items)
    log = ReplayLog.from_arrays(
        times=np.arange(n_events) * 60,
        users=rng.integers(0, 120, size=n_events),
        items=items,
        rewards=(rng.random(n_events) < click_probability[items]).astype(float),
        catalogue=np.arange(n_items),
    )
    window = Window(0, n_events * 60, "as given")
    return ReplayWindow("test log", window, log, log.rows(slice(0, 0)), None)


def _drive(cut: ReplayWindow, seed: int = 9) -> DriveResult:
    """The platform's outcome: users split by id, a quarter of the events matched."""
    events = cut.events
    result = DriveResult.empty(len(events))
    result.variant[:] = events.users % len(VARIANTS)
    result.matched[:] = np.random.default_rng(seed).random(len(events)) < 0.25
    result.clicked[:] = result.matched & (events.rewards == 1.0)
    result.seconds = 10.0
    return result


def _spec() -> ReplaySpec:
    return ReplaySpec(data=Path("test"), policies=POLICIES, baselines=("random",), seeds=2, k=5)


def test_the_live_ctr_is_clicks_over_matches_with_the_offline_replay_interval() -> None:
    estimate = live_ctr(matches=200, clicks=130)
    same = dm(np.repeat([1.0, 0.0], [130, 70]))
    assert estimate == same
    assert estimate.value == pytest.approx(0.65)
    half = 1.959963984540054 * math.sqrt(0.65 * 0.35 / 199)
    assert estimate.ci_high - estimate.value == pytest.approx(half)


def test_without_matches_there_is_no_live_ctr() -> None:
    assert math.isnan(live_ctr(matches=0, clicks=0).value)


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        (Estimate(0.5, 0.4, 0.6), Estimate(0.55, 0.45, 0.65), True),
        (Estimate(0.5, 0.4, 0.6), Estimate(0.7, 0.6, 0.8), True),
        (Estimate(0.5, 0.4, 0.6), Estimate(0.3, 0.2, 0.39), False),
        (Estimate(0.5, 0.4, 0.6), Estimate(math.nan, math.nan, math.nan), False),
    ],
)
def test_estimates_agree_when_their_intervals_overlap(
    first: Estimate, second: Estimate, overlap: bool
) -> None:
    assert intervals_overlap(first, second) is overlap
    assert intervals_overlap(second, first) is overlap


def test_each_variant_is_compared_on_exactly_the_events_the_platform_gave_it() -> None:
    cut, spec = _cut(), _spec()
    drive = _drive(cut)
    comparisons = compare(spec, cut, drive, VARIANTS, TYPES)

    assert [c.variant for c in comparisons] == list(VARIANTS)
    assert [c.policy for c in comparisons] == list(TYPES)
    assert sum(c.events for c in comparisons) == len(cut.events)
    assert sum(c.matches for c in comparisons) == int(drive.matched.sum())
    assert sum(c.clicks for c in comparisons) == int(drive.clicked.sum())
    for index, comparison in enumerate(comparisons):
        mine = drive.variant == index
        subset = cut.events.rows(mine)
        assert np.unique(subset.users % len(VARIANTS)).tolist() == [index]
        evaluation = prepare_evaluation(subset, cut.before, spec.k)
        expected = replay_policy(spec, evaluation, comparison.policy, index)
        assert comparison.offline == expected.estimates["replay"]
        assert comparison.offline_matches == expected.matches
        assert comparison.live == live_ctr(comparison.matches, comparison.clicks)


def test_a_variant_the_platform_never_served_has_no_figures_and_does_not_agree() -> None:
    cut = _cut()
    drive = _drive(cut)
    drive.variant[drive.variant == 1] = 0
    comparisons = compare(_spec(), cut, drive, VARIANTS, TYPES)
    empty = comparisons[1]
    assert (empty.events, empty.matches, empty.clicks) == (0, 0, 0)
    assert math.isnan(empty.live.value) and math.isnan(empty.offline.value)
    assert not empty.agree


def test_the_report_holds_the_comparison_as_json_and_a_table(tmp_path: Path) -> None:
    cut = _cut()
    drive = _drive(cut)
    drive.variant[drive.variant == 1] = 0
    spec = LiveSpec(replay=_spec(), url="http://127.0.0.1:8000", reward_window_seconds=3.0)
    result = LiveResult(
        spec=spec,
        cut=cut,
        experiment_id="exp_000000000000",
        pacing=Pacing(600.0),
        drive=drive,
        comparisons=compare(spec.replay, cut, drive, spec.variants, spec.policy_types),
        seconds=12.0,
    )
    written = write_live_report(result, tmp_path)

    assert written == [tmp_path / "live.json", tmp_path / "live.md"]

    def no_nan(constant: str) -> float:
        raise AssertionError(f"{constant} in live.json")

    document = json.loads((tmp_path / "live.json").read_text(), parse_constant=no_nan)
    assert document["drive"]["events"] == len(cut.events)
    assert [v["variant"] for v in document["variants"]] == list(VARIANTS)
    assert document["variants"][1]["live_ctr"]["value"] is None
    assert document["all_agree"] is False
    report = (tmp_path / "live.md").read_text()
    assert "| thompson | thompson |" in report and "| control | random |" in report
    # 3 s of wall time at 600 event seconds per second.
    assert "about\n  1,800 s of event time" in report
