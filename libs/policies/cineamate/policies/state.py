"""Sufficient statistics of a Bernoulli bandit: pulls and summed rewards per arm.

One ``ArmState`` per (experiment, variant). It is immutable: ``updated``
returns a new state with the next version, so a cached derived value (a
Thompson threshold, Monte-Carlo propensities) is valid for as long as its
state object lives. Counts add, so states built from different partitions
merge with ``merged``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput

__all__ = ["ArmState", "UnknownArm"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Batches up to this size are added arm by arm rather than through full histograms.
_FEW_UPDATES = 16


class UnknownArm(InvalidInput):
    """An arm id that is not in the state's catalogue."""

    default_code = "invalid.arm"


def _frozen(array: npt.ArrayLike, dtype: type) -> npt.NDArray[Any]:
    result: npt.NDArray[Any] = np.array(array, dtype=dtype)
    result.flags.writeable = False
    return result


@dataclass(frozen=True, eq=False)
class ArmState:
    """Per-arm pulls and successes (sum of rewards in [0, 1]) over a catalogue of arm ids.

    >>> state = ArmState.empty([10, 20, 30])
    >>> state = state.updated([20, 20, 30], [1.0, 0.0, 1.0])
    >>> state.pulls.tolist(), state.successes.tolist(), state.version
    ([0.0, 2.0, 1.0], [0.0, 1.0, 1.0], 1)
    """

    arm_ids: IntArray
    pulls: FloatArray
    successes: FloatArray
    version: int = 0

    def __post_init__(self) -> None:
        ids = _frozen(self.arm_ids, np.int64)
        pulls = _frozen(self.pulls, np.float64)
        successes = _frozen(self.successes, np.float64)
        if ids.ndim != 1 or pulls.shape != ids.shape or successes.shape != ids.shape:
            raise InvalidInput("arm_ids, pulls and successes must be 1-D of equal length")
        # Compared pairwise, not by np.diff, which overflows across the int64 range.
        if ids.size and np.any(ids[1:] <= ids[:-1]):
            raise InvalidInput("arm_ids must be strictly increasing", field="arm_ids")
        if np.any(pulls < 0) or np.any(successes < 0) or np.any(successes > pulls + 1e-9):
            raise InvalidInput("counts must satisfy 0 <= successes <= pulls", field="successes")
        object.__setattr__(self, "arm_ids", ids)
        object.__setattr__(self, "pulls", pulls)
        object.__setattr__(self, "successes", successes)

    @classmethod
    def empty(cls, arm_ids: npt.ArrayLike) -> ArmState:
        """A state with no observations over the given arms (sorted, duplicates refused)."""
        ids = np.asarray(arm_ids, dtype=np.int64)
        order = np.sort(ids)
        if order.size != np.unique(order).size:
            raise InvalidInput("arm ids must be distinct", field="arm_ids")
        zeros = np.zeros(order.size)
        return cls(order, zeros, zeros.copy(), 0)

    @property
    def n_arms(self) -> int:
        return int(self.arm_ids.size)

    @property
    def total_pulls(self) -> float:
        return float(self.pulls.sum())

    def means(self) -> FloatArray:
        """Empirical mean reward per arm (0 for unplayed arms)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.pulls > 0, self.successes / self.pulls, 0.0)

    def lookup(self, arm_ids: npt.ArrayLike) -> IntArray:
        """Position of each arm id in the state's arrays, -1 where the id is unknown."""
        return self._lookup().positions(_as_ids(arm_ids))

    def index_of(self, arm_ids: npt.ArrayLike) -> IntArray:
        """Positions of ``arm_ids`` in the state; UnknownArm names the first unknown id."""
        ids = _as_ids(arm_ids)
        positions = self._lookup().positions(ids)
        unknown = positions < 0
        if unknown.any():
            first = int(ids[unknown][0])
            raise UnknownArm(f"arm {first} is not in the catalogue", field="item_id")
        return positions

    def _lookup(self) -> _ArmLookup:
        lookup: _ArmLookup | None = self.__dict__.get("_arm_lookup")
        if lookup is None:
            lookup = _ArmLookup(self.arm_ids)
            object.__setattr__(self, "_arm_lookup", lookup)
        return lookup

    def _successor(self, pulls: FloatArray, successes: FloatArray, version: int) -> ArmState:
        """A state over the same catalogue; the counts are valid by construction."""
        pulls.flags.writeable = False
        successes.flags.writeable = False
        successor = object.__new__(ArmState)
        for name, value in (
            ("arm_ids", self.arm_ids),
            ("pulls", pulls),
            ("successes", successes),
            ("version", version),
            ("_arm_lookup", self._lookup()),
        ):
            object.__setattr__(successor, name, value)
        return successor

    def updated(self, arm_ids: npt.ArrayLike, rewards: npt.ArrayLike) -> ArmState:
        """A new state with a batch of (arm, reward) observations added; order does not matter."""
        positions = self.index_of(arm_ids)
        values = np.atleast_1d(np.asarray(rewards, dtype=np.float64))
        if values.shape != positions.shape:
            raise InvalidInput("arm_ids and rewards must have the same length", field="rewards")
        if positions.size <= _FEW_UPDATES:
            return self._with_few(positions.tolist(), values.tolist())
        if values.size and (np.min(values) < 0.0 or np.max(values) > 1.0 or np.isnan(values).any()):
            raise InvalidInput("rewards must lie in [0, 1]", field="reward")
        if not np.all((values == 0.0) | (values == 1.0)):
            # Float sums depend on the order of the terms; clicks (0 or 1) add exactly,
            # anything else is summed in a canonical order so replays are bit-identical.
            order = np.lexsort((values, positions))
            positions, values = positions[order], values[order]
        pulls = self.pulls + np.bincount(positions, minlength=self.n_arms)
        successes = self.successes + np.bincount(positions, weights=values, minlength=self.n_arms)
        return self._successor(pulls, successes, self.version + 1)

    def _with_few(self, positions: list[int], values: list[float]) -> ArmState:
        """``updated`` for a handful of observations (one per step in a replay): added in
        place on copies, in the same canonical order, without full-length histograms."""
        if not all(0.0 <= value <= 1.0 for value in values):  # NaN fails too
            raise InvalidInput("rewards must lie in [0, 1]", field="reward")
        added: dict[int, list[float]] = {}
        for position, value in sorted(zip(positions, values, strict=True)):
            added.setdefault(position, [0.0, 0.0])
            added[position][0] += 1.0
            added[position][1] += value
        pulls, successes = self.pulls.copy(), self.successes.copy()
        # Per arm, the batch's sum is added once, as the histogram path adds it.
        for position, (count, total) in added.items():
            pulls[position] += count
            successes[position] += total
        return self._successor(pulls, successes, self.version + 1)

    def merged(self, other: ArmState) -> ArmState:
        """Counts of both states added (same catalogue), with the larger version plus one."""
        if not np.array_equal(self.arm_ids, other.arm_ids):
            raise InvalidInput("states cover different catalogues", field="arm_ids")
        return self._successor(
            self.pulls + other.pulls,
            self.successes + other.successes,
            max(self.version, other.version) + 1,
        )

    def to_hash(self) -> dict[str, bytes]:
        """Lossless Redis-hash form: little-endian arrays and the version."""
        return {
            "arm_ids": self.arm_ids.astype("<i8").tobytes(),
            "pulls": self.pulls.astype("<f8").tobytes(),
            "successes": self.successes.astype("<f8").tobytes(),
            "version": str(self.version).encode(),
        }

    @classmethod
    def from_hash(cls, fields: Mapping[Any, bytes]) -> ArmState:
        """Inverse of ``to_hash`` (keys may be bytes or str, as Redis clients return them)."""
        by_name = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
        try:
            return cls(
                np.frombuffer(by_name["arm_ids"], dtype="<i8"),
                np.frombuffer(by_name["pulls"], dtype="<f8"),
                np.frombuffer(by_name["successes"], dtype="<f8"),
                int(by_name["version"]),
            )
        except KeyError as exc:
            raise InvalidInput(f"state hash lacks field {exc.args[0]}") from exc


def _as_ids(arm_ids: npt.ArrayLike) -> IntArray:
    """Arm ids as a 1-D int64 array; fractional ids are refused rather than truncated."""
    raw = np.atleast_1d(np.asarray(arm_ids))
    if raw.dtype.kind == "f" and not np.all(np.floor(raw) == raw):
        raise InvalidInput("arm ids must be integers", field="item_id")
    if raw.dtype.kind not in "iuf" and raw.size:
        raise InvalidInput("arm ids must be integers", field="item_id")
    return raw.astype(np.int64, copy=False)


class _ArmLookup:
    """Arm id -> position: a dense table when ids are compact (MovieLens), else binary search."""

    _DENSE_LIMIT = 50_000_000

    def __init__(self, arm_ids: IntArray) -> None:
        self._arm_ids = arm_ids
        self._table: IntArray | None = None
        if arm_ids.size:
            self._low = int(arm_ids[0])
            span = int(arm_ids[-1]) - self._low + 1
            if span <= max(16 * arm_ids.size, 1_000_000) and span <= self._DENSE_LIMIT:
                table = np.full(span, -1, dtype=np.int64)
                table[arm_ids - self._low] = np.arange(arm_ids.size)
                self._table = table

    def positions(self, ids: IntArray) -> IntArray:
        """Position of each id, -1 where the id is unknown."""
        if self._arm_ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        if self._table is not None:
            offsets = ids - self._low
            inside = (offsets >= 0) & (offsets < self._table.size)
            return np.where(inside, self._table[np.where(inside, offsets, 0)], -1)
        found = np.minimum(np.searchsorted(self._arm_ids, ids), self._arm_ids.size - 1)
        return np.where(self._arm_ids[found] == ids, found, -1).astype(np.int64)
