"""CSV export, one row at a time: constant memory whatever the row count.

A text cell that a spreadsheet would read as a formula (it starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with ``'`` so it
shows as text instead of running.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import orjson

__all__ = ["csv_lines", "neutralise"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """``text`` as a spreadsheet will show it, never evaluate it."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return neutralise(orjson.dumps(value).decode())
    if isinstance(value, str):
        return neutralise(value)
    return str(value)


async def csv_lines(
    columns: list[str], rows: AsyncIterator[Mapping[str, Any]]
) -> AsyncIterator[bytes]:
    """A header line of ``columns``, then one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    yield buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    async for row in rows:
        writer.writerow([_cell(row[column]) for column in columns])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
