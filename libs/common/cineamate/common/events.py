"""Event models carried on the platform's topics.

Every event is JSON on the wire, carries ``schema_version`` so a consumer can
reject a shape it does not know, and has a deterministic ``event_id`` so that
any consumer can deduplicate redelivered messages.

    serves          ServeEvent          a slate shown to a user, with propensities
    clicks          ClickEvent          a user clicked an item of a serve
    rewards         RewardEvent         outcomes of a serve's items (clicked 1, else 0)
    late-clicks     LateClick           clicks that came after their attribution window
    state-updates   PosteriorUpdate     new arm counts after a learner batch
                    ExperimentChanged   an experiment's configuration changed
                    GuardrailTriggered  a guardrail rolled a variant back or paused it all
    dead-letter     DeadLetter          a message no consumer could process
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)

__all__ = [
    "EVENT_MODELS",
    "SCHEMA_VERSION",
    "ClickEvent",
    "DeadLetter",
    "Event",
    "ExperimentChanged",
    "GuardrailTriggered",
    "LateClick",
    "PosteriorUpdate",
    "RewardEvent",
    "RewardedItem",
    "ServeEvent",
    "ServedItem",
    "StateUpdate",
    "encode",
    "state_update_adapter",
    "utc_now",
]

SCHEMA_VERSION: Literal[1] = 1


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event: strict, immutable, versioned.

    Python code may leave ``schema_version`` to its default; a message must state it,
    which the topic decoder (``json_decoder``) checks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1

    @field_validator("schema_version", mode="before")
    @classmethod
    def _exactly_an_integer(cls, value: object) -> object:
        # `true` and `1.0` equal 1 in Python but are not the version number.
        if type(value) is not int:
            raise ValueError("schema_version must be the integer 1")
        return value

    @property
    def event_id(self) -> str:
        """Deterministic identity used to deduplicate redelivered messages."""
        raise NotImplementedError

    @property
    def partition_key(self) -> str:
        """The key the producer partitions by."""
        raise NotImplementedError


class ServedItem(BaseModel):
    """One item of a slate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: int = Field(description="Arm (movie) id.")
    position: int = Field(ge=0, description="Rank in the slate, 0 first.")
    propensity: float = Field(
        ge=0.0, le=1.0, description="Probability that the policy put this item in the slate."
    )


class ServeEvent(Event):
    """A slate of recommendations answered to one request."""

    serve_id: str = Field(min_length=1, max_length=64)
    experiment_id: str = Field(min_length=1, max_length=64)
    variant: str = Field(min_length=1, max_length=64)
    policy_type: str = Field(min_length=1, max_length=32)
    user_id: str = Field(min_length=1, max_length=128)
    items: list[ServedItem] = Field(max_length=1000)
    cohort: dict[str, str] = Field(
        default_factory=dict, description="Cohort attributes such as user_type, age, device."
    )
    state_version: int = Field(ge=0, description="Posterior version the policy selected from.")
    latency_ms: float = Field(ge=0.0)
    status: Literal["ok", "error"] = "ok"
    served_at: datetime

    @property
    def event_id(self) -> str:
        return self.serve_id

    @property
    def partition_key(self) -> str:
        return self.serve_id


class ClickEvent(Event):
    """A click on an item of a serve; keyed like its serve so the join stays in one partition."""

    serve_id: str = Field(min_length=1, max_length=64)
    item_id: int
    user_id: str = Field(min_length=1, max_length=128)
    clicked_at: datetime

    @property
    def event_id(self) -> str:
        return f"{self.serve_id}:{self.item_id}:{self.clicked_at.isoformat()}"

    @property
    def partition_key(self) -> str:
        return self.serve_id


class RewardedItem(BaseModel):
    """The outcome of one served item."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: int = Field(description="Arm (movie) id.")
    position: int = Field(ge=0, description="Rank in the slate, 0 first.")
    propensity: float = Field(ge=0.0, le=1.0, description="Logged probability of the serve.")
    reward: float = Field(ge=0.0, le=1.0, description="1 for a click within the window, else 0.")


class RewardEvent(Event):
    """Outcomes of items of one serve, decided at the same moment.

    Every served item gets exactly one outcome: a click within the attribution
    window gives its item 1 at once (one item, ``rewarded_at`` = click time);
    the window's close gives every item not clicked 0 (``rewarded_at`` = the
    window's end). ``reward_ids`` are ``serve_id:item_id``, one per outcome,
    so consumers deduplicate outcomes, whatever message carried them.
    """

    serve_id: str = Field(min_length=1, max_length=64)
    experiment_id: str = Field(min_length=1, max_length=64)
    variant: str = Field(min_length=1, max_length=64)
    policy_type: str = Field(min_length=1, max_length=32)
    items: list[RewardedItem] = Field(min_length=1, max_length=1000)
    user_id: str | None = Field(default=None, max_length=128, description="As on the serve.")
    cohort: dict[str, str] = Field(
        default_factory=dict, description="The serve's cohort attributes, for cohort analytics."
    )
    served_at: datetime
    rewarded_at: datetime

    @property
    def event_id(self) -> str:
        return f"{self.serve_id}:{self.items[0].item_id}"

    @property
    def reward_ids(self) -> list[str]:
        """The deterministic id of each outcome: ``serve_id:item_id``."""
        return [f"{self.serve_id}:{item.item_id}" for item in self.items]

    @property
    def partition_key(self) -> str:
        # One experiment's policy sees its updates in order.
        return f"{self.experiment_id}:{self.variant}"


class LateClick(Event):
    """A click that arrived after its serve's attribution window: counted, never rewarded."""

    serve_id: str = Field(min_length=1, max_length=64)
    experiment_id: str | None = Field(
        default=None, description="Unknown when the serve's state has already been pruned."
    )
    variant: str | None = None
    item_id: int
    user_id: str = Field(min_length=1, max_length=128)
    clicked_at: datetime
    window_closed_at: datetime | None = Field(
        default=None, description="End of the serve's attribution window, when known."
    )

    @property
    def event_id(self) -> str:
        return f"late:{self.serve_id}:{self.item_id}:{self.clicked_at.isoformat()}"

    @property
    def partition_key(self) -> str:
        return self.serve_id


class PosteriorUpdate(Event):
    """Arm counts of one (experiment, variant) after the learner applied a batch."""

    kind: Literal["posterior"] = "posterior"
    experiment_id: str = Field(min_length=1, max_length=64)
    variant: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=0)
    arm_ids: list[int]
    pulls: list[float]
    successes: list[float]
    updated_at: datetime

    @property
    def event_id(self) -> str:
        return f"{self.experiment_id}:{self.variant}:{self.version}"

    @property
    def partition_key(self) -> str:
        return self.experiment_id


class ExperimentChanged(Event):
    """An experiment's configuration or status changed; assignment instances reload it."""

    kind: Literal["experiment"] = "experiment"
    experiment_id: str = Field(min_length=1, max_length=64)
    revision: int = Field(ge=0)
    status: str
    changed_at: datetime

    @property
    def event_id(self) -> str:
        return f"{self.experiment_id}:rev{self.revision}"

    @property
    def partition_key(self) -> str:
        return self.experiment_id


class GuardrailTriggered(Event):
    """A guardrail breach acted on: a variant rolled back, or the experiment paused."""

    kind: Literal["guardrail"] = "guardrail"
    experiment_id: str = Field(min_length=1, max_length=64)
    variant: str | None = Field(default=None, description="None: the whole experiment.")
    guardrail: str
    action: Literal["rollback", "pause"]
    observed: float
    threshold: float
    window_seconds: float = Field(ge=0.0)
    triggered_at: datetime

    @property
    def event_id(self) -> str:
        return (
            f"{self.experiment_id}:{self.variant}:{self.guardrail}:{self.triggered_at.isoformat()}"
        )

    @property
    def partition_key(self) -> str:
        return self.experiment_id


StateUpdate = Annotated[
    PosteriorUpdate | ExperimentChanged | GuardrailTriggered, Field(discriminator="kind")
]
state_update_adapter: TypeAdapter[PosteriorUpdate | ExperimentChanged | GuardrailTriggered] = (
    TypeAdapter(StateUpdate)
)


class DeadLetter(Event):
    """A message a consumer could not process, kept with where it came from and why."""

    source_topic: str
    source_partition: int
    source_offset: int
    consumer_group: str
    reason_code: str = Field(description="Dotted machine-readable reason, e.g. invalid.json.")
    reason: str = Field(description="Human-readable reason.")
    key_b64: str | None = None
    payload_b64: str = Field(description="The original bytes, base64 (truncated if oversized).")
    payload_truncated: bool = False
    payload_size: int = Field(ge=0, description="Size of the original payload in bytes.")
    dead_lettered_at: datetime

    @property
    def event_id(self) -> str:
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"

    @property
    def partition_key(self) -> str:
        return self.source_topic

    def payload(self) -> bytes:
        """The original (possibly truncated) message bytes."""
        return base64.b64decode(self.payload_b64)


EVENT_MODELS: dict[str, type[Event]] = {
    "serve": ServeEvent,
    "click": ClickEvent,
    "reward": RewardEvent,
    "late_click": LateClick,
    "posterior_update": PosteriorUpdate,
    "experiment_changed": ExperimentChanged,
    "guardrail_triggered": GuardrailTriggered,
    "dead_letter": DeadLetter,
}


def encode(event: Event) -> bytes:
    """The wire form of an event: compact UTF-8 JSON."""
    return event.model_dump_json().encode()
