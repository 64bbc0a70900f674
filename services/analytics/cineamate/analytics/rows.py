"""Events into table rows, and the aggregate rows of the events a batch added, free of I/O.

Raw rows go into the event tables as they are; the aggregates are summed only
over the rows the insert actually added (``fresh``), which is what keeps the
views exact when a batch is delivered again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from cineamate.common.events import ClickEvent, LateClick, PosteriorUpdate, RewardEvent, ServeEvent
from cineamate.common.latency import BUCKETS, bucket_of

__all__ = [
    "AggregateRows",
    "NewOutcomes",
    "aggregate",
    "click_row",
    "late_click_row",
    "new_outcomes",
    "posterior_rows",
    "reward_message_row",
    "serve_key",
    "serve_row",
]

SERVE_COLUMNS = (
    "serve_id",
    "experiment_id",
    "variant",
    "policy_type",
    "user_id",
    "cohort",
    "item_ids",
    "propensities",
    "state_version",
    "latency_ms",
    "status",
    "served_at",
)
# A serve's outcomes in one row, each array in the order the outcomes arrived.
OUTCOME_COLUMNS = (
    "serve_id",
    "experiment_id",
    "variant",
    "policy_type",
    "user_id",
    "cohort",
    "served_at",
    "item_ids",
    "positions",
    "propensities",
    "rewards",
    "rewarded_ats",
)
CLICK_COLUMNS = ("event_id", "serve_id", "item_id", "user_id", "clicked_at")
LATE_CLICK_COLUMNS = (
    "event_id",
    "serve_id",
    "experiment_id",
    "variant",
    "item_id",
    "user_id",
    "clicked_at",
    "window_closed_at",
)
POSTERIOR_COLUMNS = ("experiment_id", "variant", "item_id", "pulls", "successes", "version")


def serve_row(serve: ServeEvent) -> tuple[Any, ...]:
    return (
        serve.serve_id,
        serve.experiment_id,
        serve.variant,
        serve.policy_type,
        serve.user_id,
        orjson.dumps(serve.cohort).decode(),
        [item.item_id for item in serve.items],
        [item.propensity for item in serve.items],
        serve.state_version,
        serve.latency_ms,
        serve.status,
        serve.served_at,
    )


def reward_message_row(reward: RewardEvent) -> tuple[Any, ...]:
    """A reward message as a row of ``OUTCOME_COLUMNS``, before it is merged with the
    serve's outcomes already stored (``new_outcomes``)."""
    items = reward.items
    return (
        reward.serve_id,
        reward.experiment_id,
        reward.variant,
        reward.policy_type,
        reward.user_id,
        orjson.dumps(reward.cohort).decode(),
        reward.served_at,
        [item.item_id for item in items],
        [item.position for item in items],
        [item.propensity for item in items],
        [item.reward for item in items],
        [reward.rewarded_at] * len(items),
    )


ServeKey = tuple[str, datetime]  # (serve_id, served_at): a row of ``analytics_outcomes``
# Positions in an outcome row (``OUTCOME_COLUMNS``): tuples, as COPY takes them.
_SERVE_ID, _EXPERIMENT, _VARIANT, _COHORT, _SERVED_AT, _ITEMS, _REWARDS = 0, 1, 2, 5, 6, 7, 10
_ARRAYS = slice(_ITEMS, len(OUTCOME_COLUMNS))


def serve_key(row: tuple[Any, ...]) -> ServeKey:
    """The serve an outcome row (or ``reward_message_row``) belongs to."""
    return row[_SERVE_ID], row[_SERVED_AT]


OUTCOME_ARRAYS = OUTCOME_COLUMNS[_ARRAYS]  # item_ids .. rewarded_ats, one element per outcome


@dataclass
class NewOutcomes:
    """What a batch of reward messages adds to ``analytics_outcomes``."""

    rows: list[tuple[Any, ...]]  # per serve, only the outcomes not stored yet
    sizes: dict[ServeKey, int]  # how many outcomes each row holds once they are added

    @property
    def fresh(self) -> set[tuple[str, int]]:
        """The outcomes added, as (serve_id, item_id)."""
        return {(row[_SERVE_ID], item) for row in self.rows for item in row[_ITEMS]}

    @property
    def count(self) -> int:
        return sum(len(row[_ITEMS]) for row in self.rows)


def new_outcomes(
    messages: Iterable[tuple[Any, ...]], stored: dict[ServeKey, list[int]]
) -> NewOutcomes:
    """The outcomes of ``messages`` (``reward_message_row``s) whose item the serve has no
    outcome for yet, in ``stored`` or earlier in ``messages``: the first one counts."""
    merged: dict[ServeKey, tuple[Any, ...]] = {}
    known: dict[ServeKey, set[int]] = {}
    copied: set[ServeKey] = set()  # rows whose arrays are this function's own, not a message's
    for message in messages:
        key = serve_key(message)
        items = known.get(key)
        if items is None:
            items = known[key] = set(stored.get(key, ()))
        arrays = message[_ARRAYS]
        if items.isdisjoint(arrays[0]) and len(set(arrays[0])) == len(arrays[0]):
            items.update(arrays[0])  # the usual case: every outcome is new
        else:
            kept = []
            for i, item in enumerate(arrays[0]):
                if item not in items:
                    items.add(item)
                    kept.append(i)
            if not kept:
                continue
            arrays = tuple([array[i] for i in kept] for array in arrays)
        row = merged.get(key)
        if row is None:
            merged[key] = (*message[:_ITEMS], *arrays)
            continue
        if key not in copied:
            copied.add(key)
            row = merged[key] = (*row[:_ITEMS], *(list(array) for array in row[_ARRAYS]))
        for into, more in zip(row[_ARRAYS], arrays, strict=True):
            into.extend(more)
    sizes = {key: len(stored.get(key, ())) + len(row[_ITEMS]) for key, row in merged.items()}
    return NewOutcomes(list(merged.values()), sizes)


def click_row(click: ClickEvent) -> tuple[Any, ...]:
    return (click.event_id, click.serve_id, click.item_id, click.user_id, click.clicked_at)


def late_click_row(late: LateClick) -> tuple[Any, ...]:
    return (
        late.event_id,
        late.serve_id,
        late.experiment_id,
        late.variant,
        late.item_id,
        late.user_id,
        late.clicked_at,
        late.window_closed_at,
    )


def posterior_rows(update: PosteriorUpdate) -> list[tuple[Any, ...]]:
    return [
        (update.experiment_id, update.variant, arm, pulls, successes, update.version)
        for arm, pulls, successes in zip(
            update.arm_ids, update.pulls, update.successes, strict=True
        )
    ]


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass
class _Minute:
    serves: int = 0
    errors: int = 0
    within_sla: int = 0
    latency_sum_ms: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    outcomes: int = 0
    rewards: float = 0.0
    late_clicks: int = 0

    def absorb(self, other: _Minute) -> None:
        self.serves += other.serves
        self.errors += other.errors
        self.within_sla += other.within_sla
        self.latency_sum_ms += other.latency_sum_ms
        for index, count in enumerate(other.latency_buckets):
            self.latency_buckets[index] += count
        self.outcomes += other.outcomes
        self.rewards += other.rewards
        self.late_clicks += other.late_clicks

    def row(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        return (
            *key,
            self.serves,
            self.errors,
            self.within_sla,
            self.latency_sum_ms,
            self.latency_buckets,
            self.outcomes,
            self.rewards,
            self.late_clicks,
        )


@dataclass
class _Counts:
    serves: int = 0
    outcomes: int = 0
    rewards: float = 0.0


@dataclass
class _User:
    variant: str
    first_seen: datetime
    last_seen: datetime
    serves: int = 0


@dataclass
class AggregateRows:
    """Rows to add to each aggregate table, keyed as the table is."""

    minutes: dict[tuple[str, str, datetime], _Minute] = field(
        default_factory=lambda: defaultdict(_Minute)
    )
    items: dict[tuple[str, str, int, datetime], _Counts] = field(
        default_factory=lambda: defaultdict(_Counts)
    )
    cohorts: dict[tuple[str, str, str, str], _Counts] = field(
        default_factory=lambda: defaultdict(_Counts)
    )
    users: dict[tuple[str, str], _User] = field(default_factory=dict)

    def minute_rows(self) -> list[tuple[Any, ...]]:
        return [minute.row(key) for key, minute in self.minutes.items()]

    def total_rows(self) -> list[tuple[Any, ...]]:
        """The minute rows summed over time, per experiment and variant."""
        totals: dict[tuple[str, str], _Minute] = defaultdict(_Minute)
        for (experiment, variant, _), minute in self.minutes.items():
            totals[(experiment, variant)].absorb(minute)
        return [total.row(key) for key, total in totals.items()]

    def hour_rows(self) -> list[tuple[Any, ...]]:
        """The minute rows summed per hour."""
        hours: dict[tuple[str, str, datetime], _Minute] = defaultdict(_Minute)
        for (experiment, variant, minute), stats in self.minutes.items():
            hours[(experiment, variant, _hour(minute))].absorb(stats)
        return [hour.row(key) for key, hour in hours.items()]

    def item_total_rows(self) -> list[tuple[Any, ...]]:
        """The item rows summed over hours."""
        totals: dict[tuple[str, str, int], _Counts] = defaultdict(_Counts)
        for (experiment, variant, item, _), c in self.items.items():
            total = totals[(experiment, variant, item)]
            total.serves += c.serves
            total.outcomes += c.outcomes
            total.rewards += c.rewards
        return [(*key, t.serves, t.outcomes, t.rewards) for key, t in totals.items()]

    def item_rows(self) -> list[tuple[Any, ...]]:
        return [(*key, c.serves, c.outcomes, c.rewards) for key, c in self.items.items()]

    def cohort_rows(self) -> list[tuple[Any, ...]]:
        return [(*key, c.serves, c.outcomes, c.rewards) for key, c in self.cohorts.items()]

    def user_rows(self) -> list[tuple[Any, ...]]:
        return [
            (*key, u.variant, u.first_seen, u.last_seen, u.serves) for key, u in self.users.items()
        ]


MINUTE_COLUMNS = (
    "experiment_id",
    "variant",
    "minute",
    "serves",
    "errors",
    "within_sla",
    "latency_sum_ms",
    "latency_buckets",
    "outcomes",
    "rewards",
    "late_clicks",
)
TOTAL_COLUMNS = tuple(column for column in MINUTE_COLUMNS if column != "minute")
HOUR_COLUMNS = tuple("hour" if column == "minute" else column for column in MINUTE_COLUMNS)
ITEM_COLUMNS = ("experiment_id", "variant", "item_id", "hour", "serves", "outcomes", "rewards")
ITEM_TOTAL_COLUMNS = tuple(column for column in ITEM_COLUMNS if column != "hour")
COHORT_COLUMNS = ("experiment_id", "variant", "attribute", "value", "serves", "outcomes", "rewards")
USER_COLUMNS = ("experiment_id", "user_id", "variant", "first_seen", "last_seen", "serves")


def aggregate(
    serves: Iterable[ServeEvent],
    outcomes: Iterable[tuple[Any, ...]],
    late_clicks: Iterable[LateClick],
    *,
    sla_ms: dict[str, float],
    default_sla_ms: float,
) -> AggregateRows:
    """The aggregate rows of what a batch added: ``serves`` and ``late_clicks``, and
    ``outcomes``, rows of ``OUTCOME_COLUMNS`` holding only the outcomes added
    (``NewOutcomes.rows``; ``sla_ms``: latency threshold per experiment)."""
    rows = AggregateRows()
    for serve in serves:
        experiment, variant = serve.experiment_id, serve.variant
        minute = rows.minutes[(experiment, variant, _minute(serve.served_at))]
        minute.serves += 1
        minute.errors += serve.status != "ok"
        minute.within_sla += serve.latency_ms <= sla_ms.get(experiment, default_sla_ms)
        minute.latency_sum_ms += serve.latency_ms
        minute.latency_buckets[bucket_of(serve.latency_ms)] += 1
        hour = _hour(serve.served_at)
        for item in serve.items:
            rows.items[(experiment, variant, item.item_id, hour)].serves += 1
        for attribute, value in serve.cohort.items():
            rows.cohorts[(experiment, variant, attribute, value)].serves += 1
        user = rows.users.get((experiment, serve.user_id))
        if user is None:
            user = rows.users[(experiment, serve.user_id)] = _User(
                variant, serve.served_at, serve.served_at
            )
        if serve.served_at >= user.last_seen:
            user.variant, user.last_seen = variant, serve.served_at
        user.first_seen = min(user.first_seen, serve.served_at)
        user.serves += 1
    # Outcomes per cohort as stored (JSON text), split into attributes once per cohort.
    by_cohort: dict[tuple[str, str, str], _Counts] = defaultdict(_Counts)
    for row in outcomes:
        experiment, variant, served_at = row[_EXPERIMENT], row[_VARIANT], row[_SERVED_AT]
        hour = _hour(served_at)
        item_ids, rewards = row[_ITEMS], row[_REWARDS]
        for item, reward in zip(item_ids, rewards, strict=True):
            counts = rows.items[(experiment, variant, item, hour)]
            counts.outcomes += 1
            counts.rewards += reward
        # A serve's outcomes share its minute and cohort: added once, not per item.
        total = sum(rewards)
        minute = rows.minutes[(experiment, variant, _minute(served_at))]
        minute.outcomes += len(item_ids)
        minute.rewards += total
        counts = by_cohort[(experiment, variant, row[_COHORT])]
        counts.outcomes += len(item_ids)
        counts.rewards += total
    for (experiment, variant, cohort), counts in by_cohort.items():
        for attribute, value in orjson.loads(cohort).items():
            into = rows.cohorts[(experiment, variant, attribute, value)]
            into.outcomes += counts.outcomes
            into.rewards += counts.rewards
    for late in late_clicks:
        if late.experiment_id is not None and late.variant is not None:
            key = (late.experiment_id, late.variant, _minute(late.clicked_at))
            rows.minutes[key].late_clicks += 1
    return rows
