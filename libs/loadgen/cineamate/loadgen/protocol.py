"""HTTP/1.1 for the load generator, without I/O: GET requests out, responses in.

The engine writes the bytes of ``format_get`` and feeds whatever it reads to a
``ResponseParser``, which yields whole responses. Keeping the protocol free of
sockets lets it be tested byte by byte, and keeps the hot loop down to one
``write`` and a few ``read`` calls per request. Bodies are framed by
Content-Length, by chunked transfer coding (extensions and trailers
accepted), or by the end of the connection, as RFC 9112 section 6.3 orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cineamate.loadgen.errors import HttpProtocolError

__all__ = ["DEFAULT_MAX_HEAD_BYTES", "Response", "ResponseParser", "format_get"]

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
# Chunk sizes beyond this are nonsense for a test server, and int() of a huge hex is slow.
_MAX_CHUNK_SIZE_DIGITS = 16
_FORBIDDEN_IN_TARGET = frozenset(" \t\r\n")
_HEX_DIGITS = b"0123456789abcdefABCDEF"

_HEAD = 0
_BODY_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_TRAILERS = 4
_BODY_UNTIL_CLOSE = 5


def format_get(host: str, path: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The bytes of one keep-alive ``GET path`` to ``host``; CR, LF and spaces are refused.

    >>> format_get("127.0.0.1:8000", "/healthz")
    b'GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1:8000\\r\\n\\r\\n'
    """
    if not path.startswith("/") or not _FORBIDDEN_IN_TARGET.isdisjoint(path):
        raise ValueError(f"not an origin-form request target: {path!r}")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        if not name or ":" in name or not _FORBIDDEN_IN_TARGET.isdisjoint(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} has a line break in its value")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class Response:
    """One parsed response; header names are lower case, in the order received."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    keep_alive: bool

    def header(self, name: bytes) -> bytes | None:
        """The last value of header ``name`` (lower case), or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class ResponseParser:
    """Incremental parser of the responses on one connection.

    >>> parser = ResponseParser()
    >>> parser.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    >>> parser.next_response()
    Response(status=200, headers=((b'content-length', b'2'),), body=b'hi', keep_alive=True)
    >>> parser.next_response() is None
    True
    """

    def __init__(self, *, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES) -> None:
        self._max_head_bytes = max_head_bytes
        self._buffer = bytearray()
        self._eof = False
        self._state = _HEAD
        self._status = 0
        self._headers: tuple[tuple[bytes, bytes], ...] = ()
        self._keep_alive = True
        self._body = bytearray()
        self._remaining = 0

    @property
    def idle(self) -> bool:
        """True between responses with nothing buffered: the connection may be reused."""
        return self._state == _HEAD and not self._buffer

    def feed(self, data: bytes) -> None:
        """Bytes read from the connection, in order."""
        self._buffer += data

    def feed_eof(self) -> None:
        """The peer closed the connection; a body framed by the close is then complete."""
        self._eof = True

    def next_response(self) -> Response | None:
        """The next complete response, or None until more bytes arrive.

        Raises HttpProtocolError on malformed input, or when the connection ended
        in the middle of a response.
        """
        buffer = self._buffer
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > self._max_head_bytes:
                        raise HttpProtocolError("response head is too long")
                    if self._eof and buffer:
                        raise HttpProtocolError("connection closed inside a response head")
                    return None
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                if self._start(head):
                    return self._finish()
            elif state == _BODY_LENGTH:
                if len(buffer) < self._remaining:
                    return self._incomplete()
                body = bytes(buffer[: self._remaining])
                del buffer[: self._remaining]
                return self._finish(body)
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    return self._incomplete()
                self._remaining = _chunk_size(bytes(buffer[:end]))
                del buffer[: end + 2]
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _CHUNK_DATA:
                size = self._remaining
                if len(buffer) < size + 2:
                    return self._incomplete()
                if buffer[size : size + 2] != b"\r\n":
                    raise HttpProtocolError("chunk data is not followed by CRLF")
                self._body += buffer[:size]
                del buffer[: size + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buffer.find(b"\r\n")
                if end < 0:
                    return self._incomplete()
                del buffer[: end + 2]
                if end == 0:
                    body = bytes(self._body)
                    self._body.clear()
                    return self._finish(body)
            else:
                self._body += buffer
                buffer.clear()
                if not self._eof:
                    return None
                body = bytes(self._body)
                self._body.clear()
                return self._finish(body)

    def _incomplete(self) -> Response | None:
        """None, to wait for more bytes; unless the connection has ended."""
        if self._eof:
            raise HttpProtocolError("connection closed inside a response body")
        return None

    def _start(self, head: bytes) -> bool:
        """Parse the head and choose how the body is framed; True when there is no body."""
        lines = head.split(b"\r\n")
        version, status = _status_line(lines[0])
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name:
                raise HttpProtocolError(f"malformed header line {line[:80]!r}")
            headers.append((name.lower(), value.strip()))
        self._status = status
        self._headers = tuple(headers)
        connection = _last(headers, b"connection")
        tokens = {t.strip().lower() for t in connection.split(b",")} if connection else set()
        if version == b"HTTP/1.0":
            self._keep_alive = b"keep-alive" in tokens
        else:
            self._keep_alive = b"close" not in tokens
        if 100 <= status < 200 and status != 101:
            # An interim response (100 Continue, 103 Early Hints): the real one follows.
            self._state = _HEAD
            return False
        if status in (101, 204, 304):
            return True
        transfer_encoding = _last(headers, b"transfer-encoding")
        if transfer_encoding is not None:
            codings = [c.strip().lower() for c in transfer_encoding.split(b",")]
            if codings[-1] == b"chunked":
                self._state = _CHUNK_SIZE
                return False
            self._keep_alive = False
            self._state = _BODY_UNTIL_CLOSE
            return False
        lengths = {value for name, value in headers if name == b"content-length"}
        if lengths:
            if len(lengths) > 1:
                raise HttpProtocolError("conflicting Content-Length headers")
            raw = lengths.pop()
            if not raw.isdigit():
                raise HttpProtocolError(f"invalid Content-Length {raw[:40]!r}")
            self._remaining = int(raw)
            if self._remaining == 0:
                return True
            self._state = _BODY_LENGTH
            return False
        self._keep_alive = False
        self._state = _BODY_UNTIL_CLOSE
        return False

    def _finish(self, body: bytes = b"") -> Response:
        response = Response(self._status, self._headers, body, self._keep_alive)
        self._state = _HEAD
        self._remaining = 0
        return response


def _status_line(line: bytes) -> tuple[bytes, int]:
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise HttpProtocolError(f"malformed status line {line[:80]!r}")
    return version, int(code)


def _chunk_size(line: bytes) -> int:
    digits = line.partition(b";")[0].strip()
    if not digits or len(digits) > _MAX_CHUNK_SIZE_DIGITS or digits.translate(None, _HEX_DIGITS):
        raise HttpProtocolError(f"malformed chunk size line {line[:80]!r}")
    return int(digits, 16)


def _last(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found
