"""Serve and click streams with a known answer, for tests, benchmarks and smoke checks.

Serves are spaced evenly in event time; each served item is clicked with a
given probability somewhere inside the window (and sometimes clicked again:
a duplicate); now and then an unclicked item is clicked after the window (a
late click). The stream is in event-time order, as a live stream would be,
and ``outcomes`` says which reward every served item must end with; from it
follow the counts every later stage must reach (the learner's pulls and
successes per arm, the analytics totals), whatever fails on the way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from cineamate.common.events import ClickEvent, RewardedItem, RewardEvent, ServedItem, ServeEvent
from cineamate.common.kafka import OutgoingMessage

__all__ = ["ArmCounts", "Stream", "count_arms", "generate", "reward_of"]


@dataclass(frozen=True)
class ArmCounts:
    """Outcomes of one arm of one variant: what the learner's posterior must hold."""

    pulls: int
    successes: int


@dataclass(frozen=True)
class Stream:
    """Events in event-time order and what the join must make of them."""

    events: list[ServeEvent | ClickEvent]
    outcomes: dict[str, float]  # reward id (serve_id:item_id) -> 1.0 or 0.0
    variant_of: dict[str, str]  # serve id -> variant
    late_clicks: int
    duplicate_clicks: int
    window: timedelta

    @property
    def serves(self) -> int:
        return sum(isinstance(event, ServeEvent) for event in self.events)

    @property
    def clicks(self) -> int:
        """Click events, duplicates and late ones included."""
        return len(self.events) - self.serves

    def messages(self, serves_topic: str, clicks_topic: str) -> list[OutgoingMessage]:
        """The events as messages for the two topics, in stream order."""
        return [
            OutgoingMessage.of(
                serves_topic if isinstance(event, ServeEvent) else clicks_topic, event
            )
            for event in self.events
        ]

    def rewards(self) -> list[RewardEvent]:
        """The reward events the join must emit, in the order it decides them: one per first
        click within the window, and one with every item left unclicked when it closes."""
        first_click: dict[str, datetime] = {}
        serves: list[ServeEvent] = []
        for event in self.events:
            if isinstance(event, ServeEvent):
                serves.append(event)
                continue
            reward_id = f"{event.serve_id}:{event.item_id}"
            if self.outcomes[reward_id] == 1.0:
                first_click.setdefault(reward_id, event.clicked_at)
        timed: list[tuple[datetime, RewardEvent]] = []
        for serve in serves:
            closes = serve.served_at + self.window
            unclicked = []
            for item in serve.items:
                clicked_at = first_click.get(f"{serve.serve_id}:{item.item_id}")
                if clicked_at is None:
                    unclicked.append(_rewarded(item, 0.0))
                else:
                    timed.append((clicked_at, reward_of(serve, [_rewarded(item, 1.0)], clicked_at)))
            if unclicked:
                timed.append((closes, reward_of(serve, unclicked, closes)))
        timed.sort(key=lambda entry: entry[0])
        return [reward for _, reward in timed]

    def arm_counts(self) -> dict[tuple[str, int], ArmCounts]:
        """Pulls and successes per (variant, item) once every outcome is counted once."""
        return count_arms(self.outcomes, self.variant_of)


def count_arms(
    outcomes: dict[str, float], variant_of: dict[str, str]
) -> dict[tuple[str, int], ArmCounts]:
    """Pulls and successes per (variant, item) of outcomes by reward id (serve_id:item_id)."""
    pulls: Counter[tuple[str, int]] = Counter()
    successes: Counter[tuple[str, int]] = Counter()
    for reward_id, reward in outcomes.items():
        serve_id, item = reward_id.rsplit(":", 1)
        arm = (variant_of[serve_id], int(item))
        pulls[arm] += 1
        successes[arm] += int(reward)
    return {arm: ArmCounts(count, successes[arm]) for arm, count in pulls.items()}


def generate(
    experiment_id: str,
    *,
    serves: int,
    variants: tuple[str, ...],
    catalogue: list[int],
    start: datetime,
    window: timedelta,
    spacing: timedelta,
    slate_size: int = 10,
    click_rate: float = 0.05,
    duplicate_rate: float = 0.1,
    late_rate: float = 0.02,
    seed: int = 0,
    prefix: str = "s",
) -> Stream:
    """``serves`` serves of ``slate_size`` distinct items from ``catalogue``, and their clicks."""
    rng = np.random.default_rng(seed)
    timed: list[tuple[datetime, int, ServeEvent | ClickEvent]] = []
    outcomes: dict[str, float] = {}
    variant_of: dict[str, str] = {}
    late = duplicates = 0
    for index in range(serves):
        serve_id = f"{prefix}{index}"
        served_at = start + spacing * index
        variant = variants[int(rng.integers(len(variants)))]
        items = rng.choice(catalogue, size=slate_size, replace=False).tolist()
        user = f"u{int(rng.integers(1_000_000))}"
        timed.append(
            (
                served_at,
                len(timed),
                ServeEvent(
                    serve_id=serve_id,
                    experiment_id=experiment_id,
                    variant=variant,
                    policy_type="random",
                    user_id=user,
                    items=[
                        ServedItem(item_id=item, position=position, propensity=0.1)
                        for position, item in enumerate(items)
                    ],
                    state_version=0,
                    latency_ms=1.0,
                    served_at=served_at,
                ),
            )
        )
        variant_of[serve_id] = variant
        clicked = rng.random(slate_size) < click_rate
        for item, hit in zip(items, clicked, strict=True):
            outcomes[f"{serve_id}:{item}"] = float(hit)
            if not hit:
                continue
            times = [rng.uniform(0.0, 0.8)]
            if rng.random() < duplicate_rate:
                times.append(rng.uniform(times[0], 0.9))
                duplicates += 1
            for fraction in times:
                clicked_at = served_at + window * fraction
                click = ClickEvent(
                    serve_id=serve_id, item_id=item, user_id=user, clicked_at=clicked_at
                )
                timed.append((clicked_at, len(timed), click))
        unclicked = [item for item, hit in zip(items, clicked, strict=True) if not hit]
        if unclicked and rng.random() < late_rate:
            clicked_at = served_at + window * rng.uniform(1.2, 2.0)
            item = unclicked[int(rng.integers(len(unclicked)))]
            click = ClickEvent(serve_id=serve_id, item_id=item, user_id=user, clicked_at=clicked_at)
            timed.append((clicked_at, len(timed), click))
            late += 1
    timed.sort(key=lambda entry: (entry[0], entry[1]))
    return Stream([event for _, _, event in timed], outcomes, variant_of, late, duplicates, window)


def _rewarded(item: ServedItem, reward: float) -> RewardedItem:
    return RewardedItem(
        item_id=item.item_id, position=item.position, propensity=item.propensity, reward=reward
    )


def reward_of(serve: ServeEvent, items: list[RewardedItem], rewarded_at: datetime) -> RewardEvent:
    """The reward event of ``serve`` with the outcomes of ``items``."""
    return RewardEvent(
        serve_id=serve.serve_id,
        experiment_id=serve.experiment_id,
        variant=serve.variant,
        policy_type=serve.policy_type,
        items=items,
        user_id=serve.user_id,
        cohort=serve.cohort,
        served_at=serve.served_at,
        rewarded_at=rewarded_at,
    )
