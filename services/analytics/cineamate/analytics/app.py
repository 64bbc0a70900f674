"""The analytics service's FastAPI app: the ingest worker and the dashboard API."""

from __future__ import annotations

from fastapi import FastAPI

from cineamate.analytics import dashboard
from cineamate.analytics.ingest import Ingest
from cineamate.analytics.routes import router
from cineamate.analytics.settings import AnalyticsSettings
from cineamate.common.app import WorkerSpec, create_service_app
from cineamate.common.dependencies import standard_dependencies

__all__ = ["create_app"]

SERVICE_NAME = "analytics"


def create_app(settings: AnalyticsSettings) -> FastAPI:
    """The analytics app, wired to its dependencies."""
    return create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(
            settings, client_id=SERVICE_NAME, kafka=True, postgres=True, redis=False
        ),
        routers=[router, dashboard.router],
        workers=[WorkerSpec("ingest", lambda deps: Ingest(settings, deps))],
        gc_threshold=settings.gc_threshold,
    )
