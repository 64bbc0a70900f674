"""The guardrails service's FastAPI app: the monitor and the guardrails route."""

from __future__ import annotations

from fastapi import FastAPI

from cineamate.common.app import WorkerSpec, create_service_app
from cineamate.common.dependencies import standard_dependencies
from cineamate.guardrails.monitor import GuardrailMonitor
from cineamate.guardrails.routes import router
from cineamate.guardrails.settings import GuardrailsSettings

__all__ = ["create_app"]

SERVICE_NAME = "guardrails"


def create_app(settings: GuardrailsSettings) -> FastAPI:
    """The guardrails app, wired to its dependencies."""
    return create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(
            settings, client_id=SERVICE_NAME, kafka=True, postgres=True, redis=False
        ),
        routers=[router],
        workers=[WorkerSpec("monitor", lambda deps: GuardrailMonitor(settings, deps))],
    )
