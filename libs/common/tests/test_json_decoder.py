"""The consumer's JSON decoder turns bytes into events or into InvalidEvent with a reason code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cineamate.common.errors import InvalidEvent
from cineamate.common.events import (
    ClickEvent,
    ExperimentChanged,
    PosteriorUpdate,
    encode,
    state_update_adapter,
)
from cineamate.common.kafka import json_decoder

MAX_BYTES = 10_000

CLICK = ClickEvent(
    serve_id="serve-1",
    item_id=10,
    user_id="user-1",
    clicked_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
)


def _click_wire(**changes: Any) -> dict[str, Any]:
    wire: dict[str, Any] = orjson.loads(encode(CLICK))
    wire.update(changes)
    return wire


def _reason_code(value: bytes | None, max_bytes: int = MAX_BYTES) -> str:
    with pytest.raises(InvalidEvent) as caught:
        json_decoder(ClickEvent, max_bytes=max_bytes)(value)
    return caught.value.code


def test_valid_bytes_decode_to_the_event() -> None:
    assert json_decoder(ClickEvent, max_bytes=MAX_BYTES)(encode(CLICK)) == CLICK


def test_decoder_built_from_a_type_adapter_dispatches_on_kind() -> None:
    decode = json_decoder(state_update_adapter, max_bytes=MAX_BYTES)
    changed = ExperimentChanged(
        experiment_id="exp-1", revision=2, status="paused", changed_at=CLICK.clicked_at
    )

    decoded = decode(encode(changed))

    assert isinstance(decoded, ExperimentChanged)
    assert not isinstance(decoded, PosteriorUpdate)
    assert decoded == changed


def test_message_without_value_is_empty() -> None:
    assert _reason_code(None) == "invalid.empty"


def test_message_over_the_size_limit_is_too_large() -> None:
    value = encode(CLICK)

    assert _reason_code(value, max_bytes=len(value) - 1) == "invalid.too_large"


def test_message_exactly_at_the_size_limit_is_accepted() -> None:
    value = encode(CLICK)

    assert json_decoder(ClickEvent, max_bytes=len(value))(value) == CLICK


@pytest.mark.parametrize("value", [b"", b"{", b"not json", b'{"a": 1,}', b"\xff\xfe"])
def test_bytes_that_are_not_json_are_invalid_json(value: bytes) -> None:
    assert _reason_code(value) == "invalid.json"


@pytest.mark.parametrize("value", [b"[]", orjson.dumps([_click_wire()]), b"1", b'"click"'])
def test_json_that_is_not_an_object_is_invalid_schema(value: bytes) -> None:
    assert _reason_code(value) == "invalid.schema"


@pytest.mark.parametrize("field", ["serve_id", "item_id", "user_id", "clicked_at"])
def test_missing_field_is_invalid_schema_and_named(field: str) -> None:
    wire = _click_wire()
    del wire[field]

    with pytest.raises(InvalidEvent) as caught:
        json_decoder(ClickEvent, max_bytes=MAX_BYTES)(orjson.dumps(wire))

    assert caught.value.code == "invalid.schema"
    assert field in str(caught.value)


def test_wrongly_typed_field_is_invalid_schema_and_named() -> None:
    wire = _click_wire(item_id="ten")

    with pytest.raises(InvalidEvent) as caught:
        json_decoder(ClickEvent, max_bytes=MAX_BYTES)(orjson.dumps(wire))

    assert caught.value.code == "invalid.schema"
    assert "item_id" in str(caught.value)


def test_unknown_field_is_invalid_schema() -> None:
    assert _reason_code(orjson.dumps(_click_wire(extra="x"))) == "invalid.schema"


def test_missing_schema_version_is_unsupported_version() -> None:
    wire = _click_wire()
    del wire["schema_version"]

    assert _reason_code(orjson.dumps(wire)) == "invalid.schema_version"


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_other_schema_version_is_unsupported_version(version: object) -> None:
    assert _reason_code(orjson.dumps(_click_wire(schema_version=version))) == (
        "invalid.schema_version"
    )


def test_decode_errors_are_invalid_input_and_not_retriable() -> None:
    with pytest.raises(InvalidEvent) as caught:
        json_decoder(ClickEvent, max_bytes=MAX_BYTES)(b"{")

    assert caught.value.retriable is False


@settings(database=None, max_examples=300, deadline=None)
@given(value=st.binary(max_size=2_000))
def test_arbitrary_bytes_raise_nothing_but_invalid_event(value: bytes) -> None:
    decode = json_decoder(ClickEvent, max_bytes=1_000)
    try:
        decode(value)
    except InvalidEvent as exc:
        assert exc.code.startswith("invalid.")


# What orjson can write: 64-bit integers, finite floats, text without lone surrogates.
_JSON_TEXT = st.text(st.characters(exclude_categories=["Cs"]))
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _JSON_TEXT,
    lambda children: st.lists(children) | st.dictionaries(_JSON_TEXT, children),
    max_leaves=20,
)


@settings(database=None, max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(_click_wire())), _JSON_VALUES))
def test_arbitrary_field_values_raise_nothing_but_invalid_event(changes: dict[str, Any]) -> None:
    decode = json_decoder(ClickEvent, max_bytes=MAX_BYTES)
    try:
        decode(orjson.dumps(_click_wire(**changes)))
    except InvalidEvent as exc:
        assert exc.code.startswith("invalid.")
