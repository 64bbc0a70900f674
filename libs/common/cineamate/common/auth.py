"""Bearer-token roles shared by every service's public routes.

    admin    CINEAMATE_ADMIN_TOKEN   create and steer experiments (also reads)
    read     CINEAMATE_READ_TOKEN    dashboards, analytics, posterior state
    client   CINEAMATE_CLIENT_KEY    recommendations and clicks

No credentials is 401; valid credentials of the wrong role is 403. Tokens are
compared in constant time. ``CINEAMATE_AUTH_DISABLED=true`` turns checking off
for a local demo; it is never off by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Coroutine
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute

from cineamate.common.errors import ConfigError, Forbidden, Unauthorized
from cineamate.common.settings import ProcessSettings

__all__ = ["AuthorizedRoute", "Role", "TokenChecker", "require", "requires"]


class Role(StrEnum):
    ADMIN = "admin"
    READ = "read"
    CLIENT = "client"


# Which presented role satisfies which required role.
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset({Role.ADMIN}),
    Role.READ: frozenset({Role.READ, Role.ADMIN}),
    Role.CLIENT: frozenset({Role.CLIENT}),
}


class TokenChecker:
    """Maps a presented bearer token to its role."""

    def __init__(self, settings: ProcessSettings) -> None:
        self.disabled = settings.auth_disabled
        tokens = {
            Role.ADMIN: settings.admin_token,
            Role.READ: settings.read_token,
            Role.CLIENT: settings.client_key,
        }
        self._tokens = {
            role: secret.get_secret_value().encode()
            for role, secret in tokens.items()
            if secret is not None and secret.get_secret_value()
        }
        if not self.disabled and not self._tokens:
            raise ConfigError(
                "CINEAMATE_ADMIN_TOKEN is not set (set the admin, read and client tokens, "
                "or CINEAMATE_AUTH_DISABLED=true for a local demo)",
                field="CINEAMATE_ADMIN_TOKEN",
            )

    def role_of(self, token: str) -> Role | None:
        presented = token.encode()
        found = None
        # Compare against every token, so the time taken does not depend on which matched.
        for role, expected in self._tokens.items():
            if hmac.compare_digest(presented, expected):
                found = role
        return found

    def check(self, authorization: str | None, required: Role) -> Role | None:
        """The caller's role; raises Unauthorized or Forbidden."""
        if self.disabled:
            return None
        if not authorization:
            raise Unauthorized("missing bearer token", code="unauthorized.missing_token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "expected 'Authorization: Bearer <token>'", code="unauthorized.scheme"
            )
        role = self.role_of(token.strip())
        if role is None:
            raise Unauthorized("unknown token", code="unauthorized.unknown_token")
        if role not in _GRANTS[required]:
            raise Forbidden(
                f"this route needs the {required.value} role, not {role.value}",
                code=f"forbidden.{required.value}",
            )
        return role


class AuthorizedRoute(APIRoute):
    """A route that checks the caller's role before it reads the body, so that a caller
    without the right token learns nothing about the body's validity (401/403 first)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role: Role | None = getattr(self.endpoint, "required_role", None)
        if role is None:
            return handler

        async def checked(request: Request) -> Response:
            checker: TokenChecker = request.app.state.tokens
            checker.check(request.headers.get("authorization"), role)
            return await handler(request)

        return checked


EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])


def requires(role: Role) -> Callable[[EndpointT], EndpointT]:
    """Mark an endpoint of an ``AuthorizedRoute`` router as needing ``role``."""

    def mark(endpoint: EndpointT) -> EndpointT:
        endpoint.required_role = role  # type: ignore[attr-defined]
        return endpoint

    return mark


def require(role: Role) -> Callable[[Request], Awaitable[Role | None]]:
    """A FastAPI dependency that admits only callers with ``role``."""

    async def dependency(request: Request) -> Role | None:
        checker: TokenChecker = request.app.state.tokens
        return checker.check(request.headers.get("authorization"), role)

    dependency.__name__ = f"require_{role.value}"
    return dependency
