"""The built-in dashboard: a static page that draws an experiment from the analytics API.

The page (HTML, CSS and JavaScript in ``dashboard/``, no build step) is public and
holds no data; the browser fetches every figure from the API with the read token it
was given, so serving the page needs no token.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from cineamate.common.errors import NotFound

__all__ = ["router"]

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# The page loads nothing from elsewhere and sends its requests only to its own origin.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@cache
def _assets() -> dict[str, tuple[bytes, str]]:
    """Every file of the page by name, with its media type."""
    folder = files("cineamate.analytics") / "dashboard"
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            found[entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return found


def _asset(name: str) -> Response:
    asset = _assets().get(name)
    if asset is None:
        raise NotFound(f"no dashboard file {name!r}", code="not_found.asset")
    body, media_type = asset
    return Response(body, media_type=media_type, headers=_HEADERS)


@router.get("/")
async def page() -> Response:
    """The dashboard page."""
    return _asset("index.html")


@router.get("/dashboard/{name}")
async def asset(name: str) -> Response:
    """A script or style sheet of the page."""
    return _asset(name)
