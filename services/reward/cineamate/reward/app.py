"""The reward service's FastAPI app: the join worker behind health, readiness and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from cineamate.common.app import WorkerSpec, create_service_app
from cineamate.common.dependencies import standard_dependencies
from cineamate.reward.consumer import RewardJoiner
from cineamate.reward.settings import RewardSettings

__all__ = ["create_app"]

SERVICE_NAME = "reward"


def create_app(settings: RewardSettings) -> FastAPI:
    """The reward app, wired to its dependencies."""
    return create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(
            settings, client_id=SERVICE_NAME, kafka=True, postgres=True, redis=True
        ),
        workers=[WorkerSpec("join", lambda deps: RewardJoiner(settings, deps))],
    )
