"""The assignment service's rules, free of I/O: status transitions, applying an update,
which variant a user sees, and the check of policy parameters."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from cineamate.assignment.bucketing import Allocation, bucket_of
from cineamate.assignment.service import (
    ChangedExperiment,
    ExperimentChange,
    apply_change,
    assign,
    check_policies,
    initial_allocation,
)
from cineamate.common.errors import Conflict, InvalidInput
from cineamate.common.experiments import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    VariantConfig,
)

STATUSES: tuple[ExperimentStatus, ...] = get_args(ExperimentStatus)
# Written out here rather than imported, so that the test states the rule independently.
ALLOWED = {
    ("draft", "running"),
    ("running", "paused"),
    ("paused", "running"),
    ("running", "stopped"),
    ("paused", "stopped"),
}
CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = ExperimentConfig(
    name="rules",
    catalogue=list(range(1, 21)),
    policies=[
        VariantConfig(name="control", type="random", control=True),
        VariantConfig(name="ts", type="thompson"),
        VariantConfig(name="eg", type="egreedy", params={"epsilon": 0.2}),
    ],
    traffic=0.5,
)


def _experiment(
    status: ExperimentStatus = "draft", config: ExperimentConfig = CONFIG
) -> Experiment:
    started = None if status == "draft" else CREATED + timedelta(hours=1)
    stopped = CREATED + timedelta(hours=2) if status == "stopped" else None
    return Experiment(
        id="exp_rules0000",
        status=status,
        config=config,
        revision=1,
        created_at=CREATED,
        updated_at=CREATED,
        allocation=[tuple(row) for row in initial_allocation(config).to_json()],
        salt="exp_rules0000",
        started_at=started,
        stopped_at=stopped,
    )


def _after(experiment: Experiment, changed: ChangedExperiment) -> Experiment:
    """The experiment as the store saves it after ``changed``."""
    return experiment.model_copy(
        update={
            "status": changed.status,
            "config": changed.config,
            "allocation": [tuple(row) for row in changed.allocation.to_json()],
            "started_at": changed.started_at,
            "stopped_at": changed.stopped_at,
            "revision": experiment.revision + 1,
        }
    )


def _user(experiment: Experiment, wanted: Callable[[int], bool]) -> str:
    """The first user id whose bucket satisfies ``wanted``."""
    salt = experiment.salt or experiment.id
    for i in itertools.count():
        user = f"user-{i}"
        if wanted(bucket_of(salt, user)):
            return user
    raise AssertionError("unreachable")


def _user_of(experiment: Experiment, variant: str | None) -> str:
    allocation = Allocation.from_json(experiment.allocation)
    return _user(experiment, lambda bucket: allocation.owner(bucket) == variant)


@pytest.mark.parametrize(("before", "after"), sorted(itertools.permutations(STATUSES, 2)))
def test_only_the_allowed_status_transitions_succeed(
    before: ExperimentStatus, after: ExperimentStatus
) -> None:
    experiment = _experiment(before)
    now = CREATED + timedelta(days=1)
    if (before, after) in ALLOWED:
        assert apply_change(experiment, ExperimentChange(status=after), now).status == after
    else:
        with pytest.raises(Conflict) as raised:
            apply_change(experiment, ExperimentChange(status=after), now)
        assert raised.value.code == "conflict.transition"


@pytest.mark.parametrize("status", STATUSES)
def test_setting_the_same_status_changes_nothing(status: ExperimentStatus) -> None:
    experiment = _experiment(status)
    changed = apply_change(experiment, ExperimentChange(status=status), CREATED + timedelta(days=1))
    assert changed.status == status
    assert changed.config == experiment.config
    assert changed.started_at == experiment.started_at
    assert changed.stopped_at == experiment.stopped_at
    assert changed.allocation.to_json() == Allocation.from_json(experiment.allocation).to_json()


def test_started_at_is_set_on_first_run_and_kept_on_resume() -> None:
    draft = _experiment("draft")
    first_run, pause, resume, stop = (CREATED + timedelta(hours=h) for h in (1, 2, 3, 4))

    running = _after(draft, apply_change(draft, ExperimentChange(status="running"), first_run))
    assert (running.started_at, running.stopped_at) == (first_run, None)
    paused = _after(running, apply_change(running, ExperimentChange(status="paused"), pause))
    assert (paused.started_at, paused.stopped_at) == (first_run, None)
    resumed = _after(paused, apply_change(paused, ExperimentChange(status="running"), resume))
    assert (resumed.status, resumed.started_at) == ("running", first_run)
    stopped = _after(resumed, apply_change(resumed, ExperimentChange(status="stopped"), stop))
    assert (stopped.started_at, stopped.stopped_at) == (first_run, stop)


def test_status_changes_do_not_move_buckets() -> None:
    experiment = _experiment("running")
    changed = apply_change(experiment, ExperimentChange(status="paused"), CREATED)
    assert changed.allocation.to_json() == Allocation.from_json(experiment.allocation).to_json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (ExperimentChange(weights={"ghost": 2.0}), "body.weights.ghost"),
        (ExperimentChange(weights={"ts": 2.0, "ghost": 2.0}), "body.weights.ghost"),
        (ExperimentChange(rolled_back={"ghost": True}), "body.rolled_back.ghost"),
        (ExperimentChange(rolled_back={"ghost": False}), "body.rolled_back.ghost"),
    ],
)
def test_unknown_policy_names_are_invalid_and_named(change: ExperimentChange, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        apply_change(_experiment("running"), change, CREATED)
    assert raised.value.field == field


def test_the_control_cannot_be_rolled_back() -> None:
    with pytest.raises(InvalidInput) as raised:
        apply_change(
            _experiment("running"), ExperimentChange(rolled_back={"control": True}), CREATED
        )
    assert raised.value.field == "body.rolled_back.control"


def test_rollback_keeps_the_buckets_and_can_be_undone() -> None:
    running = _experiment("running")
    rolled = _after(
        running, apply_change(running, ExperimentChange(rolled_back={"ts": True}), CREATED)
    )
    assert rolled.config.variant("ts").rolled_back  # type: ignore[union-attr]
    assert rolled.allocation == running.allocation
    undone = apply_change(rolled, ExperimentChange(rolled_back={"ts": False}), CREATED)
    assert not undone.config.variant("ts").rolled_back  # type: ignore[union-attr]


def test_weight_change_reallocates_by_the_new_weights() -> None:
    running = _experiment("running")
    changed = apply_change(running, ExperimentChange(weights={"ts": 3.0}), CREATED)
    assert changed.config.variant("ts").weight == 3.0  # type: ignore[union-attr]
    # traffic 0.5 is 5000 buckets, split 1:3:1
    assert changed.allocation.counts() == {"control": 1000, "ts": 3000, "eg": 1000}


def test_running_experiment_routes_users_to_their_buckets_owner() -> None:
    experiment = _experiment("running")
    for variant in ("control", "ts", "eg"):
        user = _user_of(experiment, variant)
        assignment = assign(experiment, Allocation.from_json(experiment.allocation), user)
        assert (assignment.variant, assignment.in_experiment) == (variant, True)
        assert assignment.bucket == bucket_of(experiment.salt, user)


@pytest.mark.parametrize("status", ["paused", "stopped"])
def test_paused_and_stopped_experiments_serve_the_control(status: ExperimentStatus) -> None:
    experiment = _experiment(status)
    allocation = Allocation.from_json(experiment.allocation)
    for variant in ("ts", "eg"):
        assignment = assign(experiment, allocation, _user_of(experiment, variant))
        assert (assignment.variant, assignment.in_experiment) == ("control", False)


def test_users_outside_the_traffic_see_the_control() -> None:
    experiment = _experiment("running")
    user = _user(experiment, lambda bucket: bucket >= 5_000)
    assignment = assign(experiment, Allocation.from_json(experiment.allocation), user)
    assert (assignment.variant, assignment.in_experiment) == ("control", False)


def test_users_of_a_rolled_back_variant_see_the_control() -> None:
    running = _experiment("running")
    rolled = _after(
        running, apply_change(running, ExperimentChange(rolled_back={"ts": True}), CREATED)
    )
    allocation = Allocation.from_json(rolled.allocation)
    assignment = assign(rolled, allocation, _user_of(rolled, "ts"))
    assert (assignment.variant, assignment.in_experiment) == ("control", True)
    assert assign(rolled, allocation, _user_of(rolled, "eg")).variant == "eg"


def _config_with(index: int, variant: dict[str, Any]) -> ExperimentConfig:
    policies: list[dict[str, Any]] = [
        {"name": "control", "type": "random", "control": True},
        {"name": "ts", "type": "thompson"},
        {"name": "eg", "type": "egreedy"},
    ]
    policies[index] = {**policies[index], **variant}
    return ExperimentConfig.model_validate(
        {"name": "params", "catalogue": [1, 2, 3], "policies": policies}
    )


@pytest.mark.parametrize(
    ("index", "variant"),
    [
        (2, {"params": {"epsilon": 2}}),
        (2, {"params": {"epsilon": -0.1}}),
        (2, {"params": {"epsilon": 0.2, "min_epsilon": 0.5}}),
        (1, {"params": {"no_such_parameter": 1}}),
        (0, {"params": {"no_such_parameter": 1}}),
    ],
)
def test_bad_policy_params_are_invalid_and_name_the_variant(
    index: int, variant: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_policies(_config_with(index, variant))
    assert raised.value.field == f"body.policies.{index}.params"


def test_good_policy_params_pass() -> None:
    check_policies(_config_with(2, {"params": {"epsilon": 0.3, "decay": 0.01}}))
    check_policies(CONFIG)
