"""Event models survive the wire, identify themselves deterministically and refuse bad shapes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from cineamate.common.events import (
    EVENT_MODELS,
    ClickEvent,
    DeadLetter,
    Event,
    ExperimentChanged,
    GuardrailTriggered,
    LateClick,
    PosteriorUpdate,
    RewardedItem,
    RewardEvent,
    ServedItem,
    ServeEvent,
    encode,
    state_update_adapter,
)

SERVED_AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _serve(**changes: Any) -> ServeEvent:
    fields: dict[str, Any] = {
        "serve_id": "serve-1",
        "experiment_id": "exp-1",
        "variant": "treatment",
        "policy_type": "thompson",
        "user_id": "user-1",
        "items": [
            ServedItem(item_id=10, position=0, propensity=0.75),
            ServedItem(item_id=11, position=1, propensity=0.25),
        ],
        "cohort": {"device": "tv", "user_type": "new"},
        "state_version": 4,
        "latency_ms": 3.5,
        "served_at": SERVED_AT,
    }
    return ServeEvent(**(fields | changes))


def _click(**changes: Any) -> ClickEvent:
    fields: dict[str, Any] = {
        "serve_id": "serve-1",
        "item_id": 10,
        "user_id": "user-1",
        "clicked_at": SERVED_AT + timedelta(seconds=30),
    }
    return ClickEvent(**(fields | changes))


_ITEM_FIELDS = ("item_id", "position", "propensity", "reward")


def _reward(**changes: Any) -> RewardEvent:
    """A reward with one item; item fields (item_id, reward, ...) change that item."""
    item: dict[str, Any] = {"item_id": 10, "position": 0, "propensity": 0.75, "reward": 1.0}
    item |= {name: changes.pop(name) for name in _ITEM_FIELDS if name in changes}
    fields: dict[str, Any] = {
        "serve_id": "serve-1",
        "experiment_id": "exp-1",
        "variant": "treatment",
        "policy_type": "thompson",
        "items": [RewardedItem(**item)],
        "served_at": SERVED_AT,
        "rewarded_at": SERVED_AT + timedelta(minutes=30),
    }
    return RewardEvent(**(fields | changes))


def _late_click(**changes: Any) -> LateClick:
    fields: dict[str, Any] = {
        "serve_id": "serve-1",
        "experiment_id": "exp-1",
        "variant": "treatment",
        "item_id": 10,
        "user_id": "user-1",
        "clicked_at": SERVED_AT + timedelta(days=2),
        "window_closed_at": SERVED_AT + timedelta(days=1),
    }
    return LateClick(**(fields | changes))


def _posterior(**changes: Any) -> PosteriorUpdate:
    fields: dict[str, Any] = {
        "experiment_id": "exp-1",
        "variant": "treatment",
        "version": 7,
        "arm_ids": [10, 11, 12],
        "pulls": [5.0, 3.0, 0.0],
        "successes": [2.0, 1.0, 0.0],
        "updated_at": SERVED_AT,
    }
    return PosteriorUpdate(**(fields | changes))


def _experiment_changed(**changes: Any) -> ExperimentChanged:
    fields: dict[str, Any] = {
        "experiment_id": "exp-1",
        "revision": 3,
        "status": "running",
        "changed_at": SERVED_AT,
    }
    return ExperimentChanged(**(fields | changes))


def _dead_letter(**changes: Any) -> DeadLetter:
    original = b"\x00\xff not json \xfe"
    fields: dict[str, Any] = {
        "source_topic": "clicks",
        "source_partition": 2,
        "source_offset": 981,
        "consumer_group": "reward",
        "reason_code": "invalid.json",
        "reason": "not JSON",
        "key_b64": base64.b64encode(b"serve-1").decode(),
        "payload_b64": base64.b64encode(original).decode(),
        "payload_size": len(original),
        "dead_lettered_at": SERVED_AT,
    }
    return DeadLetter(**(fields | changes))


def _guardrail_triggered(**changes: Any) -> GuardrailTriggered:
    fields: dict[str, Any] = {
        "experiment_id": "exp-1",
        "variant": "treatment",
        "guardrail": "error_rate",
        "action": "rollback",
        "observed": 0.05,
        "threshold": 0.01,
        "window_seconds": 900.0,
        "triggered_at": SERVED_AT,
    }
    return GuardrailTriggered(**(fields | changes))


EXAMPLES: dict[str, Callable[..., Event]] = {
    "serve": _serve,
    "click": _click,
    "reward": _reward,
    "late_click": _late_click,
    "posterior_update": _posterior,
    "experiment_changed": _experiment_changed,
    "guardrail_triggered": _guardrail_triggered,
    "dead_letter": _dead_letter,
}


def test_every_event_model_has_an_example_under_test() -> None:
    assert set(EXAMPLES) == set(EVENT_MODELS)
    for kind, make in EXAMPLES.items():
        assert type(make()) is EVENT_MODELS[kind]


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_event_round_trips_through_json(kind: str) -> None:
    event = EXAMPLES[kind]()

    decoded = type(event).model_validate_json(encode(event))

    assert decoded == event
    assert decoded.event_id == event.event_id
    assert decoded.partition_key == event.partition_key


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_encoded_event_is_json_carrying_the_schema_version(kind: str) -> None:
    wire = orjson.loads(encode(EXAMPLES[kind]()))

    assert isinstance(wire, dict)
    assert wire["schema_version"] == 1


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_event_id_is_the_same_for_equal_events_built_apart(kind: str) -> None:
    first = EXAMPLES[kind]()
    second = EXAMPLES[kind]()

    assert first is not second
    assert first.event_id == second.event_id
    assert first.event_id


def test_reward_event_id_is_serve_id_and_item_id() -> None:
    assert _reward(serve_id="s-9", item_id=42).event_id == "s-9:42"


def test_a_reward_carries_one_id_per_item() -> None:
    items = [
        RewardedItem(item_id=item, position=position, propensity=0.1, reward=0.0)
        for position, item in enumerate((7, 3, 9))
    ]
    reward = _reward(serve_id="s-1", items=items)

    assert reward.reward_ids == ["s-1:7", "s-1:3", "s-1:9"]


def test_a_reward_without_items_is_rejected() -> None:
    with pytest.raises(ValidationError, match="items"):
        _reward(items=[])


def test_redelivered_reward_keeps_its_id_whatever_its_timing_or_value() -> None:
    first = _reward(reward=1.0)
    again = _reward(reward=0.0, rewarded_at=first.rewarded_at + timedelta(hours=1))

    assert again.event_id == first.event_id
    assert _reward(item_id=11).event_id != first.event_id


def test_two_clicks_on_one_item_at_different_times_are_distinct_events() -> None:
    first = _click()
    later = _click(clicked_at=first.clicked_at + timedelta(seconds=1))

    assert later.event_id != first.event_id


def test_click_is_partitioned_with_its_serve() -> None:
    assert _click(serve_id="serve-77").partition_key == _serve(serve_id="serve-77").partition_key


def test_event_ids_differ_between_versions_and_revisions() -> None:
    assert _posterior(version=1).event_id != _posterior(version=2).event_id
    assert _experiment_changed(revision=1).event_id != _experiment_changed(revision=2).event_id


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_event_with_an_unknown_field_is_rejected(kind: str) -> None:
    event = EXAMPLES[kind]()
    data = event.model_dump(mode="json") | {"unexpected": 1}

    with pytest.raises(ValidationError, match="unexpected"):
        type(event).model_validate(data)


def test_served_item_with_an_unknown_field_is_rejected() -> None:
    data = _serve().model_dump(mode="json")
    data["items"][0]["score"] = 0.9

    with pytest.raises(ValidationError, match="score"):
        ServeEvent.model_validate(data)


def test_events_are_immutable() -> None:
    event = _click()

    with pytest.raises(ValidationError):
        event.item_id = 99  # type: ignore[misc]


@pytest.mark.parametrize("propensity", [-0.01, 1.01, float("nan"), float("inf")])
def test_propensity_outside_unit_interval_is_rejected(propensity: float) -> None:
    with pytest.raises(ValidationError, match="propensity"):
        ServedItem(item_id=1, position=0, propensity=propensity)
    with pytest.raises(ValidationError, match="propensity"):
        _reward(propensity=propensity)


@pytest.mark.parametrize("propensity", [0.0, 1.0])
def test_propensity_at_the_interval_bounds_is_accepted(propensity: float) -> None:
    assert ServedItem(item_id=1, position=0, propensity=propensity).propensity == propensity
    assert _reward(propensity=propensity).items[0].propensity == propensity


def test_state_update_adapter_reads_a_posterior_update() -> None:
    update = state_update_adapter.validate_json(encode(_posterior()))

    assert isinstance(update, PosteriorUpdate)
    assert update == _posterior()


def test_state_update_adapter_reads_an_experiment_change() -> None:
    update = state_update_adapter.validate_json(encode(_experiment_changed()))

    assert isinstance(update, ExperimentChanged)
    assert update == _experiment_changed()


def test_state_update_adapter_follows_kind_rather_than_guessing() -> None:
    wire = orjson.loads(encode(_posterior()))
    wire["kind"] = "experiment"

    with pytest.raises(ValidationError):
        state_update_adapter.validate_python(wire)


def test_state_update_adapter_rejects_an_unknown_kind() -> None:
    wire = orjson.loads(encode(_experiment_changed()))
    wire["kind"] = "snapshot"

    with pytest.raises(ValidationError, match="kind"):
        state_update_adapter.validate_python(wire)


def test_dead_letter_payload_gives_back_the_original_bytes() -> None:
    original = bytes(range(256))
    letter = _dead_letter(
        payload_b64=base64.b64encode(original).decode(), payload_size=len(original)
    )

    assert letter.payload() == original
    assert DeadLetter.model_validate_json(encode(letter)).payload() == original
