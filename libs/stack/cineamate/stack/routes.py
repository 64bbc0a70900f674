"""The public routing table: which service owns which public path.

This is the one source of truth for the local entry point (``gateway``), the
compose file and the Kubernetes ingress, which are generated from or checked
against it. Routes are tried in order; the first match wins, so more
specific paths come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

__all__ = ["ROUTES", "Route", "owner_of"]

_PARAMETER = re.compile(r"\{[a-z_]+\}")


@dataclass(frozen=True)
class Route:
    """Requests whose path starts with ``path`` (a template) go to ``service``."""

    path: str
    service: str

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Regular expression matching the path and everything below it."""
        regex = _PARAMETER.sub(
            "[^/]+", re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}")
        )
        if self.path == "/":
            return re.compile("^/")
        return re.compile(f"^{regex}(/.*)?$")

    def matches(self, path: str) -> bool:
        return self.pattern.match(path) is not None


ROUTES: tuple[Route, ...] = (
    Route("/api/experiments/{experiment_id}/policies", "policy"),
    Route("/api/experiments/{experiment_id}/guardrails", "guardrails"),
    Route("/api/experiments/{experiment_id}/decision", "decision"),
    Route("/api/experiments/{experiment_id}/summary", "analytics"),
    Route("/api/experiments/{experiment_id}/timeseries", "analytics"),
    Route("/api/experiments/{experiment_id}/arms", "analytics"),
    Route("/api/experiments/{experiment_id}/cohorts", "analytics"),
    Route("/api/experiments/{experiment_id}/latency", "analytics"),
    Route("/api/experiments/{experiment_id}/events", "analytics"),
    Route("/api/experiments/{experiment_id}/export", "analytics"),
    Route("/api/experiments", "assignment"),
    Route("/api/movies", "assignment"),
    Route("/api/events", "assignment"),
    Route("/api/catalogues", "assignment"),
    # The built-in dashboard and its assets.
    Route("/", "analytics"),
)


def owner_of(path: str, routes: tuple[Route, ...] = ROUTES) -> str | None:
    """The service that answers ``path``, or None."""
    for route in routes:
        if route.matches(path):
            return route.service
    return None
