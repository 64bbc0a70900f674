"""Log records become one JSON object a line, or a readable line with key=value extras."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cineamate.common.logging import JsonFormatter, TextFormatter


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of the test's own writing to a string, detached from the root logger."""
    logger = logging.getLogger(f"cineamate.tests.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_time_level_service_message_and_extras(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(JsonFormatter("reward"))
    before = datetime.now(UTC)

    logger.warning("joined %d clicks", 12, extra={"topic": "clicks", "partition": 3})

    [line] = _json_lines(stream)
    assert line["level"] == "WARNING"
    assert line["service"] == "reward"
    assert line["msg"] == "joined 12 clicks"
    assert line["logger"] == logger.name
    assert line["topic"] == "clicks"
    assert line["partition"] == 3
    assert isinstance(line["ts"], str)
    written = datetime.fromisoformat(line["ts"])
    assert written.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= written <= datetime.now(UTC) + timedelta(seconds=1)


def test_json_line_leaves_out_record_internals(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(JsonFormatter("policy"))

    logger.info("plain")

    [line] = _json_lines(stream)
    assert set(line) == {"ts", "level", "service", "logger", "msg"}


def test_json_line_drops_uvicorns_colour_copy_of_the_message(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(JsonFormatter("analytics"))

    logger.info(
        "Uvicorn running on %s",
        "http://127.0.0.1:8006",
        extra={"color_message": "\x1b[1m%s\x1b[0m"},
    )

    [line] = _json_lines(stream)
    assert "color_message" not in line
    assert line["msg"] == "Uvicorn running on http://127.0.0.1:8006"


def test_json_exception_stays_on_one_line_with_its_traceback(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(JsonFormatter("decision"))

    try:
        raise ValueError("bad batch")
    except ValueError:
        logger.exception("batch failed")

    assert stream.getvalue().count("\n") == 1
    [line] = _json_lines(stream)
    assert line["level"] == "ERROR"
    assert isinstance(line["exc"], str)
    assert "ValueError: bad batch" in line["exc"]


def test_json_extra_that_is_not_json_is_written_as_text(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(JsonFormatter("guardrails"))

    logger.info("migrations read", extra={"directory": Path("/srv/sql"), "ids": {7}})

    [line] = _json_lines(stream)
    assert line["directory"] == "/srv/sql"
    assert line["ids"] == "{7}"


def test_text_line_has_level_message_and_key_value_extras(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(TextFormatter())

    logger.info(
        "dependency %s connected",
        "postgres",
        extra={"dependency": "postgres", "attempt": 3, "color_message": "\x1b[1m%s\x1b[0m"},
    )

    [line] = stream.getvalue().splitlines()
    assert " INFO " in line
    assert "dependency postgres connected" in line
    assert "dependency=postgres" in line
    assert "attempt=3" in line
    assert "color_message" not in line
    assert "\x1b" not in line


def test_text_line_without_extras_has_no_trailing_pairs(
    stream_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = stream_logger
    handler.setFormatter(TextFormatter())

    logger.error("stopped")

    [line] = stream.getvalue().splitlines()
    assert line.endswith("ERROR   stopped")
    assert "=" not in line
