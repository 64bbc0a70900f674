"""Fixtures of the shared library's unit tests: a process environment of the test's own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

_CONNECTION_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CineaMate variable from the outer environment leaks into the test."""
    for variable in list(os.environ):
        if variable.startswith("CINEAMATE_") or variable in _CONNECTION_VARIABLES:
            monkeypatch.delenv(variable)
    return monkeypatch


@pytest.fixture
def service_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The three required connection variables set; nothing is ever contacted."""
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    clean_env.setenv("DATABASE_URL", "postgresql://user:db-password-41@127.0.0.1:1/cineamate")
    clean_env.setenv("REDIS_URL", "redis://:redis-password-42@127.0.0.1:1/0")
    clean_env.setenv("CINEAMATE_ADMIN_TOKEN", "admin-token-43")
    clean_env.setenv("CINEAMATE_READ_TOKEN", "read-token-44")
    clean_env.setenv("CINEAMATE_CLIENT_KEY", "client-key-45")
    return clean_env


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client of the test module's ``app`` fixture."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
