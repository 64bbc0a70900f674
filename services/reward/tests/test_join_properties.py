"""Property tests of the pure join: any interleaving gives exactly the expected rewards.

Streams are generated with serves, clicks (duplicates, clicks on items not in
the slate, clicks after the window, clicks whose serve never comes) delivered
out of order and in batches of any size. The watermark after each batch is
the earliest event time still to come, so no event is ever behind it, except
for clicks delivered on purpose after their window has closed. Between
batches the state is kept the way the store keeps it: each batch sees only
the entries its events name and those due at its watermark.

The expected outcome is worked out from event times alone.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from cineamate.common.kafka import RawRecord
from cineamate.reward.join import (
    ClickIn,
    ClosedServe,
    JoinResult,
    JoinState,
    PendingServe,
    ServeIn,
    join,
)

GRACE = 1_000
WINDOW = 50
NEVER = 10**9


@dataclass(frozen=True)
class Scenario:
    serves: list[ServeIn]
    clicks: list[ClickIn]  # delivered with the serves, by time plus jitter
    late_clicks: list[ClickIn]  # delivered after every window has closed
    arrival: list[ServeIn | ClickIn]
    cuts: list[int]


def _raw(topic: str, offset: int) -> RawRecord:
    return RawRecord(topic, 0, offset, None, b"{}", 0)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    serve_count = draw(st.integers(1, 6))
    serves = []
    for index in range(serve_count):
        served_at = draw(st.integers(0, 200))
        items = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True))
        serves.append(
            ServeIn(
                f"s{index}",
                "exp",
                "ts",
                "thompson",
                served_at,
                served_at + WINDOW,
                tuple((item, position, 0.5) for position, item in enumerate(items)),
                _raw("serves", index),
            )
        )
    clicks = []
    for index in range(draw(st.integers(0, 14))):
        target = draw(st.integers(0, serve_count))  # serve_count: a serve that never comes
        serve_id = f"s{target}" if target < serve_count else "ghost"
        base = serves[target].served_at if target < serve_count else draw(st.integers(0, 200))
        clicked_at = base + draw(st.integers(0, 2 * WINDOW))
        item = draw(st.integers(1, 7))
        clicks.append(ClickIn(serve_id, item, "u", clicked_at, _raw("clicks", index)))
    late_clicks = []
    for index in range(draw(st.integers(0, 3))):
        serve = serves[draw(st.integers(0, serve_count - 1))]
        item = draw(st.sampled_from([entry[0] for entry in serve.items]))
        clicked_at = serve.served_at + draw(st.integers(0, WINDOW))
        late_clicks.append(
            ClickIn(serve.serve_id, item, "u", clicked_at, _raw("clicks", 100 + index))
        )

    def event_time(event: ServeIn | ClickIn) -> int:
        return event.served_at if isinstance(event, ServeIn) else event.clicked_at

    events: list[ServeIn | ClickIn] = [*serves, *clicks]
    jitter = draw(st.lists(st.integers(0, 30), min_size=len(events), max_size=len(events)))
    order = sorted(range(len(events)), key=lambda i: (event_time(events[i]) + jitter[i], i))
    arrival = [events[i] for i in order]
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=5)))
    return Scenario(serves, clicks, late_clicks, arrival, cuts)


class Persisted:
    """The join state between batches, loaded and saved the way the Redis store does."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingServe] = {}
        self.held: dict[str, list[ClickIn]] = {}
        self.closed: dict[str, ClosedServe] = {}
        self.watermark = -NEVER

    def run(self, events: list[ServeIn | ClickIn], watermark: int) -> JoinResult:
        named = {event.serve_id for event in events}
        view = JoinState(watermark=self.watermark)
        for serve_id, serve in self.pending.items():
            if serve_id in named or serve.window_end < watermark:
                view.pending[serve_id] = PendingServe(
                    serve.serve_id,
                    serve.experiment_id,
                    serve.variant,
                    serve.policy_type,
                    serve.served_at,
                    serve.window_end,
                    serve.items,
                    list(serve.clicked),
                )
        for serve_id, clicks in self.held.items():
            if serve_id in named or min(c.clicked_at for c in clicks) + GRACE < watermark:
                view.held[serve_id] = list(clicks)
        view.closed = {serve_id: self.closed[serve_id] for serve_id in named & set(self.closed)}
        result = join(view, events, watermark=watermark, click_grace=GRACE)
        for serve_id in view.changed_pending:
            self.pending[serve_id] = view.pending[serve_id]
        for serve_id in view.removed_pending:
            self.pending.pop(serve_id, None)
        for serve_id in view.changed_held:
            self.held[serve_id] = view.held[serve_id]
        for serve_id in view.removed_held:
            self.held.pop(serve_id, None)
        self.closed.update(view.newly_closed)
        self.watermark = view.watermark
        return result


def _run(scenario: Scenario) -> list[JoinResult]:
    persisted = Persisted()
    results = []
    bounds = [0, *scenario.cuts, len(scenario.arrival)]
    for start, stop in itertools.pairwise(bounds):
        batch = scenario.arrival[start:stop]
        rest = scenario.arrival[stop:]
        # Nothing still to come is behind the watermark.
        mark = min((_time(event) for event in rest), default=NEVER)
        results.append(persisted.run(batch, mark - 1 if rest else mark))
    results.append(persisted.run(list(scenario.late_clicks), NEVER + 1))
    return results


def _time(event: ServeIn | ClickIn) -> int:
    return event.served_at if isinstance(event, ServeIn) else event.clicked_at


def _expected(scenario: Scenario) -> tuple[dict[tuple[str, int], tuple[float, int]], Counter[str]]:
    """Outcome and reward time per (serve, item), and counts of the other fates."""
    serves = {serve.serve_id: serve for serve in scenario.serves}
    fates: Counter[str] = Counter()
    first_click: dict[tuple[str, int], int] = {}
    for event in scenario.arrival:
        if not isinstance(event, ClickIn):
            continue
        serve = serves.get(event.serve_id)
        if serve is None:
            fates["invalid.click_orphan"] += 1
        elif event.clicked_at > serve.window_end:
            fates["late"] += 1
        elif event.item_id not in [entry[0] for entry in serve.items]:
            fates["invalid.click_item"] += 1
        elif (serve.serve_id, event.item_id) in first_click:
            fates["duplicate"] += 1
        else:
            first_click[(serve.serve_id, event.item_id)] = event.clicked_at
    fates["late"] += len(scenario.late_clicks)
    outcomes = {}
    for serve in scenario.serves:
        for item, _, _ in serve.items:
            clicked = first_click.get((serve.serve_id, item))
            outcomes[(serve.serve_id, item)] = (
                (1.0, clicked) if clicked is not None else (0.0, serve.window_end)
            )
    return outcomes, fates


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_any_interleaving_gives_exactly_the_expected_rewards(scenario: Scenario) -> None:
    results = _run(scenario)
    expected, fates = _expected(scenario)

    outcomes: dict[tuple[str, int], tuple[float, int]] = {}
    for result in results:
        for reward in result.rewards:
            for item, _, _ in reward.items:
                key = (reward.serve.serve_id, item)
                assert key not in outcomes, f"{key} rewarded twice"
                outcomes[key] = (reward.reward, reward.rewarded_at)
    assert outcomes == expected

    seen: Counter[str] = Counter()
    serves = {serve.serve_id: serve for serve in scenario.serves}
    for result in results:
        seen["late"] += len(result.late)
        for late in result.late:
            # Late clicks keep their serve's identity, even after its window closed.
            serve = serves[late.click.serve_id]
            assert (late.variant, late.window_end) == (serve.variant, serve.window_end)
        seen["duplicate"] += result.duplicate_clicks
        for refused in result.refused:
            seen[refused.code] += 1
    assert +seen == +fates


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_the_state_is_empty_once_every_window_closed(scenario: Scenario) -> None:
    persisted = Persisted()
    persisted.run(scenario.arrival, NEVER + 1)

    assert persisted.pending == {}
    assert persisted.held == {}
    assert set(persisted.closed) == {serve.serve_id for serve in scenario.serves}
    assert all(closed.experiment_id == "exp" for closed in persisted.closed.values())


def test_a_serve_delivered_twice_is_joined_once() -> None:
    serve = ServeIn("s", "exp", "ts", "thompson", 0, WINDOW, ((1, 0, 0.5),), _raw("serves", 0))
    persisted = Persisted()
    first = persisted.run([serve, serve], 0)
    closed = persisted.run([serve], NEVER)

    assert first.duplicate_serves == 1
    assert closed.duplicate_serves == 1  # pending: the same serve again, ignored
    assert [(r.serve.serve_id, r.reward) for r in closed.rewards] == [("s", 0.0)]
    assert persisted.run([serve], NEVER).duplicate_serves == 1  # closed: a tombstone
