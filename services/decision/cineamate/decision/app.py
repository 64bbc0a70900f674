"""The decision service's FastAPI app: the periodic evaluator and the decision route."""

from __future__ import annotations

from fastapi import FastAPI

from cineamate.common.app import WorkerSpec, create_service_app
from cineamate.common.dependencies import standard_dependencies
from cineamate.decision.evaluate import DecisionLoop
from cineamate.decision.routes import router
from cineamate.decision.settings import DecisionSettings

__all__ = ["create_app"]

SERVICE_NAME = "decision"


def create_app(settings: DecisionSettings) -> FastAPI:
    """The decision app, wired to its dependencies."""
    return create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(
            settings, client_id=SERVICE_NAME, kafka=True, postgres=True, redis=False
        ),
        routers=[router],
        workers=[WorkerSpec("evaluator", lambda deps: DecisionLoop(settings, deps))],
    )
