"""HTTP routes of the assignment service: experiments, recommendations, clicks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from cineamate.assignment.models import ClickIn, ExperimentCreate, ExperimentRead, ExperimentUpdate
from cineamate.assignment.recommend import PATH, parse_query, recommend
from cineamate.assignment.runtime import AssignmentRuntime
from cineamate.assignment.service import (
    ExperimentChange,
    apply_change,
    check_policies,
    initial_allocation,
)
from cineamate.common.auth import AuthorizedRoute, Role, requires
from cineamate.common.errors import DependencyUnavailable, InvalidInput
from cineamate.common.events import ClickEvent, ExperimentChanged, utc_now
from cineamate.common.experiments import Experiment
from cineamate.common.kafka import OutgoingMessage

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
    return await _change(request, experiment_id, ExperimentChange(**body.model_dump()), "update")


@router.post(
    "/api/experiments/{experiment_id}/stop",
    tags=["experiments"],
)
@requires(Role.ADMIN)
async def stop_experiment(request: Request, experiment_id: str) -> ExperimentRead:
    """Stop the experiment for good; its users see the control."""
    return await _change(request, experiment_id, ExperimentChange(status="stopped"), "stop")


async def _change(
    request: Request, experiment_id: str, change: ExperimentChange, action: str
) -> ExperimentRead:
    """Apply ``change`` under the row lock, audited as ``action``, and announce the result."""
    runtime = _runtime(request)
    _, after = await runtime.store.update(
        experiment_id,
        lambda experiment, now: apply_change(experiment, change, now),
        actor=_actor(request),
        action=action,
    )
    await _announce(runtime, after)
    return ExperimentRead.of(after)


@router.get(PATH, tags=["recommendations"])
@requires(Role.CLIENT)
async def recommendations(
    request: Request,
    experiment_id: Annotated[str, Query(min_length=1, max_length=64)],
    user_id: Annotated[str, Query(min_length=1, max_length=128)],
    k: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> Response:
    """A slate for the user from the policy of the variant they are assigned to.

    Other query parameters (up to 10) are cohort attributes. The running service answers
    this path in ``recommend.RecommendationEndpoint``, ahead of the framework; this route
    states the same contract for the OpenAPI schema and serves any request that reaches it.
    """
    _, _, _, cohort = parse_query(request.scope.get("query_string", b""))
    body = await recommend(_runtime(request), experiment_id, user_id, k, cohort)
    return Response(body, media_type="application/json")


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
