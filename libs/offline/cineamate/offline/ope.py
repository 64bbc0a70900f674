"""Off-policy evaluation of a target policy on a logged file: the ``cineamate ope`` command.

The target policy is given as its action probabilities on each logged round, a
NumPy array of shape (rounds, actions), or (rounds, actions, positions) when the
log has positions, rows aligned with the log. With positions, a round is the
logged slot: the target's probability of round i is ``target[i, a_i, p_i]``.
The array is memory-mapped and read in row blocks, so it may be larger than
memory.

Steps: read the log, check the target against it, fit the cross-fitted reward
model, compute the importance weights ``target[i, a_i(, p_i)] / propensity_i``,
run DM, IPS, SNIPS and DR, write ``results.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput
from cineamate.offline import estimators
from cineamate.offline.estimators import Estimate
from cineamate.offline.logged import ColumnMap, LoggedFeedback, read_logged
from cineamate.offline.reward_model import DEFAULT_FOLDS, cross_fit, row_blocks

__all__ = [
    "RESULTS_FILE",
    "SUM_TOLERANCE",
    "OpeResult",
    "check_target",
    "evaluate",
    "format_table",
    "load_target",
    "run_ope",
    "write_results",
]

RESULTS_FILE = "results.json"
# How far a row of target probabilities may sum from 1.
SUM_TOLERANCE = 1e-6

FloatArray = npt.NDArray[np.float64]
TargetArray = npt.NDArray[Any]


@dataclass(frozen=True)
class OpeResult:
    """What ``results.json`` holds.

    >>> result = OpeResult(10, 3, None, 4.5, 0.95, {"model": "known"}, {}, {"mean": 1.0})
    >>> result.to_dict()["effective_sample_size"]
    4.5
    """

    n_rounds: int
    n_actions: int
    n_positions: int | None
    effective_sample_size: float
    level: float
    reward_model: dict[str, Any]
    estimators: dict[str, Estimate]
    weights: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values; an undefined figure (nan) becomes None."""
        body = {
            "n_rounds": self.n_rounds,
            "n_actions": self.n_actions,
            "n_positions": self.n_positions,
            "effective_sample_size": self.effective_sample_size,
            "level": self.level,
            "weights": self.weights,
            "reward_model": self.reward_model,
            "estimators": {name: e.to_dict() for name, e in self.estimators.items()},
        }
        cleaned: dict[str, Any] = _without_nan(body)
        return cleaned


def run_ope(
    log: Path,
    columns: ColumnMap,
    target_path: Path,
    out_dir: Path,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    level: float = 0.95,
) -> OpeResult:
    """Read the log and the target, estimate, and write ``out_dir/results.json``."""
    logged = read_logged(log, columns)
    _require_propensities(logged, f"{log} has no propensity column {columns.propensity!r}")
    result = evaluate(logged, load_target(target_path), folds=folds, seed=seed, level=level)
    write_results(result, out_dir, {"log": str(log), "target": str(target_path)})
    return result


def evaluate(
    logged: LoggedFeedback,
    target: TargetArray,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    level: float = 0.95,
) -> OpeResult:
    """DM, IPS, SNIPS and DR of ``target`` on ``logged``, with the reward model's description."""
    propensities = _require_propensities(logged, "the log has no propensities")
    check_target(target, logged)
    weights = _target_on_logged(target, logged) / propensities
    model = cross_fit(logged, folds=folds, seed=seed, n_actions=target.shape[1])
    direct = model.direct(target)
    rewards = logged.rewards
    return OpeResult(
        n_rounds=logged.n_rounds,
        n_actions=int(target.shape[1]),
        n_positions=None if logged.positions is None else logged.n_positions,
        effective_sample_size=estimators.effective_sample_size(weights),
        level=level,
        reward_model=model.describe(),
        estimators={
            "dm": estimators.dm(direct, level),
            "ips": estimators.ips(rewards, weights, level),
            "snips": estimators.snips(rewards, weights, level),
            "dr": estimators.dr(rewards, weights, direct, model.logged_prediction(), level),
        },
        weights={"mean": float(weights.mean()), "max": float(weights.max())},
    )


def _require_propensities(logged: LoggedFeedback, missing: str) -> FloatArray:
    if logged.propensities is None:
        raise InvalidInput(
            f"{missing}: IPS, SNIPS and DR need the logging propensities "
            "(name their column with --propensity-col)",
            field="propensity",
        )
    return logged.propensities


def load_target(path: Path) -> TargetArray:
    """The target probabilities, memory-mapped."""
    if path.suffix.lower() != ".npy":
        raise InvalidInput(f"{path}: the target must be a .npy file", field="target")
    try:
        target: TargetArray = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} does not exist", field="target") from exc
    except (ValueError, OSError) as exc:
        raise InvalidInput(
            f"{path} cannot be read as a NumPy array: {exc}", field="target"
        ) from exc
    if target.dtype.kind not in "fiu":
        raise InvalidInput(f"{path} holds {target.dtype}, not numbers", field="target")
    return target


def check_target(target: TargetArray, logged: LoggedFeedback) -> None:
    """Check the target's shape against the log and that its rows are distributions."""
    expected = (
        "(rounds, actions, positions)" if logged.positions is not None else "(rounds, actions)"
    )
    if target.ndim not in (2, 3):
        raise InvalidInput(f"target has shape {target.shape}; expected {expected}", field="target")
    if target.ndim == 3 and logged.positions is None:
        raise InvalidInput(
            f"target has shape {target.shape}, with positions, but the log has no position "
            "column; expected (rounds, actions)",
            field="target",
        )
    if target.ndim == 2 and logged.positions is not None:
        raise InvalidInput(
            f"target has shape {target.shape} but the log has {logged.n_positions} positions; "
            f"expected {expected}",
            field="target",
        )
    if target.shape[0] != logged.n_rounds:
        raise InvalidInput(
            f"target has {target.shape[0]} rows but the log has {logged.n_rounds} rounds",
            field="target",
        )
    if target.shape[1] < logged.n_actions:
        raise InvalidInput(
            f"target has {target.shape[1]} actions but the log's action ids go up to "
            f"{logged.n_actions - 1}",
            field="target",
        )
    if target.ndim == 3 and target.shape[2] < logged.n_positions:
        raise InvalidInput(
            f"target has {target.shape[2]} positions but the log has {logged.n_positions}",
            field="target",
        )
    _check_distributions(target)


def _check_distributions(target: TargetArray) -> None:
    """Every row (every row and position) is non-negative and sums to 1 over actions."""
    for start, stop in row_blocks(target.shape[0], int(np.prod(target.shape[1:]))):
        block = np.asarray(target[start:stop], dtype=np.float64)
        bad_values = ~np.isfinite(block) | (block < 0)
        if bad_values.any():
            row = start + int(np.argwhere(bad_values)[0][0])
            raise InvalidInput(
                f"target row {row} has a negative or non-finite probability", field="target"
            )
        sums = block.sum(axis=1)
        off = np.abs(sums - 1.0) > SUM_TOLERANCE
        if off.any():
            where = np.argwhere(off)[0]
            position = f" at position {where[1]}" if block.ndim == 3 else ""
            raise InvalidInput(
                f"target row {start + where[0]}{position} sums to {sums[tuple(where)]:.6g} "
                f"over actions, not 1 (tolerance {SUM_TOLERANCE:g})",
                field="target",
            )


def _target_on_logged(target: TargetArray, logged: LoggedFeedback) -> FloatArray:
    """``target[i, a_i(, p_i)]``: the target's probability of each logged action."""
    out = np.empty(logged.n_rounds)
    for start, stop in row_blocks(logged.n_rounds, int(np.prod(target.shape[1:]))):
        block = np.asarray(target[start:stop], dtype=np.float64)
        index: tuple[npt.NDArray[np.int64], ...] = (
            np.arange(stop - start),
            logged.actions[start:stop],
        )
        if logged.positions is not None:
            index += (logged.positions[start:stop],)
        out[start:stop] = block[index]
    return out


def write_results(result: OpeResult, out_dir: Path, inputs: dict[str, str]) -> Path:
    """Write ``results.json`` (the inputs' paths first) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_FILE
    path.write_text(json.dumps({**inputs, **result.to_dict()}, indent=2) + "\n")
    return path


def format_table(result: OpeResult) -> str:
    """A small table of the estimates for the terminal."""
    percent = f"{result.level:.0%}"
    lines = [
        f"rounds {result.n_rounds:,}   effective sample size {result.effective_sample_size:,.1f}",
        f"reward model: {result.reward_model.get('description', result.reward_model['model'])}",
        "",
        f"{'estimator':<10}{'value':>10}   {percent} interval",
    ]
    for name, estimate in result.estimators.items():
        lines.append(
            f"{name.upper():<10}{estimate.value:>10.4f}   "
            f"[{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]"
        )
    return "\n".join(lines)


def _without_nan(value: Any) -> Any:
    """JSON has no nan: undefined figures are written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return value
