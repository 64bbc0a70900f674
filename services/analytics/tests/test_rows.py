"""A serve's outcomes merged into its one row: each item's first outcome only."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from reward_messages import outcome_message

from cineamate.analytics.rows import new_outcomes

SERVED = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _message(serve_id: str, outcomes: dict[int, float], seconds: int) -> tuple[Any, ...]:
    return outcome_message(
        serve_id, outcomes, served_at=SERVED, rewarded_at=SERVED + timedelta(seconds=seconds)
    )


def test_messages_of_one_serve_make_one_row_in_arrival_order() -> None:
    click, close = _message("s1", {3: 1.0}, 5), _message("s1", {1: 0.0, 2: 0.0}, 60)
    new = new_outcomes([click, close], {})
    assert len(new.rows) == 1
    row = new.rows[0]
    assert row[0] == "s1" and row[6] == SERVED
    assert row[7:11] == ([3, 1, 2], [2, 0, 1], [0.1, 0.1, 0.1], [1.0, 0.0, 0.0])
    assert row[11] == [SERVED + timedelta(seconds=s) for s in (5, 60, 60)]
    assert new.fresh == {("s1", 1), ("s1", 2), ("s1", 3)}
    assert new.sizes == {("s1", SERVED): 3}


def test_an_item_already_stored_or_seen_earlier_keeps_its_first_outcome() -> None:
    first = _message("s1", {1: 1.0}, 5)
    again = _message("s1", {1: 0.0, 2: 0.0}, 60)  # item 1 decided twice: the first counts
    stored = {("s2", SERVED): [7, 8]}
    replayed = _message("s2", {7: 1.0, 9: 0.0}, 30)
    new = new_outcomes([first, again, replayed], stored)
    rows = {row[0]: row for row in new.rows}
    assert rows["s1"][7] == [1, 2] and rows["s1"][10] == [1.0, 0.0]
    assert rows["s2"][7] == [9] and rows["s2"][10] == [0.0]
    assert new.fresh == {("s1", 1), ("s1", 2), ("s2", 9)}
    # The stored row grows by what is added: the write is checked against this.
    assert new.sizes == {("s1", SERVED): 2, ("s2", SERVED): 3}


def test_nothing_new_writes_nothing_and_the_messages_are_left_as_they_were() -> None:
    messages = [_message("s1", {1: 1.0}, 5), _message("s1", {2: 0.0}, 60)]
    before = copy.deepcopy(messages)
    new_outcomes(messages, {})
    assert messages == before  # a batch is retried with the same rows
    done = new_outcomes(messages, {("s1", SERVED): [1, 2]})
    assert done.rows == [] and done.fresh == set() and done.sizes == {}
