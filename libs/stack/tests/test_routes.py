"""The public routing table sends every path to the service that owns it."""

from __future__ import annotations

import re

import pytest

from cineamate.common.settings import SERVICE_NAMES
from cineamate.stack.routes import ROUTES, Route, owner_of

_PARAMETER = re.compile(r"\{[a-z_]+\}")


def _filled(route: Route, value: str = "exp-42") -> str:
    return _PARAMETER.sub(value, route.path)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/experiments/abc/summary", "analytics"),
        ("/api/experiments/abc/summary/daily", "analytics"),
        ("/api/experiments/x/policies/thompson/state", "policy"),
        ("/api/experiments/x/guardrails", "guardrails"),
        ("/api/experiments/x/decision", "decision"),
        ("/api/experiments/x/events", "analytics"),
        ("/api/experiments", "assignment"),
        ("/api/experiments/x", "assignment"),
        ("/api/events/clicks", "assignment"),
        ("/api/movies/603", "assignment"),
        ("/", "analytics"),
        ("/static/app.js", "analytics"),
    ],
)
def test_path_goes_to_its_owner(path: str, service: str) -> None:
    assert owner_of(path) == service


def test_segment_that_only_starts_like_a_route_does_not_match_it() -> None:
    assert owner_of("/api/experiments/abc/summaryx") != "analytics"
    assert owner_of("/api/experiments/abc/summaryx") == "assignment"


def test_parameter_does_not_span_segments() -> None:
    assert owner_of("/api/experiments/a/b/policies") != "policy"


def test_every_route_is_owned_by_a_known_service() -> None:
    unknown = [route for route in ROUTES if route.service not in SERVICE_NAMES]

    assert unknown == []


def test_route_paths_are_unique() -> None:
    paths = [route.path for route in ROUTES]

    assert len(paths) == len(set(paths))


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.path)
def test_no_route_is_shadowed_by_an_earlier_one(route: Route) -> None:
    for path in (_filled(route), _filled(route).rstrip("/") + "/below"):
        first = next(candidate for candidate in ROUTES if candidate.matches(path))
        assert first == route, f"{path} is taken by {first.path}"
        assert owner_of(path) == route.service


def test_empty_routing_table_owns_nothing() -> None:
    assert owner_of("/api/experiments", routes=()) is None


def test_path_outside_a_restricted_table_has_no_owner() -> None:
    routes = (Route("/api/movies", "assignment"),)

    assert owner_of("/api/movies/1", routes=routes) == "assignment"
    assert owner_of("/api/moviesx", routes=routes) is None
    assert owner_of("/", routes=routes) is None
