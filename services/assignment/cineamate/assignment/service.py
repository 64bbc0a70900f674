"""The assignment service's decisions, free of I/O: configuration checks, status
transitions, applying an update, and which variant a user sees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cineamate.assignment.bucketing import Allocation, allocate, bucket_of
from cineamate.common.errors import Conflict, InvalidInput
from cineamate.common.experiments import Experiment, ExperimentConfig, ExperimentStatus
from cineamate.policies import make_policy

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Assignment",
    "ExperimentChange",
    "apply_change",
    "assign",
    "check_policies",
    "initial_allocation",
]

ALLOWED_TRANSITIONS = frozenset(
    {
        ("draft", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "stopped"),
        ("paused", "stopped"),
    }
)


def check_policies(config: ExperimentConfig) -> None:
    """Every variant's parameters must build its policy; InvalidInput names the field."""
    for index, variant in enumerate(config.policies):
        try:
            make_policy(variant.type, variant.params)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=f"body.policies.{index}.params") from exc


def initial_allocation(config: ExperimentConfig) -> Allocation:
    return allocate([(v.name, v.weight) for v in config.policies], config.traffic)


@dataclass(frozen=True)
class ExperimentChange:
    """The fields ``PATCH /api/experiments/{id}`` may change."""

    name: str | None = None
    traffic: float | None = None
    weights: dict[str, float] | None = None
    rolled_back: dict[str, bool] | None = None
    status: ExperimentStatus | None = None


@dataclass(frozen=True)
class ChangedExperiment:
    config: ExperimentConfig
    status: ExperimentStatus
    allocation: Allocation
    started_at: datetime | None
    stopped_at: datetime | None


def apply_change(
    experiment: Experiment, change: ExperimentChange, now: datetime
) -> ChangedExperiment:
    """The experiment after ``change``; Conflict for a forbidden status transition."""
    config = experiment.config
    updates: dict[str, object] = {}
    if change.name is not None:
        updates["name"] = change.name
    if change.traffic is not None:
        updates["traffic"] = change.traffic
    variants = list(config.policies)
    names = {variant.name for variant in variants}
    for field_name, values in (("weights", change.weights), ("rolled_back", change.rolled_back)):
        for name in values or {}:
            if name not in names:
                raise InvalidInput(f"no policy named {name!r}", field=f"body.{field_name}.{name}")
    if change.weights:
        variants = [
            v.model_copy(update={"weight": change.weights[v.name]})
            if v.name in change.weights
            else v
            for v in variants
        ]
    if change.rolled_back:
        if change.rolled_back.get(config.control.name):
            raise InvalidInput(
                "the control cannot be rolled back", field=f"body.rolled_back.{config.control.name}"
            )
        variants = [
            v.model_copy(update={"rolled_back": change.rolled_back[v.name]})
            if v.name in change.rolled_back
            else v
            for v in variants
        ]
    updates["policies"] = variants
    new_config = ExperimentConfig.model_validate(config.model_dump() | updates)

    status: ExperimentStatus = experiment.status
    started_at, stopped_at = experiment.started_at, experiment.stopped_at
    if change.status is not None and change.status != status:
        if (status, change.status) not in ALLOWED_TRANSITIONS:
            raise Conflict(
                f"cannot go from {status} to {change.status}", code="conflict.transition"
            )
        status = change.status
        if status == "running" and started_at is None:
            started_at = now
        if status == "stopped":
            stopped_at = now

    current = Allocation.from_json(experiment.allocation)
    if (new_config.traffic, [(v.name, v.weight) for v in new_config.policies]) != (
        config.traffic,
        [(v.name, v.weight) for v in config.policies],
    ):
        allocation = allocate(
            [(v.name, v.weight) for v in new_config.policies], new_config.traffic, current
        )
    else:
        allocation = current
    return ChangedExperiment(new_config, status, allocation, started_at, stopped_at)


@dataclass(frozen=True)
class Assignment:
    """Which variant a user sees, and why."""

    variant: str
    bucket: int
    in_experiment: bool


def assign(experiment: Experiment, allocation: Allocation, user_id: str) -> Assignment:
    """The user's variant: their bucket's owner while the experiment runs and the variant
    is live; the control when paused, stopped, outside the traffic, or rolled back."""
    control = experiment.config.control.name
    bucket = bucket_of(experiment.salt or experiment.id, user_id)
    if experiment.status != "running":
        return Assignment(control, bucket, False)
    owner = allocation.owner(bucket)
    if owner is None:
        return Assignment(control, bucket, False)
    variant = experiment.config.variant(owner)
    if variant is None or variant.rolled_back:
        return Assignment(control, bucket, True)
    return Assignment(owner, bucket, True)
