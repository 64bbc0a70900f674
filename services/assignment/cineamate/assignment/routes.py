"""HTTP routes of the assignment service: experiments, recommendations, clicks."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request, Response

from cineamate.assignment.models import ClickIn, ExperimentCreate, ExperimentRead, ExperimentUpdate
from cineamate.assignment.runtime import AssignmentRuntime
from cineamate.assignment.service import (
    ExperimentChange,
    apply_change,
    assign,
    check_policies,
    initial_allocation,
)
from cineamate.common.auth import AuthorizedRoute, Role, requires
from cineamate.common.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound
from cineamate.common.events import ClickEvent, ExperimentChanged, ServedItem, ServeEvent, utc_now
from cineamate.common.experiments import Experiment
from cineamate.common.kafka import OutgoingMessage
from cineamate.common.metrics import RECOMMENDATION_SECONDS

__all__ = ["router"]

router = APIRouter(route_class=AuthorizedRoute)

# Query parameters with a meaning of their own; any other one is a cohort attribute.
_RECOMMENDATION_PARAMETERS = frozenset({"experiment_id", "user_id", "k"})
_MAX_COHORT_ATTRIBUTES = 10


def _runtime(request: Request) -> AssignmentRuntime:
    runtime: AssignmentRuntime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise DependencyUnavailable("the service is still connecting to its dependencies")
    return runtime


def _actor(request: Request) -> str:
    return request.headers.get("x-cineamate-actor", "admin")[:200]


async def _announce(runtime: AssignmentRuntime, experiment: Experiment) -> None:
    """Serve the new version here at once; tell the other instances through the topic."""
    runtime.registry.install(experiment, await runtime.registry.catalogue_of(experiment))
    event = ExperimentChanged(
        experiment_id=experiment.id,
        revision=experiment.revision,
        status=experiment.status,
        changed_at=utc_now(),
    )
    runtime.publisher.publish(OutgoingMessage.of(runtime.settings.state_updates_topic, event))


@router.post(
    "/api/experiments",
    status_code=201,
    tags=["experiments"],
)
@requires(Role.ADMIN)
async def create_experiment(request: Request, body: ExperimentCreate) -> ExperimentRead:
    """Create an experiment in status draft."""
    runtime = _runtime(request)
    check_policies(body)
    experiment = await runtime.store.create(body, initial_allocation(body), actor=_actor(request))
    await _announce(runtime, experiment)
    return ExperimentRead.of(experiment)


@router.get("/api/experiments", tags=["experiments"])
@requires(Role.READ)
async def list_experiments(
    request: Request,
    status: Annotated[str | None, Query(pattern="^(draft|running|paused|stopped)$")] = None,
) -> list[ExperimentRead]:
    """Every experiment, newest first, optionally only those in one status."""
    experiments = await _runtime(request).store.all(status)
    return [ExperimentRead.of(experiment) for experiment in experiments]


@router.get(
    "/api/experiments/{experiment_id}",
    tags=["experiments"],
)
@requires(Role.READ)
async def get_experiment(request: Request, experiment_id: str) -> ExperimentRead:
    return ExperimentRead.of(await _runtime(request).store.get_or_raise(experiment_id))


@router.get(
    "/api/experiments/{experiment_id}/audit",
    tags=["experiments"],
)
@requires(Role.READ)
async def experiment_audit(request: Request, experiment_id: str) -> list[dict[str, Any]]:
    """Every change of the experiment: who, when, what it was before and after."""
    runtime = _runtime(request)
    await runtime.store.get_or_raise(experiment_id)
    return await runtime.store.audit_trail(experiment_id)


@router.patch(
    "/api/experiments/{experiment_id}",
    tags=["experiments"],
)
@requires(Role.ADMIN)
async def update_experiment(
    request: Request, experiment_id: str, body: ExperimentUpdate
) -> ExperimentRead:
    """Change name, traffic, weights, rollbacks or status (draft, running, paused, stopped)."""
    runtime = _runtime(request)
    change = ExperimentChange(**body.model_dump())
    _, after = await runtime.store.update(
        experiment_id,
        lambda experiment, now: apply_change(experiment, change, now),
        actor=_actor(request),
        action="update",
    )
    await _announce(runtime, after)
    return ExperimentRead.of(after)


@router.post(
    "/api/experiments/{experiment_id}/stop",
    tags=["experiments"],
)
@requires(Role.ADMIN)
async def stop_experiment(request: Request, experiment_id: str) -> ExperimentRead:
    """Stop the experiment for good; its users see the control."""
    runtime = _runtime(request)
    change = ExperimentChange(status="stopped")
    _, after = await runtime.store.update(
        experiment_id,
        lambda experiment, now: apply_change(experiment, change, now),
        actor=_actor(request),
        action="stop",
    )
    await _announce(runtime, after)
    return ExperimentRead.of(after)


@router.get(
    "/api/movies/recommendations",
    tags=["recommendations"],
)
@requires(Role.CLIENT)
async def recommendations(
    request: Request,
    experiment_id: Annotated[str, Query(min_length=1, max_length=64)],
    user_id: Annotated[str, Query(min_length=1, max_length=128)],
    k: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> Response:
    """A slate for the user from the policy of the variant they are assigned to."""
    started = time.perf_counter()
    runtime = _runtime(request)
    live = await runtime.registry.get(experiment_id)
    if live is None:
        raise NotFound(f"no experiment {experiment_id!r}", code="not_found.experiment")
    experiment = live.experiment
    if experiment.status == "draft":
        raise Conflict(f"experiment {experiment_id!r} has not started", code="conflict.not_running")
    cohort = _cohort(request)
    assignment = assign(experiment, live.allocation, user_id)
    variant = experiment.config.variant(assignment.variant)
    assert variant is not None
    slate_size = k or experiment.config.slate_size
    status = "error"
    try:
        state = await runtime.posteriors.state(live, variant.name)
        selection = live.policies[variant.name].select(state, slate_size, runtime.rng)
        status = "ok"
    finally:
        elapsed = time.perf_counter() - started
        RECOMMENDATION_SECONDS.labels(experiment_id, variant.name, status).observe(elapsed)
        if status == "error":
            _publish_serve(
                runtime,
                experiment_id,
                variant.name,
                variant.type,
                user_id,
                [],
                cohort,
                0,
                elapsed,
                "error",
            )
    serve_id = uuid.uuid4().hex
    items = [
        {
            "movie_id": int(arm),
            "title": live.titles.get(int(arm), ""),
            "position": position,
            "propensity": float(propensity),
        }
        for position, (arm, propensity) in enumerate(
            zip(selection.arm_ids, selection.propensities, strict=True)
        )
    ]
    _publish_serve(
        runtime,
        experiment_id,
        variant.name,
        variant.type,
        user_id,
        items,
        cohort,
        state.version,
        time.perf_counter() - started,
        "ok",
        serve_id=serve_id,
    )
    body = {
        "serve_id": serve_id,
        "experiment_id": experiment_id,
        "user_id": user_id,
        "variant": variant.name,
        "policy_type": variant.type,
        "items": items,
        "state_version": state.version,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _cohort(request: Request) -> dict[str, str]:
    extra = [
        (name, value)
        for name, value in request.query_params.items()
        if name not in _RECOMMENDATION_PARAMETERS
    ]
    if len(extra) > _MAX_COHORT_ATTRIBUTES:
        raise InvalidInput(
            f"at most {_MAX_COHORT_ATTRIBUTES} cohort attributes", field="query.cohort"
        )
    for name, value in extra:
        if len(name) > 32 or len(value) > 64:
            raise InvalidInput(
                "cohort attributes are at most 32 characters, their values 64",
                field=f"query.{name[:32]}",
            )
    return dict(extra)


def _publish_serve(
    runtime: AssignmentRuntime,
    experiment_id: str,
    variant: str,
    policy_type: str,
    user_id: str,
    items: list[dict[str, Any]],
    cohort: dict[str, str],
    state_version: int,
    elapsed_seconds: float,
    status: str,
    *,
    serve_id: str | None = None,
) -> None:
    event = ServeEvent(
        serve_id=serve_id or uuid.uuid4().hex,
        experiment_id=experiment_id,
        variant=variant,
        policy_type=policy_type,
        user_id=user_id,
        items=[
            ServedItem(item_id=i["movie_id"], position=i["position"], propensity=i["propensity"])
            for i in items
        ],
        cohort=cohort,
        state_version=state_version,
        latency_ms=elapsed_seconds * 1000.0,
        status="ok" if status == "ok" else "error",
        served_at=utc_now(),
    )
    runtime.publisher.publish(OutgoingMessage.of(runtime.settings.serves_topic, event))


@router.post(
    "/api/events/clicks",
    status_code=202,
    tags=["recommendations"],
)
@requires(Role.CLIENT)
async def clicks(
    request: Request, body: Annotated[ClickIn | list[ClickIn], Body()]
) -> dict[str, int]:
    """Accept one click or a batch; they join their serves into rewards downstream."""
    runtime = _runtime(request)
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise InvalidInput("no clicks in the request", field="body")
    if len(batch) > runtime.settings.max_clicks_per_request:
        raise InvalidInput(
            f"at most {runtime.settings.max_clicks_per_request} clicks per request", field="body"
        )
    now = utc_now()
    for click in batch:
        event = ClickEvent(
            serve_id=click.serve_id,
            item_id=click.movie_id,
            user_id=click.user_id,
            clicked_at=click.ts or now,
        )
        runtime.publisher.publish(OutgoingMessage.of(runtime.settings.clicks_topic, event))
    return {"accepted": len(batch)}
