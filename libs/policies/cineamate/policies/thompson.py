"""Thompson Sampling with Beta-Bernoulli posteriors, fast enough for large catalogues.

Selecting a slate needs only the k largest posterior draws. Each draw is
``theta_i = F_i^-1(U_i)`` with ``U_i`` uniform, so for a threshold ``t`` an arm
can only beat ``t`` when ``U_i > F_i(t)``. Per state we pick ``t`` so that about
``2k + 20`` arms are expected above it and cache ``F_i(t)``; a selection then
draws n uniforms, inverts the CDF only for the few candidates, and ranks them.
This is exact, not an approximation: when fewer than k arms clear ``t`` (rare),
the same uniforms are inverted for every arm. Any threshold keeps it exact, so
after an update the previous state's threshold is kept and only the changed
arms' CDFs are recomputed, for as long as it still leaves a good number of
arms above it: the replay updates one arm at a time, tens of thousands of times.

Propensities are Monte-Carlo estimates, Rao-Blackwellised: for each of R
simulated draws of all arms, arm i's chance of making the slate given the
others is ``1 - F_i(t_i)``, with ``t_i`` the k-th largest draw among the other
arms. Averaging these (instead of counting 0/1 inclusions) keeps small
propensities positive and lowers the variance; the estimate is then rescaled
to sum to k. It is computed once per state and cached. Accuracy: see
``docs/policies.md``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special

from cineamate.common.errors import InvalidInput
from cineamate.policies.base import BoolArray, FloatArray, IntArray, Policy, SlateRequest
from cineamate.policies.state import ArmState
from cineamate.policies.thompson_slates import ThresholdSplit, beta_quantile, draw_slates

__all__ = ["ThompsonSampling"]

# Simulations of the Rao-Blackwellised propensity estimate processed at once (memory bound).
_CHUNK_ROWS = 32
# Slates drawn at once by choose_many (bounds the draws held in memory).
_SLATE_ROWS = 256


@dataclass(frozen=True)
class _Threshold:
    """Per-state cache: posterior parameters and each arm's CDF at the threshold."""

    alpha: FloatArray
    beta: FloatArray
    threshold: float | None
    cdf_at_threshold: FloatArray | None

    @cached_property
    def split(self) -> ThresholdSplit | None:
        """The same, arranged for drawing many slates at once (``None`` without a threshold)."""
        if self.threshold is None or self.cdf_at_threshold is None:
            return None
        return ThresholdSplit(self.alpha, self.beta, self.threshold, self.cdf_at_threshold)


class ThompsonSampling(Policy):
    """Thompson Sampling over Beta(prior_alpha + successes, prior_beta + failures) posteriors.

    >>> policy = ThompsonSampling()
    >>> state = ArmState.empty(range(100)).updated([3, 3, 7], [1, 1, 0])
    >>> slate = policy.select(state, 10, np.random.default_rng(0))
    >>> len(slate.arm_ids), bool(slate.propensities.min() > 0)
    (10, True)
    """

    type = "thompson"
    exact_propensities = False

    def __init__(
        self,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        propensity_draws: int = 128,
        propensity_seed: int = 0,
    ) -> None:
        if prior_alpha <= 0 or prior_beta <= 0:
            raise InvalidInput("prior parameters must be positive", field="params.prior_alpha")
        if propensity_draws < 2:
            raise InvalidInput(
                "propensity_draws must be at least 2", field="params.propensity_draws"
            )
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.propensity_draws = propensity_draws
        self.propensity_seed = propensity_seed
        self._thresholds: weakref.WeakKeyDictionary[ArmState, dict[int, _Threshold]] = (
            weakref.WeakKeyDictionary()
        )
        self._propensities: weakref.WeakKeyDictionary[ArmState, dict[int, FloatArray]] = (
            weakref.WeakKeyDictionary()
        )
        # The most recent threshold per k, reused for the next state when it still fits.
        self._latest: dict[int, _Threshold] = {}

    def posterior(self, state: ArmState) -> tuple[FloatArray, FloatArray]:
        """Beta parameters per arm."""
        alpha = self.prior_alpha + state.successes
        beta = self.prior_beta + (state.pulls - state.successes)
        return alpha, beta

    def _choose(self, request: SlateRequest) -> tuple[IntArray, FloatArray | None]:
        state, k = request.state, request.k
        positions = self._draw_slate(state, k, request.rng, request.eligible, request.all_eligible)
        if not request.with_propensities:
            return positions, None
        eligible = None if request.all_eligible else request.eligible
        inclusion = self.inclusion_probabilities(state, k, eligible)
        return positions, inclusion[positions]

    def _draw_slate(
        self,
        state: ArmState,
        k: int,
        rng: np.random.Generator,
        eligible: BoolArray,
        all_eligible: bool,
    ) -> IntArray:
        n_eligible = state.n_arms if all_eligible else int(eligible.sum())
        k = min(k, n_eligible)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        cache = self._threshold(state, k)
        if cache.threshold is None or cache.cdf_at_threshold is None:
            draws = rng.beta(cache.alpha, cache.beta)
            if not all_eligible:
                draws = np.where(eligible, draws, -np.inf)
            return _best(draws, np.arange(state.n_arms), k)
        uniforms = rng.random(state.n_arms)
        above = uniforms > cache.cdf_at_threshold
        if not all_eligible:
            above &= eligible
        candidates = np.flatnonzero(above)
        if candidates.size < k:
            candidates = np.arange(state.n_arms) if all_eligible else np.flatnonzero(eligible)
        draws = beta_quantile(cache.alpha[candidates], cache.beta[candidates], uniforms[candidates])
        return _best(draws, candidates, k)

    def _choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        cache = self._threshold(state, k)
        chunks = []
        for start in range(0, n, _SLATE_ROWS):
            rows = min(_SLATE_ROWS, n - start)
            if cache.split is None:
                draws = rng.beta(cache.alpha, cache.beta, size=(rows, state.n_arms))
                chunks.append(_best_per_row(draws, k))
            else:
                chunks.append(draw_slates(cache.split, k, rng, rows))
        return np.concatenate(chunks)

    def inclusion_probabilities(
        self, state: ArmState, k: int, eligible: BoolArray | None = None
    ) -> FloatArray:
        if eligible is None:
            per_state = self._propensities.setdefault(state, {})
            if k not in per_state:
                per_state[k] = self._estimate_inclusion(state, k, np.ones(state.n_arms, bool))
            return per_state[k]
        return self._estimate_inclusion(state, k, eligible)

    def _estimate_inclusion(self, state: ArmState, k: int, eligible: BoolArray) -> FloatArray:
        arms = np.flatnonzero(eligible)
        inclusion = np.zeros(state.n_arms)
        if arms.size <= k:
            inclusion[arms] = 1.0
            inclusion.flags.writeable = False
            return inclusion
        alpha, beta = self.posterior(state)
        alpha, beta = alpha[arms], beta[arms]
        rng = np.random.default_rng([self.propensity_seed, state.version, k])
        total = np.zeros(arms.size)
        remaining = self.propensity_draws
        while remaining > 0:
            rows = min(_CHUNK_ROWS, remaining)
            remaining -= rows
            draws = rng.beta(alpha, beta, size=(rows, arms.size))
            # k-th and (k+1)-th largest draw of each simulation.
            top = -np.partition(-draws, (k - 1, k), axis=1)[:, : k + 1]
            kth, next_kth = top[:, k - 1 : k], top[:, k : k + 1]
            # Given the others, arm i is in the slate when it beats the k-th best of them:
            # that is kth for arms outside this draw's slate, next_kth for arms inside it.
            others_kth = np.where(draws >= kth, next_kth, kth)
            # 1 - I_x(a, b) = I_(1-x)(b, a): same tail, several times faster than betaincc.
            total += special.betainc(beta, alpha, 1.0 - others_kth).sum(axis=0)
        inclusion[arms] = _rescale_to_sum(total / self.propensity_draws, k)
        inclusion.flags.writeable = False
        return inclusion

    def _threshold(self, state: ArmState, k: int) -> _Threshold:
        per_state = self._thresholds.setdefault(state, {})
        cached = per_state.get(k)
        if cached is None:
            cached = self._carried_threshold(state, k) or self._compute_threshold(state, k)
            per_state[k] = self._latest[k] = cached
        return cached

    def _carried_threshold(self, state: ArmState, k: int) -> _Threshold | None:
        """The latest threshold with only the changed arms' CDFs recomputed, while it still
        leaves between the minimum and a few times the target of arms expected above."""
        latest = self._latest.get(k)
        if latest is None or latest.threshold is None or latest.cdf_at_threshold is None:
            return None
        alpha, beta = self.posterior(state)
        if alpha.size != latest.alpha.size:
            return None
        changed = np.flatnonzero((alpha != latest.alpha) | (beta != latest.beta))
        if changed.size > alpha.size // 8:
            return None
        cdf = latest.cdf_at_threshold.copy()
        cdf[changed] = special.betainc(alpha[changed], beta[changed], latest.threshold)
        expected_above = float(alpha.size - cdf.sum())
        if not _min_above(k) <= expected_above <= 4 * _target_above(k):
            return None
        return _Threshold(alpha, beta, latest.threshold, cdf)

    def _compute_threshold(self, state: ArmState, k: int) -> _Threshold:
        alpha, beta = self.posterior(state)
        target = _target_above(k)
        if state.n_arms <= 2 * target:
            return _Threshold(alpha, beta, None, None)
        # Any threshold keeps selection exact; a good one makes it fast. Start from an order
        # statistic of one posterior draw and lower it until enough arms are expected above.
        rng = np.random.default_rng([self.propensity_seed, state.version, k, 1])
        sample = np.sort(rng.beta(alpha, beta))[::-1]
        rank = target
        while True:
            threshold = float(sample[min(rank, state.n_arms - 1)])
            cdf = special.betainc(alpha, beta, threshold)
            expected_above = float(np.sum(1.0 - cdf))
            if expected_above >= _min_above(k) or rank >= state.n_arms - 1:
                return _Threshold(alpha, beta, threshold, cdf)
            rank *= 2


def _target_above(k: int) -> int:
    """Arms a threshold aims to leave above it: enough that fewer than k is rare."""
    return 2 * k + 20


def _min_above(k: int) -> float:
    """Fewest arms a threshold may leave above it before it is recomputed."""
    return 1.5 * k + 10


def _best_per_row(draws: FloatArray, k: int) -> IntArray:
    """Per row, the positions of the k largest draws, best first."""
    part = np.argpartition(-draws, k - 1, axis=1)[:, :k] if draws.shape[1] > k else None
    if part is None:
        part = np.broadcast_to(np.arange(draws.shape[1]), draws.shape).copy()
    order = np.argsort(-np.take_along_axis(draws, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def _rescale_to_sum(estimate: FloatArray, k: int) -> FloatArray:
    """Scale to sum to k without exceeding 1: arms that would pass 1 are fixed at 1 and the
    remaining mass is spread over the others in proportion, until none passes."""
    result = estimate.astype(np.float64, copy=True)
    capped = np.zeros(result.size, dtype=bool)
    for _ in range(result.size):
        free = ~capped
        mass = result[free].sum()
        if mass <= 0:
            break
        result[free] *= (k - capped.sum()) / mass
        over = free & (result > 1.0)
        if not over.any():
            break
        result[over] = 1.0
        capped |= over
    return result


def _best(draws: FloatArray, positions: IntArray, k: int) -> IntArray:
    """Positions of the k largest draws, best first."""
    if draws.size > k:
        part = np.argpartition(-draws, k - 1)[:k]
    else:
        part = np.arange(draws.size)
    order = part[np.argsort(-draws[part])]
    return positions[order].astype(np.int64)
