"""Reward messages as the analytics ingest stages them, for tests of the outcome rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cineamate.analytics.rows import reward_message_row
from cineamate.common.events import RewardedItem, RewardEvent


def outcome_message(
    serve_id: str, outcomes: dict[int, float], *, served_at: datetime, rewarded_at: datetime
) -> tuple[Any, ...]:
    """The ``reward_message_row`` of one message: ``outcomes`` is item id to reward, each
    item at position ``item_id - 1``."""
    return reward_message_row(
        RewardEvent(
            serve_id=serve_id,
            experiment_id="e",
            variant="ts",
            policy_type="thompson",
            items=[
                RewardedItem(item_id=item, position=item - 1, propensity=0.1, reward=reward)
                for item, reward in outcomes.items()
            ],
            user_id="u",
            cohort={"user_type": "new"},
            served_at=served_at,
            rewarded_at=rewarded_at,
        )
    )
