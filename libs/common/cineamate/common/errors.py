"""Error hierarchy shared by every service.

    CineamateError                 code, message, retriable
    ├── ConfigError                invalid or missing setting (exit code 2)
    ├── DependencyUnavailable      broker, database or cache unreachable (retriable)
    ├── InvalidInput               a request or message failed validation (HTTP 422)
    │   └── InvalidEvent           an event that cannot be decoded or validated
    ├── NotFound                   an addressed resource does not exist (HTTP 404)
    ├── Conflict                   the request clashes with the current state (HTTP 409)
    ├── Unauthorized               no or unknown credentials (HTTP 401)
    ├── Forbidden                  valid credentials, wrong role (HTTP 403)
    ├── TooLarge                   a request body above the size limit (HTTP 413)
    └── RateLimited                a client above its request rate (HTTP 429, retriable)

Each error carries a machine-readable dotted ``code`` (``invalid.traffic``,
``not_found.experiment``) so clients and dead-letter consumers can branch on
it without parsing messages; ``status_of`` gives its HTTP status.
"""

from __future__ import annotations

__all__ = [
    "CineamateError",
    "ConfigError",
    "Conflict",
    "DependencyUnavailable",
    "Forbidden",
    "InvalidEvent",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
    "status_of",
]


class CineamateError(Exception):
    """Base of every error the platform raises on purpose."""

    default_code = "error"
    retriable = False

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class ConfigError(CineamateError):
    default_code = "invalid.config"


class DependencyUnavailable(CineamateError):
    default_code = "unavailable.dependency"
    retriable = True


class InvalidInput(CineamateError):
    default_code = "invalid.input"


class InvalidEvent(InvalidInput):
    default_code = "invalid.event"


class NotFound(CineamateError):
    default_code = "not_found"


class Conflict(CineamateError):
    default_code = "conflict"


class Unauthorized(CineamateError):
    default_code = "unauthorized"


class Forbidden(CineamateError):
    default_code = "forbidden"


class TooLarge(CineamateError):
    default_code = "too_large.body"


class RateLimited(CineamateError):
    """A client above its rate; ``retry_after`` is the seconds until it may retry."""

    default_code = "rate_limited"
    retriable = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_STATUS_BY_ERROR: tuple[tuple[type[CineamateError], int], ...] = (
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (TooLarge, 413),
    (RateLimited, 429),
    (DependencyUnavailable, 503),
)


def status_of(error: CineamateError) -> int:
    """The HTTP status of a platform error."""
    return next((code for cls, code in _STATUS_BY_ERROR if isinstance(error, cls)), 500)
