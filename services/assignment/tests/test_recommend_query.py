"""The recommendation route's query parsing, free of servers."""

from __future__ import annotations

import pytest

from cineamate.assignment.recommend import parse_query
from cineamate.common.errors import InvalidInput


def test_the_query_splits_into_its_parameters_and_the_cohort() -> None:
    assert parse_query(b"experiment_id=e1&user_id=u1&k=5&device=tv") == (
        "e1",
        "u1",
        5,
        {"device": "tv"},
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (b"experiment_id=e1&user_id=u%001", "query.user_id"),
        (b"e1=1&dev%00ice=tv", "query.dev\x00ice"),
    ],
)
def test_a_nul_character_is_invalid_input_naming_the_parameter(query: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_query(query)
    assert raised.value.field == field
