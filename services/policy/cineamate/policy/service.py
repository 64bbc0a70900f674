"""The learner's logic, free of I/O: group rewards by posterior, filter, apply.

A reward message carries the outcomes of one or more items of a serve, each
with its id ``serve_id:item_id``. An outcome is applied at most once: records
at or below the offset already folded into the stored state are redeliveries,
and an outcome id seen before is a re-emission by the reward service. What
remains updates the arm counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from cineamate.common.events import RewardEvent
from cineamate.common.experiments import VariantConfig
from cineamate.common.kafka import Record
from cineamate.policies import ArmState

__all__ = [
    "Outcome",
    "PosteriorKey",
    "fresh_outcomes",
    "group_by_posterior",
    "outcomes_of",
    "posterior_means",
]


@dataclass(frozen=True, order=True)
class PosteriorKey:
    """Which posterior a reward updates: one per (experiment, variant)."""

    experiment_id: str
    variant: str


def group_by_posterior(
    records: Iterable[Record[RewardEvent]],
) -> dict[PosteriorKey, list[Record[RewardEvent]]]:
    by_pair: dict[tuple[str, str], list[Record[RewardEvent]]] = defaultdict(list)
    for record in records:
        by_pair[(record.event.experiment_id, record.event.variant)].append(record)
    return {PosteriorKey(*pair): group for pair, group in by_pair.items()}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's reward, with the record that carried it."""

    reward_id: str
    item_id: int
    reward: float
    rewarded_at: datetime
    record: Record[RewardEvent]


def outcomes_of(records: Iterable[Record[RewardEvent]]) -> list[Outcome]:
    """Every item outcome the records carry, in order."""
    return [
        Outcome(f"{event.serve_id}:{item.item_id}", item.item_id, item.reward, event.rewarded_at, r)
        for r in records
        for event in (r.event,)
        for item in event.items
    ]


def fresh_outcomes(
    records: Sequence[Record[RewardEvent]],
    applied_offsets: dict[int, int],
    seen_ids: set[str],
) -> list[Outcome]:
    """Outcomes not yet applied: in a record past the stored offset of its partition, id
    never seen, and the first of any duplicates within the batch."""
    fresh = []
    batch_ids: set[str] = set()
    for outcome in outcomes_of(records):
        raw = outcome.record.raw
        if raw.offset <= applied_offsets.get(raw.partition, -1):
            continue
        if outcome.reward_id in seen_ids or outcome.reward_id in batch_ids:
            continue
        batch_ids.add(outcome.reward_id)
        fresh.append(outcome)
    return fresh


def posterior_means(state: ArmState, variant: VariantConfig) -> np.ndarray:
    """Posterior mean reward per arm: Thompson's own Beta prior, Beta(1, 1) for other policies."""
    alpha = float(variant.params.get("prior_alpha", 1.0)) if variant.type == "thompson" else 1.0
    beta = float(variant.params.get("prior_beta", 1.0)) if variant.type == "thompson" else 1.0
    return (alpha + state.successes) / (alpha + beta + state.pulls)
