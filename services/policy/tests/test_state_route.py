"""The state route before the learner is built: 503 "starting", never a 500.

The app is driven in-process without its lifespan, so the learner (and the
stores it shares with the route) does not exist yet, as in the first moments
after a start while the dependencies connect.
"""

from __future__ import annotations

import httpx
import pytest

from cineamate.common.settings import load_settings
from cineamate.policy.app import create_app
from cineamate.policy.settings import PolicySettings
from cineamate.stack.testing import READ, TEST_TOKENS


async def test_state_before_the_learner_is_built_is_503_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in TEST_TOKENS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/none")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    app = create_app(load_settings(PolicySettings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/api/experiments/e1/policies/ts/state", headers=READ)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable.starting"
