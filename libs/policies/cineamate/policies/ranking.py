"""Top-k selection by score with random tie-breaks, and its exact inclusion probabilities.

Every deterministic policy (UCB1, popularity, the greedy part of
epsilon-greedy) ranks arms by a score. Arms strictly above the k-th score are
always in the slate; the tie group at the boundary shares the remaining slots
uniformly, so each of its t arms is in with probability r / t.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["random_subsets", "top_k", "top_k_inclusion", "top_k_inclusion_at", "top_k_many"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def top_k(scores: FloatArray, k: int, rng: np.random.Generator) -> tuple[IntArray, FloatArray]:
    """The k highest-scoring positions, best first (ties in random order), and the probability
    that each of them is in the slate. ``-inf`` marks arms that may not be chosen."""
    n = scores.size
    k = min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    best = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    kth = scores[best].min()
    if kth == -np.inf:
        best = best[scores[best] > -np.inf]
        kth = scores[best].min() if best.size else np.inf
    if best.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    above = best[scores[best] > kth]
    slots = best.size - above.size
    tied = np.flatnonzero(scores == kth)
    chosen_tied = tied if tied.size == slots else rng.choice(tied, slots, replace=False)
    chosen = np.concatenate([above, chosen_tied])
    propensities = np.concatenate([np.ones(above.size), np.full(slots, slots / tied.size)])
    # Best first; equal scores in random order (lexsort sorts by the last key first).
    order = np.lexsort((rng.random(chosen.size), -scores[chosen]))
    return chosen[order].astype(np.int64), propensities[order]


def top_k_inclusion(scores: FloatArray, k: int) -> FloatArray:
    """Probability that each arm is in the slate chosen by ``top_k`` (sums to min(k, #allowed))."""
    allowed = scores > -np.inf
    n_allowed = int(allowed.sum())
    k = min(k, n_allowed)
    inclusion = np.zeros(scores.size)
    if k == 0:
        return inclusion
    # Selecting the k-th from the front is several times faster when most scores tie.
    kth = -np.partition(-scores[allowed], k - 1)[k - 1]
    above = allowed & (scores > kth)
    tied = allowed & (scores == kth)
    inclusion[above] = 1.0
    inclusion[tied] = (k - int(above.sum())) / int(tied.sum())
    return inclusion


def top_k_inclusion_at(scores: FloatArray, k: int, positions: IntArray) -> FloatArray:
    """``top_k_inclusion(scores, k)[positions]`` without computing it for every arm."""
    k = min(k, scores.size)
    if k == 0 or positions.size == 0:
        return np.zeros(positions.size)
    kth = -np.partition(-scores, k - 1)[k - 1]
    picked = scores[positions]
    if kth == -np.inf:
        return np.where(picked > -np.inf, 1.0, 0.0)
    n_above = int(np.count_nonzero(scores > kth))
    n_tied = int(np.count_nonzero(scores == kth))
    return np.where(picked > kth, 1.0, np.where(picked == kth, (k - n_above) / n_tied, 0.0))


def top_k_many(scores: FloatArray, k: int, rng: np.random.Generator, n: int) -> IntArray:
    """``n`` independent draws of ``top_k(scores, k, rng)[0]`` (every score finite or +inf),
    one per row. Only the tie-breaks are random, so the ranking is computed once."""
    k = min(k, scores.size)
    best = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    kth = scores[best].min()
    above = best[scores[best] > kth]
    tied = np.flatnonzero(scores == kth)
    # Best first; equal scores among the sure arms in random order, as top_k orders them.
    keys = rng.random((n, above.size))
    order = np.lexsort((keys, np.broadcast_to(-scores[above], keys.shape)), axis=-1)
    head = above[order]
    tail = tied[random_subsets(rng, n, tied.size, k - above.size)]
    return np.concatenate([head, tail], axis=1).astype(np.int64)


def random_subsets(rng: np.random.Generator, n: int, population: int, size: int) -> IntArray:
    """``n`` rows of ``size`` distinct indices below ``population``, each row a uniformly
    random subset in uniformly random order."""
    if size == 0:
        return np.empty((n, 0), dtype=np.int64)
    if size * size > population:
        keys = rng.random((n, population))
        chosen = np.argpartition(keys, size - 1, axis=1)[:, :size]
        return rng.permuted(chosen, axis=1).astype(np.int64)
    # Draw with replacement and redraw the rows that repeat an index: rare when size^2 is
    # below the population, and rejection keeps every ordered distinct tuple equally likely.
    rows = rng.integers(0, population, size=(n, size))
    while True:
        ordered = np.sort(rows, axis=1)
        repeats = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if repeats.size == 0:
            return rows.astype(np.int64)
        rows[repeats] = rng.integers(0, population, size=(repeats.size, size))
