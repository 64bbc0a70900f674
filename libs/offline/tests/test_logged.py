"""Reading logged bandit feedback: CSV and Parquet, mapped column names, dense positions, and
each bad input rejected with its column and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cineamate.common.errors import InvalidInput
from cineamate.offline.logged import ColumnMap, read_logged

MAPPED = ColumnMap(
    time="ts",
    action="item",
    position="slot",
    reward="click",
    propensity="p_log",
    context=("age", "gender"),
)
ROWS: dict[str, list[object]] = {
    "ts": [30, 10, 20, 40],
    "item": [2, 0, 5, 2],
    "slot": [3, 7, 3, 11],
    "click": [1.0, 0.0, 0.0, 1.0],
    "p_log": [0.5, 0.25, 1.0, 0.1],
    "age": [25.0, None, 40.0, 31.0],
    "gender": ["F", "M", "F", "M"],
    "unused": ["a", "b", "c", "d"],
}


def _write_csv(path: Path, rows: dict[str, list[object]]) -> Path:
    lines = [",".join(rows)]
    for values in zip(*rows.values(), strict=True):
        lines.append(",".join("" if v is None else str(v) for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_reads_mapped_columns_in_file_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"log{suffix}"
    if suffix == ".csv":
        _write_csv(path, ROWS)
    else:
        pq.write_table(pa.table(ROWS), path)

    log = read_logged(path, MAPPED)

    assert log.times.tolist() == [30, 10, 20, 40]
    assert log.actions.dtype == np.int64 and log.actions.tolist() == [2, 0, 5, 2]
    assert log.n_actions == 6 and log.n_rounds == 4
    assert log.positions is not None and log.positions.tolist() == [0, 1, 0, 2]
    assert log.n_positions == 3
    assert log.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert log.propensities is not None and log.propensities.tolist() == [0.5, 0.25, 1.0, 0.1]
    assert set(log.contexts) == {"age", "gender"}
    assert np.isnan(log.contexts["age"][1]) and log.contexts["age"][3] == 31.0
    assert log.contexts["gender"].tolist() == ["F", "M", "F", "M"]


def test_position_and_propensity_are_optional(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "log.csv", {"time": [1, 2], "action": [0, 1], "reward": [1, 0]})
    log = read_logged(path)
    assert log.positions is None and log.propensities is None and log.n_positions == 1
    assert log.contexts == {}


def test_timestamps_become_seconds_since_the_epoch(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "log.csv",
        {
            "time": ["2000-01-01 00:00:00", "2000-01-01 00:00:01.5"],
            "action": [0, 0],
            "reward": [0, 1],
        },
    )
    assert read_logged(path).times.tolist() == [946684800.0, 946684801.5]


def test_integral_float_and_text_action_ids_are_accepted(tmp_path: Path) -> None:
    floats = _write_csv(
        tmp_path / "f.csv", {"time": [1, 2], "action": [1.0, 3.0], "reward": [0, 1]}
    )
    assert read_logged(floats).actions.tolist() == [1, 3]
    text = tmp_path / "t.parquet"
    pq.write_table(pa.table({"time": [1, 2], "action": ["4", " 0"], "reward": [0, 1]}), text)
    assert read_logged(text).actions.tolist() == [4, 0]


def _bad(**changes: list[object]) -> dict[str, list[object]]:
    rows: dict[str, list[object]] = {
        "time": [1, 2, 3],
        "action": [0, 1, 2],
        "reward": [1, 0, 1],
        "propensity": [0.5] * 3,
    }
    rows.update(changes)
    return rows


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        (_bad(), ColumnMap(reward="click"), "has no column 'click'"),
        (_bad(), ColumnMap(context=("age",)), "has no column 'age'"),
        (_bad(), ColumnMap(position="slot"), "has no column 'slot'"),
        (_bad(), ColumnMap(propensity="p_log"), "has no column 'p_log'"),
        (_bad(action=[0, 1.5, 2]), ColumnMap(), "column 'action' at row 1: 1.5 is not an integer"),
        (_bad(action=[0, 1, "x"]), ColumnMap(), "column 'action' at row 2: 'x' is not an integer"),
        (_bad(action=[0, -1, 2]), ColumnMap(), "column 'action' at row 1: -1 must be an action id"),
        (_bad(action=[0, None, 2]), ColumnMap(), "column 'action' has no value at row 1"),
        (_bad(propensity=[0.5, 0.5, 0]), ColumnMap(), "'propensity' at row 2: 0.0 must be in"),
        (_bad(propensity=[1.2, 0.5, 1]), ColumnMap(), "'propensity' at row 0: 1.2 must be in"),
        (_bad(reward=[1, None, 0]), ColumnMap(), "column 'reward' has no value at row 1"),
        (_bad(reward=["a", "b", "c"]), ColumnMap(), "column 'reward' must be numeric"),
        (_bad(time=[1, "x", 3]), ColumnMap(), "column 'time' must be numeric"),
    ],
)
def test_bad_input_names_column_and_row(
    tmp_path: Path, rows: dict[str, list[object]], columns: ColumnMap, message: str
) -> None:
    path = _write_csv(tmp_path / "log.csv", rows)
    with pytest.raises(InvalidInput, match=message):
        read_logged(path, columns)


def test_unreadable_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        read_logged(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match=r"expected a \.csv or \.parquet"):
        read_logged(tmp_path / "log.json")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInput, match="cannot be read"):
        read_logged(tmp_path / "broken.parquet")
    (tmp_path / "empty.csv").write_text("time,action,reward\n")
    with pytest.raises(InvalidInput, match="has no rows"):
        read_logged(tmp_path / "empty.csv")


def test_nan_reward_is_rejected_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table(_bad(reward=[1.0, 0.0, float("nan")])), path)
    with pytest.raises(InvalidInput, match="column 'reward' at row 2: nan is not a finite number"):
        read_logged(path)
