"""Logged bandit feedback read from a CSV or Parquet file.

A log has one row per round: when it happened, which action (an integer id
0..n-1) the logging policy took, optionally at which position of a slate, the
reward, the logging policy's probability of that action (its propensity), and
any context columns. Column names are mapped by a :class:`ColumnMap`, so logs
from other systems need no rewriting. Rows stay in file order, because a
target policy's probabilities are aligned with them row by row.

Every check names the column, and for a bad value the row (counted from 0, as
the target's rows are).

    >>> columns = ColumnMap(action="item", context=("age", "gender"))
    >>> columns.reward
    'reward'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from cineamate.common.errors import InvalidInput

__all__ = ["ColumnMap", "LoggedFeedback", "read_logged"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_CSV_SUFFIXES = frozenset({".csv", ".txt"})


@dataclass(frozen=True)
class ColumnMap:
    """Which file column holds each field.

    ``position`` and ``propensity`` are optional: under their default names a
    column that is not in the file gives None; under another name it must exist.
    Set them to None to ignore such a column.
    """

    time: str = "time"
    action: str = "action"
    position: str | None = "position"
    reward: str = "reward"
    propensity: str | None = "propensity"
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoggedFeedback:
    """A log's rounds as aligned numpy arrays, in file order.

    ``positions`` is the dense rank of the position column (its smallest value is
    0); ``contexts`` holds each context column as int64, float64 (nan where
    missing) or object (strings, None where missing).
    """

    times: npt.NDArray[np.float64] | npt.NDArray[np.int64]
    actions: IntArray
    positions: IntArray | None
    rewards: FloatArray
    propensities: FloatArray | None
    contexts: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    n_actions: int = 0

    @property
    def n_rounds(self) -> int:
        return int(self.actions.size)

    @property
    def n_positions(self) -> int:
        """How many distinct positions the log has (1 without a position column)."""
        return 1 if self.positions is None else int(self.positions.max()) + 1


def read_logged(path: Path | str, columns: ColumnMap | None = None) -> LoggedFeedback:
    """Read and check a log; the format is chosen by the suffix (.csv or .parquet)."""
    path = Path(path)
    columns = columns or ColumnMap()
    table = _read_table(path, columns)
    if table.num_rows == 0:
        raise InvalidInput(f"{path} has no rows", field="log")
    actions = _actions(table, columns.action)
    positions = None
    if columns.position is not None and columns.position in table.column_names:
        raw_positions = _numbers(table, columns.position)
        positions = np.unique(raw_positions, return_inverse=True)[1].astype(np.int64)
    propensities = None
    if columns.propensity is not None and columns.propensity in table.column_names:
        propensities = _numbers(table, columns.propensity)
        _reject(
            (propensities <= 0) | (propensities > 1),
            propensities,
            columns.propensity,
            "must be in (0, 1]",
        )
    return LoggedFeedback(
        times=_times(table, columns.time),
        actions=actions,
        positions=positions,
        rewards=_numbers(table, columns.reward),
        propensities=propensities,
        contexts={name: _context(table[name]) for name in columns.context},
        n_actions=int(actions.max()) + 1,
    )


def _read_table(path: Path, columns: ColumnMap) -> pa.Table:
    """The file as an Arrow table, with every required column present."""
    suffix = path.suffix.lower()
    if suffix not in _PARQUET_SUFFIXES | _CSV_SUFFIXES:
        raise InvalidInput(f"{path}: expected a .csv or .parquet file", field="log")
    try:
        table = pq.read_table(path) if suffix in _PARQUET_SUFFIXES else pa_csv.read_csv(path)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} does not exist", field="log") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{path} cannot be read: {exc}", field="log") from exc
    defaults = ColumnMap()
    required = [columns.time, columns.action, columns.reward, *columns.context]
    required += [
        name
        for name, default in (
            (columns.position, defaults.position),
            (columns.propensity, defaults.propensity),
        )
        if name is not None and name != default
    ]
    for name in required:
        if name not in table.column_names:
            present = ", ".join(table.column_names)
            raise InvalidInput(f"{path} has no column {name!r} (it has {present})", field=name)
    return table


def _actions(table: pa.Table, name: str) -> IntArray:
    column = table[name]
    _reject_nulls(column, name)
    if pa.types.is_integer(column.type):
        actions = _ints(column)
    elif pa.types.is_floating(column.type):
        values = _floats(column)
        _reject(
            ~np.isfinite(values) | (values != np.floor(values)), values, name, "is not an integer"
        )
        actions = values.astype(np.int64)
    else:
        text = column.cast(pa.string())
        not_integer = pc.invert(pc.match_substring_regex(text, r"^\s*-?\d+\s*$"))
        _reject(not_integer.to_numpy(), text.to_numpy(), name, "is not an integer")
        actions = _ints(pc.utf8_trim_whitespace(text))
    _reject(actions < 0, actions, name, "must be an action id >= 0")
    return actions


def _numbers(table: pa.Table, name: str) -> FloatArray:
    """A numeric column as float64, every value finite."""
    column = table[name]
    if not (
        pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
        or pa.types.is_boolean(column.type)
    ):
        raise InvalidInput(f"column {name!r} must be numeric, it is {column.type}", field=name)
    _reject_nulls(column, name)
    values = _floats(column)
    _reject(~np.isfinite(values), values, name, "is not a finite number")
    return values


def _times(table: pa.Table, name: str) -> npt.NDArray[np.float64] | npt.NDArray[np.int64]:
    """Integer times stay int64; timestamps become float64 seconds since the epoch."""
    column = table[name]
    if pa.types.is_integer(column.type):
        _reject_nulls(column, name)
        return _ints(column)
    if pa.types.is_timestamp(column.type):
        _reject_nulls(column, name)
        return _floats(column.cast(pa.timestamp("us")).cast(pa.int64())) / 1e6
    return _numbers(table, name)


def _context(column: pa.ChunkedArray) -> npt.NDArray[np.generic]:
    if pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
        return _floats(column) if column.null_count else _ints(column)
    if pa.types.is_floating(column.type):
        return _floats(column)
    strings: npt.NDArray[np.object_] = column.cast(pa.string()).to_numpy(zero_copy_only=False)
    return strings


def _ints(column: pa.ChunkedArray) -> IntArray:
    return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)


def _floats(column: pa.ChunkedArray) -> FloatArray:
    """The column as float64, nan where it has no value."""
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _reject_nulls(column: pa.ChunkedArray, name: str) -> None:
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise InvalidInput(f"column {name!r} has no value at row {row}", field=name)


def _reject(
    bad: npt.NDArray[np.bool_], values: npt.NDArray[np.generic], name: str, why: str
) -> None:
    """Raise for the first row where ``bad`` holds, naming the column, row and value."""
    if bad.any():
        row = int(np.argmax(bad))
        value = values[row].item() if isinstance(values[row], np.generic) else values[row]
        raise InvalidInput(f"column {name!r} at row {row}: {value!r} {why}", field=name)
