"""The experiment configuration every service reads, and its read-only access.

The assignment service owns the writes (the experiments API); the learner,
reward join, guardrails, decision engine and analytics read the same rows.

    >>> config = ExperimentConfig(
    ...     name="Bandit Test v1",
    ...     catalogue=[1, 2, 3],
    ...     policies=[
    ...         VariantConfig(name="ts", type="thompson"),
    ...         VariantConfig(name="control", type="random", control=True),
    ...     ],
    ... )
    >>> config.control.name
    'control'
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cineamate.common.errors import NotFound

__all__ = [
    "EXPERIMENT_NAME_PATTERN",
    "MAX_WEIGHT",
    "POLICY_TYPE_NAMES",
    "DecisionCriteria",
    "Experiment",
    "ExperimentCache",
    "ExperimentConfig",
    "ExperimentStatus",
    "GuardrailThresholds",
    "VariantConfig",
    "fetch_catalogue",
    "fetch_experiment",
    "require_experiment",
]

POLICY_TYPE_NAMES = ("thompson", "egreedy", "ucb1", "random", "popularity")
# Weights are relative; beyond this ratio a share is below one bucket in 10,000 anyway,
# and the sums stay finite.
MAX_WEIGHT = 1_000_000.0
ExperimentStatus = Literal["draft", "running", "paused", "stopped"]
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A display name: any text PostgreSQL can store (it refuses the NUL character).
EXPERIMENT_NAME_PATTERN = r"^[^\x00]+$"


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class VariantConfig(BaseModel):
    """One arm of the experiment: a named policy with its parameters and traffic weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=_NAME_PATTERN)
    type: Literal["thompson", "egreedy", "ucb1", "random", "popularity"]
    params: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(
        default=1.0, gt=0.0, le=MAX_WEIGHT, description="Relative share of the traffic."
    )
    control: bool = False
    rolled_back: bool = Field(
        default=False, description="True after a guardrail rollback: its users see the control."
    )


class GuardrailThresholds(BaseModel):
    """Limits that roll a variant back when breached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    latency_p95_ms: float = Field(default=120.0, gt=0.0)
    arm_concentration: float = Field(default=0.50, gt=0.0, le=1.0)
    reward_drop: float = Field(default=0.05, ge=0.0, le=1.0)


class DecisionCriteria(BaseModel):
    """What it takes to ship, iterate or kill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_uplift: float = Field(default=0.03, ge=0.0)
    min_confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    min_window_days: float = Field(default=7.0, ge=0.0)
    max_experiment_days: float = Field(default=14.0, gt=0.0)
    min_events_per_policy: int = Field(default=1000, ge=0)
    significance_level: float = Field(default=0.05, gt=0.0, lt=1.0)


class ExperimentConfig(BaseModel):
    """Everything that defines an experiment, as created through the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=EXPERIMENT_NAME_PATTERN)
    catalogue: list[int] | str = Field(
        description="The arms: a list of item ids, or the name of a loaded catalogue."
    )
    policies: list[VariantConfig] = Field(min_length=2, max_length=20)
    traffic: float = Field(default=0.8, ge=0.0, le=1.0)
    slate_size: int = Field(default=10, ge=1, le=100)
    reward_window_hours: float = Field(default=24.0, gt=0.0, le=24.0 * 90)
    guardrails: GuardrailThresholds = Field(default_factory=GuardrailThresholds)
    decision: DecisionCriteria = Field(default_factory=DecisionCriteria)
    duration_days: float = Field(default=14.0, gt=0.0, le=365.0)

    @field_validator("catalogue")
    @classmethod
    def _catalogue_not_empty(cls, value: list[int] | str) -> list[int] | str:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("catalogue name must not be empty")
            return value
        if not value:
            raise ValueError("catalogue must list at least one item")
        if len(set(value)) != len(value):
            raise ValueError("catalogue lists an item twice")
        # Stored as PostgreSQL bigint and counted in int64 arrays: a larger id would be
        # accepted, stored, and then fail every read of the experiment.
        if min(value) < _INT64_MIN or max(value) > _INT64_MAX:
            raise ValueError("catalogue item ids must fit in a signed 64-bit integer")
        return value

    @field_validator("policies")
    @classmethod
    def _one_control_and_unique_names(cls, policies: list[VariantConfig]) -> list[VariantConfig]:
        controls = [variant.name for variant in policies if variant.control]
        if len(controls) != 1:
            raise ValueError(f"exactly one policy must be the control (found {len(controls)})")
        names = [variant.name for variant in policies]
        if len(set(names)) != len(names):
            raise ValueError("policy names must be unique")
        return policies

    @property
    def control(self) -> VariantConfig:
        return next(variant for variant in self.policies if variant.control)

    def variant(self, name: str) -> VariantConfig | None:
        return next((variant for variant in self.policies if variant.name == name), None)

    def user_shares(self) -> dict[str, float]:
        """Share of all users each policy should serve: the traffic split by weight, with
        the control also serving everyone outside the traffic and the rolled-back
        policies' users."""
        total = sum(variant.weight for variant in self.policies)
        shares = dict.fromkeys((variant.name for variant in self.policies), 0.0)
        control = self.control.name
        for variant in self.policies:
            share = self.traffic * variant.weight / total
            shares[control if variant.rolled_back else variant.name] += share
        shares[control] += 1.0 - self.traffic
        return shares


class Experiment(BaseModel):
    """A stored experiment."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: ExperimentStatus
    config: ExperimentConfig
    revision: int
    created_at: datetime
    updated_at: datetime
    allocation: list[tuple[int, int, str]] = Field(
        default_factory=list, description="Bucket ranges [start, end) of each variant."
    )
    salt: str = ""
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Experiment:
        """From a row of the experiments table (``SELECT *``)."""
        return cls(
            id=row["id"],
            status=row["status"],
            config=ExperimentConfig.model_validate(orjson.loads(row["config"])),
            revision=row["revision"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            allocation=[tuple(segment) for segment in orjson.loads(row["allocation"])],
            salt=row["salt"],
            started_at=row["started_at"],
            stopped_at=row["stopped_at"],
        )


async def fetch_experiment(pool: asyncpg.Pool, experiment_id: str) -> Experiment | None:
    """The experiment with this id, or None."""
    row = await pool.fetchrow("SELECT * FROM experiments WHERE id = $1", experiment_id)
    return None if row is None else Experiment.from_row(row)


async def require_experiment(pool: asyncpg.Pool, experiment_id: str) -> Experiment:
    """The experiment with this id; NotFound (404) when there is none."""
    experiment = await fetch_experiment(pool, experiment_id)
    if experiment is None:
        raise NotFound(f"no experiment {experiment_id!r}", code="not_found.experiment")
    return experiment


async def fetch_catalogue(pool: asyncpg.Pool, catalogue: list[int] | str) -> list[int]:
    """The item ids of an experiment's catalogue (a literal list, or a loaded catalogue's items)."""
    if isinstance(catalogue, list):
        return sorted(catalogue)
    rows = await pool.fetch(
        "SELECT item_id FROM catalogue_items WHERE catalogue = $1 ORDER BY item_id", catalogue
    )
    return [row["item_id"] for row in rows]


class ExperimentCache:
    """Experiment configurations and catalogues read from PostgreSQL, kept for a few seconds."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_seconds: float) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Experiment | None]] = {}
        self._catalogues: dict[str, list[int]] = {}

    async def get(self, experiment_id: str) -> Experiment | None:
        now = time.monotonic()
        cached = self._entries.get(experiment_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        experiment = await fetch_experiment(self._pool, experiment_id)
        self._entries[experiment_id] = (now, experiment)
        return experiment

    async def catalogue(self, experiment: Experiment) -> list[int]:
        """The experiment's arm ids; fixed once the experiment exists, so kept for good."""
        items = self._catalogues.get(experiment.id)
        if items is None:
            items = self._catalogues[experiment.id] = await fetch_catalogue(
                self._pool, experiment.config.catalogue
            )
        return items
