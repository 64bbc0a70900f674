"""Errors of the load generator, on the platform's base classes.

    CineamateError
    ├── ConfigError
    │   └── NonLoopbackHost     a target other than 127.0.0.1 (invalid.host)
    └── HttpProtocolError       a response that is not valid HTTP/1.1 (invalid.http_response)

A transport failure during a run (reset, refused, closed mid-response) is
never raised: it is counted in the report, as a load generator must keep
going when the server under test misbehaves.
"""

from __future__ import annotations

from cineamate.common.errors import CineamateError, ConfigError

__all__ = ["HttpProtocolError", "NonLoopbackHost"]


class NonLoopbackHost(ConfigError):
    """The load generator only ever sends to 127.0.0.1."""

    default_code = "invalid.host"


class HttpProtocolError(CineamateError):
    """The bytes received are not a well-formed HTTP/1.1 response."""

    default_code = "invalid.http_response"
