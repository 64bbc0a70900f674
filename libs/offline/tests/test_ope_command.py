"""``cineamate ope`` end to end on small generated logs: the results file, the table, and
clear failures for targets that do not fit the log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from cineamate.cli.main import main

ROUNDS, N_ACTIONS = 3_000, 4
FloatArray = npt.NDArray[np.float64]


def _write_log(folder: Path, positions: bool = False) -> tuple[Path, FloatArray, float]:
    """A uniform-logging log (default_rng(3)) with mapped column names, a target policy that
    prefers action 2 for "young" users and action 0 otherwise, and the target's true value."""
    rng = np.random.default_rng(3)
    young = rng.random(ROUNDS) < 0.5
    actions = rng.integers(N_ACTIONS, size=ROUNDS)
    reward_prob = np.where(young[:, None], [0.1, 0.2, 0.6, 0.3], [0.5, 0.1, 0.2, 0.2])
    rewards = (rng.random(ROUNDS) < reward_prob[np.arange(ROUNDS), actions]).astype(int)
    preferred = np.where(young[:, None], [0.1, 0.1, 0.7, 0.1], [0.7, 0.1, 0.1, 0.1])
    columns: dict[str, object] = {
        "ts": np.arange(ROUNDS) * 60,
        "item": actions,
        "clicked": rewards,
        "p": np.full(ROUNDS, 1 / N_ACTIONS),
        "segment": np.where(young, "young", "old"),
    }
    target = preferred
    if positions:
        columns["slot"] = rng.choice([1, 2], size=ROUNDS)  # dense ranks 0 and 1
        target = np.repeat(preferred[:, :, None], 2, axis=2)
    path = folder / ("log.parquet" if positions else "log.csv")
    if positions:
        pq.write_table(pa.table(columns), path)
    else:
        pa_csv.write_csv(pa.table(columns), path)
    true_value = float((preferred * reward_prob).sum(axis=1).mean())
    return path, target, true_value


def _run(folder: Path, log: Path, target: npt.NDArray[np.generic] | None, *extra: str) -> int:
    """Run the command with the log's column names; ``target`` None names a missing file."""
    target_path = folder / ("target.npy" if target is not None else "no.npy")
    if target is not None:
        np.save(target_path, target)
    return main(
        [
            "ope",
            "--log",
            str(log),
            "--target",
            str(target_path),
            "--out",
            str(folder / "out"),
            "--time-col",
            "ts",
            "--action-col",
            "item",
            "--reward-col",
            "clicked",
            "--propensity-col",
            "p",
            "--context-cols",
            "segment",
            *extra,
        ]
    )


@pytest.mark.parametrize("positions", [False, True], ids=["csv", "parquet_with_positions"])
def test_ope_writes_every_estimator_near_the_true_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], positions: bool
) -> None:
    log, target, true_value = _write_log(tmp_path, positions)
    extra = ("--position-col", "slot") if positions else ()
    assert _run(tmp_path, log, target, "--folds", "3", "--seed", "1", *extra) == 0

    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_rounds"] == ROUNDS and results["n_actions"] == N_ACTIONS
    assert results["n_positions"] == (2 if positions else None)
    assert results["log"] == str(log) and results["level"] == 0.95
    assert 0 < results["effective_sample_size"] < ROUNDS
    assert results["reward_model"]["model"] == "smoothed_means"
    assert results["reward_model"]["folds"] == 3 and results["reward_model"]["seed"] == 1
    assert results["reward_model"]["contexts"] == {"segment": "2 categories"}
    assert set(results["estimators"]) == {"dm", "ips", "snips", "dr"}
    for estimate in results["estimators"].values():
        assert estimate["ci_low"] < estimate["value"] < estimate["ci_high"]
        # a loose sanity bound: four half-widths
        assert abs(estimate["value"] - true_value) < 4 * (estimate["ci_high"] - estimate["value"])
    table = capsys.readouterr().out
    assert "DR" in table and "95% interval" in table and "results.json" in table


def _failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: npt.NDArray[np.generic], *extra: str
) -> str:
    log, _, _ = _write_log(tmp_path)
    assert _run(tmp_path, log, target, *extra) == 1
    return capsys.readouterr().err


UNIFORM = np.full((ROUNDS, N_ACTIONS), 1 / N_ACTIONS)
ROW = np.arange(ROUNDS)[:, None]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (UNIFORM[:-1], f"target has {ROUNDS - 1} rows but the log has {ROUNDS} rounds"),
        (UNIFORM[:, :3] * 4 / 3, "target has 3 actions but the log's action ids go up to 3"),
        (UNIFORM[:, :, None], "with positions, but the log has no position column"),
        (UNIFORM[:, 0], "target has shape (3000,); expected (rounds, actions)"),
        (np.where(ROW == 7, 0.3, UNIFORM), "target row 7 sums to 1.2 over actions, not 1"),
        (np.where(ROW == 9, [-0.5, 1, 0.25, 0.25], UNIFORM), "target row 9 has a negative"),
        (np.where(ROW == 4, np.nan, UNIFORM), "target row 4 has a negative or non-finite"),
    ],
    ids=["rows", "actions", "positions", "one_dimensional", "row_sum", "negative", "nan"],
)
def test_targets_that_do_not_fit_the_log_fail_naming_the_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: FloatArray, message: str
) -> None:
    assert message in _failure(tmp_path, capsys, target)


def test_a_log_with_positions_needs_a_target_with_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, target, _ = _write_log(tmp_path, positions=True)
    assert _run(tmp_path, log, target[:, :, 0], "--position-col", "slot") == 1
    assert "the log has 2 positions; expected (rounds, actions, positions)" in (
        capsys.readouterr().err
    )


def test_a_target_may_cover_actions_the_log_never_shows(tmp_path: Path) -> None:
    log, target, _ = _write_log(tmp_path)
    wider = np.hstack([target * 0.5, np.full((ROUNDS, 2), 0.25)])
    assert _run(tmp_path, log, wider) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_actions"] == N_ACTIONS + 2


def test_missing_propensities_are_an_error_for_ips_snips_and_dr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "IPS, SNIPS and DR need the logging propensities" in _failure(
        tmp_path, capsys, UNIFORM, "--propensity-col", "propensity"
    )


def test_an_unreadable_target_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, _, _ = _write_log(tmp_path)
    assert _run(tmp_path, log, None) == 1
    assert "no.npy does not exist" in capsys.readouterr().err
    (tmp_path / "target.npy").write_bytes(b"not numpy")
    assert _run(tmp_path, log, None, "--target", str(tmp_path / "target.npy")) == 1
    assert "cannot be read as a NumPy array" in capsys.readouterr().err
