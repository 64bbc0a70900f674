"""The policy service's FastAPI app: the learner worker and the posterior state route."""

from __future__ import annotations

from fastapi import FastAPI

from cineamate.common.app import WorkerSpec, create_service_app
from cineamate.common.dependencies import Dependencies, standard_dependencies
from cineamate.policy.consumer import RewardLearner
from cineamate.policy.routes import router
from cineamate.policy.settings import PolicySettings

__all__ = ["create_app"]

SERVICE_NAME = "policy"


def create_app(settings: PolicySettings) -> FastAPI:
    """The policy app, wired to its dependencies."""
    app: FastAPI

    def learner(deps: Dependencies) -> RewardLearner:
        worker = RewardLearner(settings, deps)
        # The routes read through the same stores as the learner.
        app.state.posteriors = worker.posteriors
        app.state.experiments = worker.experiments
        return worker

    app = create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(settings, client_id=SERVICE_NAME),
        routers=[router],
        workers=[WorkerSpec("learner", learner)],
    )
    return app
