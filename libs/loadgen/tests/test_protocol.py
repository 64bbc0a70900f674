"""The HTTP/1.1 framing of responses and requests, fed byte by byte and all at once."""

from __future__ import annotations

import pytest

from cineamate.loadgen import HttpProtocolError, Response, ResponseParser, format_get

CONTENT_LENGTH = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"items": []}'
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n"
    b"7\r\n, chunk\r\n"
    b"A\r\ned world!\n\r\n"
    b"0\r\nX-Checksum: 42\r\n\r\n"
)


def _parse_all(data: bytes, *, step: int | None = None, eof: bool = False) -> list[Response]:
    parser = ResponseParser()
    responses = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        parser.feed(piece)
        while (response := parser.next_response()) is not None:
            responses.append(response)
    if eof:
        parser.feed_eof()
        while (response := parser.next_response()) is not None:
            responses.append(response)
    return responses


@pytest.mark.parametrize("step", [None, 1, 7])
def test_content_length_body_is_framed_by_its_length(step: int | None) -> None:
    (response,) = _parse_all(CONTENT_LENGTH, step=step)
    assert response.status == 200
    assert response.body == b'{"items": []}'
    assert response.header(b"content-type") == b"application/json"
    assert response.keep_alive


@pytest.mark.parametrize("step", [None, 1, 3])
def test_chunked_body_joins_chunks_and_skips_extensions_and_trailers(step: int | None) -> None:
    (response,) = _parse_all(CHUNKED, step=step)
    assert response.body == b"hello, chunked world!\n"
    assert response.keep_alive


def test_keep_alive_connection_carries_responses_back_to_back() -> None:
    responses = _parse_all(CONTENT_LENGTH + CHUNKED + CONTENT_LENGTH, step=5)
    assert [r.body for r in responses] == [
        b'{"items": []}',
        b"hello, chunked world!\n",
        b'{"items": []}',
    ]


def test_body_without_length_ends_with_the_connection() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    assert _parse_all(data) == []
    (response,) = _parse_all(data, eof=True)
    assert response.body == b"until the end"
    assert not response.keep_alive


def test_interim_response_is_skipped_and_no_content_has_no_body() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"
    (response,) = _parse_all(data, step=4)
    assert (response.status, response.body) == (204, b"")


def test_connection_close_and_http_1_0_are_not_reused() -> None:
    closing = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert [r.keep_alive for r in _parse_all(closing) + _parse_all(old)] == [False, False]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ],
)
def test_malformed_responses_are_refused(data: bytes) -> None:
    with pytest.raises(HttpProtocolError):
        _parse_all(data)


def test_connection_closed_inside_a_body_is_an_error() -> None:
    with pytest.raises(HttpProtocolError, match="inside a response body"):
        _parse_all(CONTENT_LENGTH[:-3], eof=True)


def test_head_larger_than_the_limit_is_refused() -> None:
    parser = ResponseParser(max_head_bytes=64)
    parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 100)
    with pytest.raises(HttpProtocolError, match="too long"):
        parser.next_response()


def test_get_request_names_host_and_headers() -> None:
    request = format_get("127.0.0.1:8000", "/a?b=c", {"Authorization": "Bearer t"})
    assert request == (
        b"GET /a?b=c HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAuthorization: Bearer t\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("no-slash", {}),
        ("/a b", {}),
        ("/a\r\nX: y", {}),
        ("/", {"X-Injected": "a\r\nB: c"}),
        ("/", {"Bad Name": "v"}),
    ],
)
def test_request_splitting_is_refused(path: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        format_get("127.0.0.1:8000", path, headers)
