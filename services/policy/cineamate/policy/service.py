"""The learner's logic, free of I/O: group rewards by posterior, filter, apply.

A reward is applied at most once: records at or below the offset already
folded into the stored state are redeliveries, and a reward id seen before is
a re-emission by the reward service. What remains updates the arm counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cineamate.common.events import RewardEvent
from cineamate.common.experiments import VariantConfig
from cineamate.common.kafka import Record
from cineamate.policies import ArmState

__all__ = ["PosteriorKey", "fresh_rewards", "group_by_posterior", "posterior_means"]


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


def fresh_rewards(
    records: Sequence[Record[RewardEvent]],
    applied_offsets: dict[int, int],
    seen_ids: set[str],
) -> list[Record[RewardEvent]]:
    """Records not yet applied: past the stored offset of their partition, id never seen,
    and the first of any duplicates within the batch."""
    fresh = []
    batch_ids: set[str] = set()
    for record in records:
        if record.raw.offset <= applied_offsets.get(record.raw.partition, -1):
            continue
        event_id = record.event.event_id
        if event_id in seen_ids or event_id in batch_ids:
            continue
        batch_ids.add(event_id)
        fresh.append(record)
    return fresh


def posterior_means(state: ArmState, variant: VariantConfig) -> np.ndarray:
    """Posterior mean reward per arm: Thompson's own Beta prior, Beta(1, 1) for other policies."""
    alpha = float(variant.params.get("prior_alpha", 1.0)) if variant.type == "thompson" else 1.0
    beta = float(variant.params.get("prior_beta", 1.0)) if variant.type == "thompson" else 1.0
    return (alpha + state.successes) / (alpha + beta + state.pulls)
