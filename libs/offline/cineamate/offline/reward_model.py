"""The reward model ``q_hat(x, a)`` behind the direct method (DM) and doubly robust (DR)
estimates, fitted on a log with K-fold cross-fitting.

The model is a two-level hierarchy of smoothed means, chosen because it is fast
on millions of rounds (a handful of ``bincount`` passes), has no tuning, and is
plain about what it knows:

    global mean            m0 = mean reward
    (action, position)     m1(a, p)    = (S_ap  + k1 m0)      / (n_ap  + k1)
    (action, position,     q_hat(a, p, c) = (S_apc + k2 m1(a, p)) / (n_apc + k2)
     context cell)

``S`` and ``n`` are reward sums and counts. A context cell is one combination of
the context columns' values: categorical columns (text, or numbers with at most
``bins`` distinct values) by value, numeric columns by quantile bin (``bins``
bins, missing values in a bin of their own). An unseen cell backs off to its
(action, position) mean, an unseen action to the global mean. The prior
strengths ``k = sigma^2 / tau^2`` are set by empirical Bayes: the within-group
variance ``sigma^2`` and the between-group variance ``tau^2`` are moment
estimates (nested one-way ANOVA) on the training rounds, clipped to [1e-6, 1e6].

Cross-fitting: rounds are split into K folds at random (seeded); every round is
predicted by the model fitted on the other K-1 folds, so a round's own reward
never enters its prediction. Without position or context columns the hierarchy
loses those levels.

The predictions for every action are produced in row blocks (at most
``BLOCK_ELEMENTS`` values at a time), so the direct method's
``sum_a pi(a | x_i) q_hat(x_i, a)`` never holds a (rounds, actions) matrix.

    >>> import numpy as np
    >>> from cineamate.offline.logged import LoggedFeedback
    >>> log = LoggedFeedback(
    ...     times=np.arange(6), actions=np.array([0, 1, 0, 1, 0, 1]), positions=None,
    ...     rewards=np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]), propensities=None, n_actions=2)
    >>> model = cross_fit(log, folds=2, seed=0)
    >>> model.predictions(0, 2).shape
    (2, 2)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cineamate.common.errors import InvalidInput
from cineamate.offline.logged import LoggedFeedback

__all__ = [
    "BLOCK_ELEMENTS",
    "DEFAULT_BINS",
    "DEFAULT_FOLDS",
    "CrossFittedRewardModel",
    "KnownRewardModel",
    "RewardModel",
    "cross_fit",
    "row_blocks",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_FOLDS = 5
DEFAULT_BINS = 10
BLOCK_ELEMENTS = 4_000_000
# Up to this many values (folds x positions x cells x actions), predictions come from one
# dense table; beyond it, from the (action, position) means plus the observed cells' offsets.
TABLE_ELEMENTS = 25_000_000
_MIN_STRENGTH, _MAX_STRENGTH = 1e-6, 1e6
# Used when the data cannot tell the variances apart (one child per parent, one round per group).
_NEUTRAL_STRENGTH = 1.0


class RewardModel(ABC):
    """Predictions ``q_hat(x_i, a, p_i)`` for every round i and action a, at the logged position.

    Subclasses give a block of rows; the rest (the logged action's prediction, the
    direct method's value of a target) is computed here block by block.
    """

    def __init__(self, actions: IntArray, positions: IntArray | None, n_actions: int) -> None:
        self.actions = actions
        self.positions = positions
        self.n_actions = n_actions

    @property
    def n_rounds(self) -> int:
        return int(self.actions.size)

    @abstractmethod
    def predictions(self, start: int, stop: int) -> FloatArray:
        """``q_hat`` for rounds ``start:stop`` and every action: shape (stop - start, actions)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the model is, for the results file."""

    def logged_prediction(self) -> FloatArray:
        """``q_hat(x_i, a_i, p_i)`` per round."""
        out = np.empty(self.n_rounds)
        for start, stop in row_blocks(self.n_rounds, self.n_actions):
            block = self.predictions(start, stop)
            out[start:stop] = block[np.arange(stop - start), self.actions[start:stop]]
        return out

    def direct(self, target: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """``sum_a target[i, a(, p_i)] q_hat(x_i, a, p_i)`` per round, read block by block.

        ``target`` has shape (rounds, actions) or (rounds, actions, positions) and may be
        a memory map; it is assumed checked (see ``cineamate.offline.ope``).
        """
        out = np.empty(self.n_rounds)
        per_row = max(self.n_actions, int(np.prod(target.shape[1:])))
        for start, stop in row_blocks(self.n_rounds, per_row):
            probabilities = np.asarray(target[start:stop], dtype=np.float64)
            if probabilities.ndim == 3:
                if self.positions is None:
                    raise InvalidInput("a target with positions needs a log with positions")
                rows = np.arange(stop - start)
                probabilities = probabilities[rows, :, self.positions[start:stop]]
            out[start:stop] = np.einsum("ba,ba->b", probabilities, self.predictions(start, stop))
        return out


def row_blocks(n_rounds: int, values_per_row: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges holding at most ``BLOCK_ELEMENTS`` values each."""
    rows = max(1, BLOCK_ELEMENTS // max(1, values_per_row))
    for start in range(0, n_rounds, rows):
        yield start, min(start + rows, n_rounds)


class KnownRewardModel(RewardModel):
    """A given ``q(x_i, a, p_i)`` per round and action, such as a simulation's true model.

    >>> import numpy as np
    >>> model = KnownRewardModel(np.array([[0.1, 0.9]]), actions=np.array([1]))
    >>> model.logged_prediction().tolist()
    [0.9]
    """

    def __init__(
        self, values: FloatArray, actions: IntArray, positions: IntArray | None = None
    ) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != actions.size:
            raise InvalidInput(
                f"values must have shape (rounds, actions) = ({actions.size}, ...), "
                f"got {values.shape}",
                field="values",
            )
        super().__init__(actions, positions, values.shape[1])
        self.values = values

    def predictions(self, start: int, stop: int) -> FloatArray:
        return self.values[start:stop]

    def logged_prediction(self) -> FloatArray:
        return self.values[np.arange(self.n_rounds), self.actions]

    def describe(self) -> dict[str, Any]:
        return {"model": "known", "description": "given predictions per round and action"}


@dataclass(frozen=True)
class _Design:
    """Each round's groups: (action, position) ``pair``, context ``cell``, fitted ``group``."""

    pairs: IntArray
    cells: IntArray
    n_cells: int
    groups: IntArray | None  # index into the observed (pair, cell) keys; None without contexts
    key_pairs: IntArray  # per key: its (action, position) pair
    key_cells: IntArray  # per key: its context cell
    context_note: dict[str, str]


class CrossFittedRewardModel(RewardModel):
    """The smoothed-means model of the module docstring, fitted once per fold."""

    def __init__(
        self,
        logged: LoggedFeedback,
        design: _Design,
        folds: IntArray,
        n_folds: int,
        n_actions: int,
        seed: int,
        bins: int,
    ) -> None:
        super().__init__(logged.actions, logged.positions, n_actions)
        self._design = design
        self._folds = folds
        self._n_positions = logged.n_positions
        self._note = {"folds": n_folds, "seed": seed, "bins": bins}
        self._pair_means, self._key_deltas, self._strengths = _fit_folds(
            logged.rewards, design, folds, n_folds, n_actions * logged.n_positions
        )
        # a slot cell is a (position, context cell); keys sorted by it, so that one round's
        # keys are one contiguous slice
        slot_cells = (design.key_pairs % self._n_positions) * design.n_cells + design.key_cells
        self._key_order = np.argsort(slot_cells, kind="stable")
        self._sorted_slot_cells = slot_cells[self._key_order]
        self._table = self._dense_table(slot_cells)

    def _dense_table(self, key_slot_cells: IntArray) -> FloatArray | None:
        """``q_hat`` per (fold, slot cell, action), when it is small enough to hold."""
        n_folds, n_cells = self._pair_means.shape[0], self._design.n_cells
        if n_folds * self._n_positions * n_cells * self.n_actions > TABLE_ELEMENTS:
            return None
        means = self._pair_means.reshape(n_folds, self.n_actions, self._n_positions)
        table = np.repeat(means.transpose(0, 2, 1)[:, :, None, :], n_cells, axis=2)
        table = table.reshape(n_folds, self._n_positions * n_cells, self.n_actions)
        if self._key_deltas is not None:
            key_actions = self._design.key_pairs // self._n_positions
            table[:, key_slot_cells, key_actions] += self._key_deltas
        return table

    def predictions(self, start: int, stop: int) -> FloatArray:
        folds = self._folds[start:stop]
        positions = np.zeros_like(folds) if self.positions is None else self.positions[start:stop]
        slot_cells = positions * self._design.n_cells + self._design.cells[start:stop]
        if self._table is not None:
            block: FloatArray = self._table[folds, slot_cells]
            return block
        means = self._pair_means.reshape(self._pair_means.shape[0], -1, self._n_positions)
        block = means[folds[:, None], np.arange(self.n_actions)[None, :], positions[:, None]]
        if self._key_deltas is None:
            return block
        first = np.searchsorted(self._sorted_slot_cells, slot_cells, side="left")
        counts = np.searchsorted(self._sorted_slot_cells, slot_cells, side="right") - first
        rows = np.repeat(np.arange(stop - start), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        keys = self._key_order[np.repeat(first, counts) + offsets]
        actions = self._design.key_pairs[keys] // self._n_positions
        block[rows, actions] += self._key_deltas[folds[rows], keys]
        return block

    def logged_prediction(self) -> FloatArray:
        prediction = self._pair_means[self._folds, self._design.pairs]
        if self._key_deltas is not None and self._design.groups is not None:
            prediction = prediction + self._key_deltas[self._folds, self._design.groups]
        return prediction

    def describe(self) -> dict[str, Any]:
        coarse = "(action, position)" if self.positions is not None else "(action)"
        fine = coarse[:-1] + ", context cell)" if self._key_deltas is not None else coarse
        backoff = f"backing off to {coarse} and" if fine != coarse else "backing off to"
        return {
            "model": "smoothed_means",
            "description": (
                f"empirical-Bayes smoothed mean reward per {fine}, {backoff} the global mean; "
                f"{self._note['folds']}-fold cross-fitted"
            ),
            **self._note,
            "contexts": self._design.context_note,
            "context_cells": self._design.n_cells,
            "prior_strength": {
                name: float(np.mean(values)) for name, values in self._strengths.items()
            },
        }


def cross_fit(
    logged: LoggedFeedback,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    bins: int = DEFAULT_BINS,
    n_actions: int | None = None,
) -> CrossFittedRewardModel:
    """Fit the smoothed-means model with ``folds``-fold cross-fitting on the log's contexts.

    ``n_actions`` (default: the log's) may exceed the log's when a target covers actions
    that were never logged; they are predicted at the global mean.
    """
    n_actions = logged.n_actions if n_actions is None else n_actions
    if n_actions < logged.n_actions:
        raise InvalidInput(
            f"n_actions {n_actions} is below the log's {logged.n_actions}", field="n_actions"
        )
    if not 2 <= folds <= logged.n_rounds:
        raise InvalidInput(
            f"folds must be between 2 and the number of rounds ({logged.n_rounds}), got {folds}",
            field="folds",
        )
    if bins < 2:
        raise InvalidInput(f"bins must be at least 2, got {bins}", field="bins")
    fold_of_round = np.random.default_rng(seed).permutation(logged.n_rounds) % folds
    design = _design(logged, bins)
    return CrossFittedRewardModel(
        logged, design, fold_of_round.astype(np.int64), folds, n_actions, seed, bins
    )


def _design(logged: LoggedFeedback, bins: int) -> _Design:
    positions = np.zeros_like(logged.actions) if logged.positions is None else logged.positions
    pairs = logged.actions * logged.n_positions + positions
    cells = np.zeros(logged.n_rounds, dtype=np.int64)
    notes: dict[str, str] = {}
    for name, values in logged.contexts.items():
        codes, notes[name] = _context_codes(values, bins)
        cells = np.unique(cells * (int(codes.max()) + 1) + codes, return_inverse=True)[1]
    n_cells = int(cells.max()) + 1
    if not logged.contexts:
        no_keys = np.zeros(0, dtype=np.int64)
        return _Design(pairs, cells, 1, None, no_keys, no_keys, notes)
    keys, groups = np.unique(pairs * n_cells + cells, return_inverse=True)
    return _Design(
        pairs, cells.astype(np.int64), n_cells, groups, keys // n_cells, keys % n_cells, notes
    )


def _context_codes(values: npt.NDArray[Any], bins: int) -> tuple[IntArray, str]:
    """Dense codes of one context column, and how they were made."""
    if values.dtype.kind in "iufb":
        numbers = values.astype(np.float64)
        missing = np.isnan(numbers)
        distinct = np.unique(numbers[~missing])
        if distinct.size <= bins:
            codes = np.searchsorted(distinct, numbers)
            note = f"{distinct.size} values"
        else:
            edges = np.unique(np.quantile(numbers[~missing], np.linspace(0, 1, bins + 1)[1:-1]))
            codes = np.searchsorted(edges, numbers, side="right")
            note = f"{edges.size + 1} quantile bins"
        codes[missing] = codes.max() + 1 if (~missing).any() else 0
        if missing.any():
            note += " and missing"
        return np.unique(codes, return_inverse=True)[1].astype(np.int64), note
    encoded = pc.dictionary_encode(pa.array(values, type=pa.string()), null_encoding="encode")
    codes = np.asarray(encoded.indices.to_numpy(), dtype=np.int64)
    return codes, f"{len(encoded.dictionary)} categories"


def _fit_folds(
    rewards: FloatArray, design: _Design, folds: IntArray, n_folds: int, n_pairs: int
) -> tuple[FloatArray, FloatArray | None, dict[str, list[float]]]:
    """Per fold, the smoothed (action, position) means and the cells' offsets from them."""
    pair_stats = _fold_sums(rewards, design.pairs, folds, n_folds, n_pairs)
    key_stats = None
    if design.groups is not None:
        key_stats = _fold_sums(rewards, design.groups, folds, n_folds, design.key_pairs.size)
    pair_means = np.empty((n_folds, n_pairs))
    key_deltas = None if key_stats is None else np.empty((n_folds, design.key_pairs.size))
    strengths: dict[str, list[float]] = {"action": [], "cell": []}
    for fold in range(n_folds):
        counts, sums, squares = (stat.sum(axis=0) - stat[fold] for stat in pair_stats)
        overall = sums.sum() / counts.sum()
        k1 = _strength(counts, sums, squares, np.zeros(n_pairs, dtype=np.int64))
        pair_means[fold] = (sums + k1 * overall) / (counts + k1)
        strengths["action"].append(k1)
        if key_stats is not None and key_deltas is not None:
            counts, sums, squares = (stat.sum(axis=0) - stat[fold] for stat in key_stats)
            k2 = _strength(counts, sums, squares, design.key_pairs)
            parent = pair_means[fold, design.key_pairs]
            key_deltas[fold] = (sums + k2 * parent) / (counts + k2) - parent
            strengths["cell"].append(k2)
    if key_deltas is None:
        del strengths["cell"]
    return pair_means, key_deltas, strengths


def _fold_sums(
    rewards: FloatArray, groups: IntArray, folds: IntArray, n_folds: int, n_groups: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Counts, reward sums and squared-reward sums per (fold, group)."""
    index = folds * n_groups + groups
    size = n_folds * n_groups
    return tuple(  # type: ignore[return-value]
        np.bincount(index, weights=weights, minlength=size).reshape(n_folds, n_groups)
        for weights in (None, rewards, rewards * rewards)
    )


def _strength(
    counts: FloatArray, sums: FloatArray, squares: FloatArray, parents: IntArray
) -> float:
    """Empirical-Bayes prior strength ``sigma^2 / tau^2`` of groups nested in ``parents``.

    Moment estimates of a nested one-way random-effects model: ``sigma^2`` from the
    within-group sum of squares, ``tau^2 = (MSB - sigma^2) / n0`` with MSB the
    between-group mean square around each parent's mean.
    """
    seen = counts > 0
    n, s, parent = counts[seen], sums[seen], parents[seen]
    total, n_groups = n.sum(), n.size
    n_parents = np.unique(parent).size
    if total <= n_groups or n_groups <= n_parents:
        return _NEUTRAL_STRENGTH
    means = s / n
    within = max(0.0, float((squares[seen] - s * means).sum())) / (total - n_groups)
    parent_totals = np.bincount(parent, weights=n)
    parent_counts = parent_totals[parent]
    parent_means = (np.bincount(parent, weights=s) / np.maximum(parent_totals, 1))[parent]
    between = float((n * (means - parent_means) ** 2).sum()) / (n_groups - n_parents)
    n0 = float(total - (n * n / parent_counts).sum()) / (n_groups - n_parents)
    tau2 = (between - within) / n0
    if tau2 <= 0:
        return _MAX_STRENGTH
    return float(np.clip(within / tau2, _MIN_STRENGTH, _MAX_STRENGTH))
