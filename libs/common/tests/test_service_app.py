"""The app factory gives a service health, metrics, its name on responses and one error body.

The app is driven in-process through httpx's ASGI transport; the lifespan is
not run and no dependency is declared, so nothing is contacted.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import redis.exceptions
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families

from cineamate.common.app import create_service_app
from cineamate.common.errors import Conflict, NotFound
from cineamate.common.settings import load_settings
from cineamate.decision import DecisionSettings

SERVICE = "decision"


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/widgets/{widget_id}")
    async def get_widget(widget_id: str, limit: int = 10) -> dict[str, object]:
        if widget_id == "missing":
            raise NotFound("no such experiment", code="not_found.experiment")
        if widget_id == "taken":
            raise Conflict("widget is taken", code="conflict.widget", field="widget_id")
        if widget_id == "broken":
            raise RuntimeError("database password is hunter2")
        if widget_id == "redis-down":
            raise redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.7:6379")
        if widget_id == "postgres-down":
            raise asyncpg.exceptions.AdminShutdownError("terminating connection")
        return {"widget_id": widget_id, "limit": limit}

    return router


@pytest.fixture
def app(service_env: pytest.MonkeyPatch) -> FastAPI:
    return create_service_app(
        name=SERVICE,
        settings=load_settings(DecisionSettings),
        dependencies=[],
        routers=[_router()],
    )


def _request_count(metrics_text: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "cineamate_http_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_count")
                and labels.get("route") == route
                and labels.get("method") == "GET"
                and labels.get("status") == status
            ):
                return sample.value
    return 0.0


async def test_healthz_answers_ok_with_the_service_name(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": SERVICE}


async def test_readyz_is_ready_without_dependencies_or_workers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_metrics_are_prometheus_text_with_request_durations(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "cineamate_http_request_duration_seconds" in response.text
    assert _request_count(response.text, "/healthz", "200") >= 1


async def test_request_duration_is_recorded_by_route_template_not_raw_path(
    client: httpx.AsyncClient,
) -> None:
    before = _request_count((await client.get("/metrics")).text, "/widgets/{widget_id}", "200")

    await client.get("/widgets/w-81723")

    after_text = (await client.get("/metrics")).text
    assert _request_count(after_text, "/widgets/{widget_id}", "200") == before + 1
    assert "w-81723" not in after_text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/healthz", 200),
        ("/metrics", 200),
        ("/widgets/a", 200),
        ("/widgets/missing", 404),
        ("/widgets/a?limit=abc", 422),
    ],
)
async def test_response_names_the_answering_service(
    client: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await client.get(path)

    assert response.status_code == status
    assert response.headers["x-cineamate-service"] == SERVICE


async def test_not_found_error_gives_404_with_its_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/widgets/missing")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found.experiment", "message": "no such experiment"}
    }


async def test_platform_error_keeps_its_field(client: httpx.AsyncClient) -> None:
    response = await client.get("/widgets/taken")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "conflict.widget",
        "message": "widget is taken",
        "field": "widget_id",
    }


async def test_bad_query_parameter_gives_422_naming_the_parameter(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/widgets/a", params={"limit": "abc"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid.request"
    assert error["field"] == "query.limit"
    assert error["message"].startswith("query.limit: ")


async def test_unexpected_exception_gives_500_without_details(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/widgets/broken")

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal"
    assert "hunter2" not in response.text
    assert any(record.exc_info for record in caplog.records)


async def test_unexpected_exception_response_still_names_the_service(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/widgets/broken")

    assert response.status_code == 500
    assert response.headers.get("x-cineamate-service") == SERVICE


async def test_unknown_path_answers_with_the_platform_error_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/no/such/path")

    assert response.status_code == 404
    assert isinstance(response.json().get("error", {}).get("code"), str)


@pytest.mark.parametrize("widget_id", ["redis-down", "postgres-down"])
async def test_a_store_that_cannot_be_reached_is_503_without_its_address(
    client: httpx.AsyncClient, widget_id: str
) -> None:
    answer = await client.get(f"/widgets/{widget_id}")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "unavailable.dependency"
    assert "10.0.0.7" not in answer.text
