"""Rejection replay (Li et al. 2011) of one policy over a log, with slates.

For each logged event the policy, in its current state, chooses a slate of k
items; when the logged item is in it (a *match*) the event's reward is what
the policy earned and the policy learns from it; otherwise the event is skipped.
The state changes only on a match, so every event up to the next match sees
one state, and the events are processed in blocks sized to the observed gap
between matches; what was drawn past a match is discarded and drawn again from
the new state, so every event sees exactly the state a one-at-a-time replay
would have given it. Two ways to decide a match, both exact:

- a policy whose inclusion probabilities are exact (UCB1, epsilon-greedy,
  random, popularity) matches event i with probability ``pi(item_i)``, the
  chance that its slate holds the item: one uniform per event, no slate drawn,
  and the slate's model value is its expectation (lower variance for DR);
- Thompson Sampling, whose inclusion probabilities are only estimates, draws
  the slates themselves (``choose_many``) and checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cineamate.offline.replay.log import ReplayLog
from cineamate.policies import ArmState, Policy

__all__ = ["Trace", "replay"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_FIRST_BLOCK = 32
_MAX_BLOCK = 4096


@dataclass(frozen=True)
class Trace:
    """One policy's path through a log."""

    # Per event: was the logged item in the policy's slate.
    matched: BoolArray
    # Per event and reward model: the model's value of the slate, summed over its items.
    slate_values: FloatArray
    final_state: ArmState


def replay(
    log: ReplayLog,
    policy: Policy,
    k: int,
    rng: np.random.Generator,
    *,
    reward_models: FloatArray | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Trace:
    """Replay ``policy`` over ``log`` with slates of ``k`` items.

    ``reward_models`` is an optional stack of (cohorts, catalogue items) tables of expected
    rewards, shape (models, cohorts, items); each event's slate is valued by each model
    (for DM and DR, and against the truth when it is known).
    ``on_progress`` is called with the number of events done since the last call.
    """
    n = len(log)
    state = ArmState.empty(log.catalogue)
    matched = np.zeros(n, dtype=bool)
    models = np.zeros((0, 1, state.n_arms)) if reward_models is None else reward_models
    # (cohorts, items, models): one gather per slate item values it under every model.
    by_item = np.ascontiguousarray(np.moveaxis(models, 0, -1))
    slate_values = np.zeros((n, models.shape[0]))
    items = log.item_positions()
    gap = float(_FIRST_BLOCK)
    position = 0
    while position < n:
        # Drawing past the next match wastes a uniform per event without slates, a slate with.
        block = 4 * gap + 64 if policy.exact_propensities else gap
        end = min(n, position + max(1, min(_MAX_BLOCK, int(block))))
        if policy.exact_propensities:
            hit, values = _by_inclusion(policy, state, k, rng, items[position:end], by_item)
        else:
            hit, values = _by_slates(policy, state, k, rng, log.items[position:end], by_item)
        done = end - position if hit is None else hit + 1
        if by_item.shape[-1]:
            cohorts = log.cohorts[position : position + done]
            slate_values[position : position + done] = values(cohorts, done)
        if hit is not None:
            event = position + hit
            matched[event] = True
            state = policy.update(
                state, log.items[event : event + 1], log.rewards[event : event + 1]
            )
        # Aim the next block at about the expected gap to the next match.
        gap = 0.8 * gap + 0.2 * (2.0 * done if hit is None else done)
        position += done
        if on_progress is not None:
            on_progress(done)
    return Trace(matched, slate_values, state)


# Per block: the first matching event (or None) and a function giving the models' values
# of the slates of the block's first ``done`` events, from their cohorts.
_SlateValues = Callable[[IntArray, int], FloatArray]


def _by_inclusion(
    policy: Policy,
    state: ArmState,
    k: int,
    rng: np.random.Generator,
    items: IntArray,
    by_item: FloatArray,
) -> tuple[int | None, _SlateValues]:
    inclusion = policy.inclusion_probabilities(state, k)
    hits = np.flatnonzero(rng.random(items.size) < inclusion[items])
    if not by_item.shape[-1]:
        return _first(hits), _no_values
    # The expected value of the slate: each item's value times its chance of being in it.
    per_cohort = np.einsum("cim,i->cm", by_item, inclusion)
    return _first(hits), lambda cohorts, done: per_cohort[cohorts]


def _by_slates(
    policy: Policy,
    state: ArmState,
    k: int,
    rng: np.random.Generator,
    item_ids: IntArray,
    by_item: FloatArray,
) -> tuple[int | None, _SlateValues]:
    slates = policy.choose_many(state, k, rng, item_ids.size)
    hits = np.flatnonzero((slates == item_ids[:, None]).any(axis=1))
    if not by_item.shape[-1]:
        return _first(hits), _no_values

    def values(cohorts: IntArray, done: int) -> FloatArray:
        columns = state.lookup(slates[:done])
        result: FloatArray = by_item[cohorts[:, None], columns].sum(axis=1)
        return result

    return _first(hits), values


def _no_values(cohorts: IntArray, done: int) -> FloatArray:
    return np.zeros((done, 0))


def _first(hits: IntArray) -> int | None:
    return int(hits[0]) if hits.size else None
