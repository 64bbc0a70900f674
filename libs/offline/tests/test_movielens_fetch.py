"""``cineamate dataset fetch``: one clear line without network, a checksum that refuses a
changed file, no second download of a file already there. Loopback only."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cineamate.common.errors import InvalidInput
from cineamate.offline.movielens.fetch import fetch_movielens
from cineamate.stack.processes import free_port
from cineamate.stack.testing import run_cli

_BODY = b"not really a zip, but bytes with a known checksum\n" * 100


class _Served:
    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = 0


@pytest.fixture
def served() -> Iterator[_Served]:
    """A loopback HTTP server answering every GET with _BODY, counting requests."""
    state = _Served("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(_BODY)))
            self.end_headers()
            self.wfile.write(_BODY)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_unreachable_source_fails_with_one_line_naming_where_to_put_the_file(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, CINEAMATE_HOME=str(tmp_path / "home"))
    url = f"http://127.0.0.1:{free_port()}/ml-1m.zip"
    done = run_cli(env, "dataset", "fetch", "movielens-1m", "--url", url, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert url in lines[0]
    assert str(tmp_path / "home" / "datasets") in lines[0]
    assert "dataset synth" in lines[0]
    assert not list((tmp_path / "home").rglob("*.part"))


def test_download_with_another_checksum_is_refused_and_not_kept(
    served: _Served, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="expected c4d9eecfca2ab87c1945afe126590906"):
        fetch_movielens(tmp_path, url=served.url)
    assert list(tmp_path.iterdir()) == []


def test_verified_download_is_kept_and_not_fetched_again(served: _Served, tmp_path: Path) -> None:
    md5 = hashlib.md5(_BODY, usedforsecurity=False).hexdigest()
    path = fetch_movielens(tmp_path, url=served.url, md5=md5)
    assert path == tmp_path / "ml-1m.zip"
    assert path.read_bytes() == _BODY
    assert fetch_movielens(tmp_path, url=served.url, md5=md5) == path
    assert served.requests == 1
