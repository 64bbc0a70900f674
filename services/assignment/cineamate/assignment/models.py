"""Request and response models of the assignment service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cineamate.assignment.bucketing import BUCKETS, Allocation
from cineamate.common.experiments import (
    EXPERIMENT_NAME_PATTERN,
    MAX_WEIGHT,
    DecisionCriteria,
    Experiment,
    ExperimentConfig,
    GuardrailThresholds,
    VariantConfig,
)

__all__ = ["ClickIn", "ExperimentCreate", "ExperimentRead", "ExperimentUpdate"]

ExperimentCreate = ExperimentConfig


class ExperimentUpdate(BaseModel):
    """Fields an operator may change; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=EXPERIMENT_NAME_PATTERN
    )
    traffic: float | None = Field(default=None, ge=0.0, le=1.0)
    weights: dict[str, float] | None = Field(
        default=None, description="New relative weight per policy name (each > 0, at most 1e6)."
    )
    rolled_back: dict[str, bool] | None = Field(
        default=None, description="Roll a policy back (true) or undo a rollback (false)."
    )
    status: Literal["draft", "running", "paused", "stopped"] | None = None

    @field_validator("weights")
    @classmethod
    def _weights_positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, weight in (value or {}).items():
            if not 0 < weight <= MAX_WEIGHT:
                raise ValueError(
                    f"the weight of {name!r} must be greater than 0 and at most {MAX_WEIGHT:g}"
                )
        return value


class ExperimentRead(BaseModel):
    """An experiment as the API shows it."""

    id: str
    status: str
    revision: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    name: str
    catalogue: list[int] | str
    policies: list[VariantConfig]
    traffic: float
    slate_size: int
    reward_window_hours: float
    guardrails: GuardrailThresholds
    decision: DecisionCriteria
    duration_days: float
    traffic_split: dict[str, float] = Field(
        description="Configured share of all users per policy (the control includes users "
        "outside the experiment's traffic and those of rolled-back policies)."
    )

    @classmethod
    def of(cls, experiment: Experiment) -> ExperimentRead:
        config = experiment.config
        counts = Allocation.from_json(experiment.allocation).counts()
        split = {v.name: 0.0 for v in config.policies}
        control = config.control.name
        for variant in config.policies:
            share = counts.get(variant.name, 0) / BUCKETS
            split[control if variant.rolled_back else variant.name] += share
        split[control] += 1.0 - sum(counts.values()) / BUCKETS
        return cls(
            id=experiment.id,
            status=experiment.status,
            revision=experiment.revision,
            created_at=experiment.created_at,
            updated_at=experiment.updated_at,
            started_at=experiment.started_at,
            stopped_at=experiment.stopped_at,
            traffic_split={name: round(share, 6) for name, share in split.items()},
            **config.model_dump(),
        )


class ClickIn(BaseModel):
    """A click on an item of a served slate."""

    model_config = ConfigDict(extra="forbid")

    serve_id: str = Field(min_length=1, max_length=64)
    movie_id: int
    user_id: str = Field(min_length=1, max_length=128)
    ts: datetime | None = Field(default=None, description="When it happened; now if absent.")
