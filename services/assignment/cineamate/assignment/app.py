"""The assignment service's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from cineamate.assignment.settings import AssignmentSettings
from cineamate.common.app import create_service_app
from cineamate.common.dependencies import standard_dependencies

__all__ = ["create_app"]

SERVICE_NAME = "assignment"


def create_app(settings: AssignmentSettings) -> FastAPI:
    """The assignment app, wired to its dependencies."""
    return create_service_app(
        name=SERVICE_NAME,
        settings=settings,
        dependencies=standard_dependencies(
            settings, client_id=SERVICE_NAME, kafka=True, postgres=True, redis=True
        ),
    )
