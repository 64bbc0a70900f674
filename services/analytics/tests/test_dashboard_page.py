"""The dashboard page is public and carries no data; its figures need the read token.

The app is driven in-process without its lifespan: serving the page needs no
database, broker or token.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from cineamate.analytics.app import create_app
from cineamate.analytics.settings import AnalyticsSettings
from cineamate.common.settings import load_settings
from cineamate.stack.testing import TEST_TOKENS

# Never connected to: the app runs without its lifespan.
UNREACHABLE_STORES = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "DATABASE_URL": "postgresql://127.0.0.1:1/none",
    "REDIS_URL": "redis://127.0.0.1:1/0",
}


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    for name, value in UNREACHABLE_STORES.items() | TEST_TOKENS.items():
        monkeypatch.setenv(name, value)
    app = create_app(load_settings(AnalyticsSettings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


async def test_page_answers_html_without_a_token_and_holds_no_data(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"
    page = answer.text
    assert "<title>CineaMate dashboard</title>" in page
    # Nothing from the stores or settings is rendered into the page.
    for secret in TEST_TOKENS.values():
        assert secret not in page
    assert "127.0.0.1:1" not in page
    assert not re.search(r"exp_[0-9a-f]{6}", page)


async def test_every_asset_the_page_names_is_served(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assets = re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', page)

    assert sorted(assets) == [
        "/dashboard/charts.js",
        "/dashboard/dashboard.css",
        "/dashboard/dashboard.js",
    ]
    for path in assets:
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith(("text/javascript", "text/css"))


async def test_unknown_asset_is_404_and_the_api_still_needs_the_token(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/dashboard/secrets.env")
    api = await client.get("/api/experiments/e1/summary")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found.asset"
    assert api.status_code == 401
