"""Many Thompson slates from one posterior at once, without a draw per arm per slate.

The replay asks for thousands of slates between two updates of the same state.
With a threshold ``t`` and ``p_i = P(theta_i > t)`` (see ``thompson.py``):

- *head* arms (``p_i >= HEAD_SHARE``) are drawn directly from their Beta posterior
  for every slate: they are likely contenders, and a Beta draw costs a tenth of a
  CDF inversion;
- for each *tail* arm, the number of slates in which it clears ``t`` is
  Binomial(n, p_i) and those slates are a uniform subset of the n; its value in
  each of them is the inverse CDF of a uniform conditioned on clearing ``t``.

Every arm's draw is still an independent Beta draw, so the top k of the head
draws and the tail arms above ``t`` is exactly Thompson's slate whenever at
least k of those values clear ``t`` (a tail arm below ``t`` cannot beat them).
The rare slate where fewer do draws its remaining tail arms below ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = ["ThresholdSplit", "beta_quantile", "draw_slates"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# A Beta draw costs about a tenth of an inversion: drawing an arm every time pays off
# once it clears the threshold in more than about a tenth of the slates.
HEAD_SHARE = 0.1


@dataclass(frozen=True)
class ThresholdSplit:
    """Posterior parameters, a threshold and each arm's CDF there, split into head and tail."""

    alpha: FloatArray
    beta: FloatArray
    threshold: float
    cdf_at_threshold: FloatArray

    @cached_property
    def head(self) -> IntArray:
        return np.flatnonzero(1.0 - self.cdf_at_threshold >= HEAD_SHARE)

    @cached_property
    def tail(self) -> IntArray:
        return np.flatnonzero(1.0 - self.cdf_at_threshold < HEAD_SHARE)


def draw_slates(split: ThresholdSplit, k: int, rng: np.random.Generator, n: int) -> IntArray:
    """Positions of n Thompson slates of k arms (best first), one per row."""
    head, tail = split.head, split.tail
    head_values = rng.beta(split.alpha[head], split.beta[head], size=(n, head.size))
    tail_cdf = split.cdf_at_threshold[tail]
    counts = rng.binomial(n, 1.0 - tail_cdf)
    which = np.repeat(np.arange(tail.size), counts)
    rows = _distinct_rows(rng, n, counts)
    uniforms = tail_cdf[which] + (1.0 - tail_cdf[which]) * rng.random(which.size)
    arms = tail[which]
    tail_values = beta_quantile(split.alpha[arms], split.beta[arms], uniforms)

    # One row per slate: the head draws, then that slate's tail values, -inf padded.
    by_row = np.argsort(rows, kind="stable")
    rows, arms, tail_values = rows[by_row], arms[by_row], tail_values[by_row]
    per_row = np.bincount(rows, minlength=n)
    column = head.size + np.arange(rows.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    width = head.size + int(per_row.max(initial=0))
    values = np.full((n, max(width, k)), -np.inf)
    values[:, : head.size] = head_values
    values[rows, column] = tail_values
    candidates = np.full(values.shape, -1, dtype=np.int64)
    candidates[:, : head.size] = head
    candidates[rows, column] = arms

    best = np.argpartition(-values, k - 1, axis=1)[:, :k]
    best_values = np.take_along_axis(values, best, axis=1)
    order = np.argsort(-best_values, axis=1)
    slates = np.take_along_axis(candidates, np.take_along_axis(best, order, axis=1), axis=1)
    # A slate is exact when its k-th value clears the threshold; else finish it by hand.
    for row in np.flatnonzero(best_values.min(axis=1) <= split.threshold):
        known = candidates[row] >= 0
        slates[row] = _complete_row(split, k, rng, candidates[row][known], values[row][known])
    return slates


def beta_quantile(alpha: FloatArray, beta: FloatArray, uniforms: FloatArray) -> FloatArray:
    """The Beta(alpha, beta) quantile of each uniform. With a parameter equal to 1 the CDF
    inverts in closed form (x^a, 1 - (1 - x)^b): most arms of a sparse state, at a
    fraction of the cost of the general inversion."""
    alpha_one, beta_one = alpha == 1.0, beta == 1.0
    closed_form = alpha_one | beta_one
    if not closed_form.any():
        inverted: FloatArray = special.betaincinv(alpha, beta, uniforms)
        return inverted
    result = np.empty(uniforms.shape)
    general = ~closed_form
    result[general] = special.betaincinv(alpha[general], beta[general], uniforms[general])
    power = beta_one
    result[power] = uniforms[power] ** (1.0 / alpha[power])
    reflected = alpha_one & ~beta_one
    result[reflected] = -np.expm1(np.log1p(-uniforms[reflected]) / beta[reflected])
    return result


def _complete_row(
    split: ThresholdSplit, k: int, rng: np.random.Generator, arms: IntArray, values: FloatArray
) -> IntArray:
    """A slate whose top k reaches below the threshold: draw the missing tail arms there."""
    missing = np.setdiff1d(split.tail, arms, assume_unique=True)
    cdf = split.cdf_at_threshold[missing]
    below = special.betaincinv(
        split.alpha[missing], split.beta[missing], cdf * rng.random(cdf.size)
    )
    every_arm = np.concatenate([arms, missing])
    every_value = np.concatenate([values, below])
    best = np.argsort(-every_value, kind="stable")[:k]
    return every_arm[best]


def _distinct_rows(rng: np.random.Generator, n: int, counts: IntArray) -> IntArray:
    """For each arm, ``counts[arm]`` distinct rows below n, as a uniform subset, in arm order.

    Draws with replacement and tops up each arm's repeats with fresh draws: the same as
    drawing one at a time and skipping rows already taken, which gives a uniform subset.
    """
    owners = np.repeat(np.arange(counts.size), counts)
    taken = np.sort(owners * n + rng.integers(0, n, owners.size))
    while True:
        repeat = np.concatenate([[False], taken[1:] == taken[:-1]])
        if not repeat.any():
            return taken % n
        redraw = taken[repeat] // n
        fresh = redraw * n + rng.integers(0, n, redraw.size)
        taken = np.sort(np.concatenate([taken[~repeat], fresh]))
