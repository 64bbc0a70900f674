"""The assignment service's FastAPI app: experiments API, recommendations and clicks."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from cineamate.assignment.consumer import StateUpdatesFollower
from cineamate.assignment.recommend import RecommendationEndpoint
from cineamate.assignment.routes import router
from cineamate.assignment.runtime import AssignmentRuntime
from cineamate.assignment.settings import AssignmentSettings
from cineamate.common.app import WorkerSpec, create_service_app
from cineamate.common.dependencies import Dependencies, standard_dependencies

__all__ = ["create_app"]

SERVICE_NAME = "assignment"


class _SpoolDrainer:
    """Worker that owns the runtime and drains the event spool."""

    name = "spool"

    def __init__(self, runtime: AssignmentRuntime) -> None:
        self._runtime = runtime

    async def run(self) -> None:
        await self._runtime.publisher.run()

    async def stop(self) -> None:
        await self._runtime.posteriors.close()


def create_app(settings: AssignmentSettings) -> ASGIApp:
    """The assignment app, wired to its dependencies."""
    app: FastAPI

    def runtime_of(deps: Dependencies) -> AssignmentRuntime:
        runtime: AssignmentRuntime | None = getattr(app.state, "runtime", None)
        if runtime is None:
            runtime = app.state.runtime = AssignmentRuntime.build(settings, deps)
        return runtime

    def spool(deps: Dependencies) -> _SpoolDrainer:
        return _SpoolDrainer(runtime_of(deps))

    def follower(deps: Dependencies) -> StateUpdatesFollower:
        runtime = runtime_of(deps)
        return StateUpdatesFollower(
            settings.kafka_bootstrap_servers,
            settings.state_updates_topic,
            runtime.registry,
            runtime.posteriors,
        )

    app = create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(settings, client_id=SERVICE_NAME),
        routers=[router],
        workers=[WorkerSpec("spool", spool), WorkerSpec("state-updates", follower)],
    )
    # Outside the framework, so the hot path skips its layers (see recommend.py).
    return RecommendationEndpoint(app)
