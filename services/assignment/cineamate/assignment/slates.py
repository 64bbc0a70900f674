"""Slates drawn ahead of requests, many at once from one posterior.

A policy draws n slates from one state far faster together (``choose_many``)
than one at a time, and each is still an independent draw from the policy's
distribution for that state, so handing them out one per request changes
nothing but the cost. A pool belongs to one policy, state and slate size, and
is dropped as soon as the state changes. Once half a pool is used, the next
one is drawn in a worker thread (numpy does the work without holding the
interpreter), so requests rarely wait for a draw.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

import numpy as np

from cineamate.policies import ArmState, Policy

__all__ = ["DEFAULT_POOL_SIZE", "SlatePools"]

DEFAULT_POOL_SIZE = 64


@dataclass
class _Pool:
    state: ArmState
    arm_ids: list[list[int]]
    propensities: list[list[float]]
    taken: int = 0
    successor: asyncio.Future[_Pool] | None = None


class SlatePools:
    """One pool of pre-drawn slates per (policy, slate size), for the current state.

    >>> pools = SlatePools(np.random.default_rng(0))
    >>> arm_ids, propensities = pools.take(policy, state, 10)  # doctest: +SKIP
    """

    def __init__(self, rng: np.random.Generator, size: int = DEFAULT_POOL_SIZE) -> None:
        self._rng = rng
        # Worker threads draw from their own generator, so the two never contend.
        self._background_rng = np.random.default_rng(rng.integers(2**63))
        self._size = size
        self._pools: weakref.WeakKeyDictionary[Policy, dict[int, _Pool]] = (
            weakref.WeakKeyDictionary()
        )

    def take(self, policy: Policy, state: ArmState, k: int) -> tuple[list[int], list[float]]:
        """The next slate of ``policy`` for ``state``: arm ids best first, with the
        probability of each being in the slate (as ``Policy.select`` reports them).
        Called on the event loop."""
        by_size = self._pools.setdefault(policy, {})
        pool = by_size.get(k)
        if pool is None or pool.state is not state or pool.taken == len(pool.arm_ids):
            pool = by_size[k] = self._next(pool, policy, state, k)
        index = pool.taken
        pool.taken += 1
        if pool.successor is None and pool.taken * 2 >= len(pool.arm_ids):
            loop = asyncio.get_running_loop()
            pool.successor = loop.run_in_executor(
                None, self._draw, policy, state, k, self._background_rng
            )
        return pool.arm_ids[index], pool.propensities[index]

    def _next(self, pool: _Pool | None, policy: Policy, state: ArmState, k: int) -> _Pool:
        """The successor drawn in the background when it is ready and current, else a
        pool drawn now."""
        successor = None if pool is None else pool.successor
        if successor is not None and successor.done() and successor.exception() is None:
            ready = successor.result()
            if ready.state is state:
                return ready
        return self._draw(policy, state, k, self._rng)

    def _draw(self, policy: Policy, state: ArmState, k: int, rng: np.random.Generator) -> _Pool:
        slates = policy.choose_many(state, k, rng, self._size)
        inclusion = policy.inclusion_probabilities(state, k)
        propensities = inclusion[state.lookup(slates)]
        return _Pool(state, slates.tolist(), propensities.tolist())
