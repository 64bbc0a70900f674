"""Off-policy estimators of a target policy's value from logged bandit feedback.

One implementation for the ``ope`` command and the replay, so both report the
same numbers. Every estimator is a pure function of per-round arrays:

    rewards            r_i, the logged reward of round i
    weights            w_i = pi(a_i | x_i) / mu(a_i | x_i), the target's probability of the
                       logged action over the logging propensity (zero where the target
                       never takes it)
    direct             sum_a pi(a | x_i) q_hat(x_i, a), the reward model's value of the target
    logged_prediction  q_hat(x_i, a_i), the reward model at the logged action

Intervals are analytic: each estimate is a mean of per-round terms (SNIPS a
ratio of two means, linearised by the delta method), and the interval is the
normal approximation ``value +- z * sd / sqrt(n)`` with the sample standard
deviation (ddof 1). It ignores the reward model's own fitting error (DM, DR)
and is optimistic when a few rounds carry most of the weight: read it next to
``effective_sample_size``.

    >>> import numpy as np
    >>> ips(np.array([1.0, 0.0, 1.0]), np.array([2.0, 1.0, 0.0])).value
    0.6666666666666666
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput

__all__ = ["Estimate", "dm", "dr", "effective_sample_size", "ips", "snips"]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval at the requested level.

    >>> Estimate(0.5, 0.4, 0.6).to_dict()
    {'value': 0.5, 'ci_low': 0.4, 'ci_high': 0.6}
    """

    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        """The estimate as ``{"value", "ci_low", "ci_high"}``."""
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


def ips(rewards: ArrayLike, weights: ArrayLike, level: float = 0.95) -> Estimate:
    """Inverse propensity scoring: ``mean(w * r)``, unbiased when the propensities are right.

    With all weights zero the value is 0 with a zero-width interval: the log says
    nothing about the target (the effective sample size is 0).
    """
    r, w = _rounds(rewards=rewards, weights=weights)
    return _mean_estimate(w * r, level)


def snips(rewards: ArrayLike, weights: ArrayLike, level: float = 0.95) -> Estimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, with a delta-method interval.

    The interval uses the linearised terms ``w_i (r_i - value) / mean(w)``. When
    ``sum(w) == 0`` the ratio is undefined and value and interval are nan.
    """
    r, w = _rounds(rewards=rewards, weights=weights)
    z = _z(level)
    total = float(w.sum())
    if total == 0.0:
        return Estimate(math.nan, math.nan, math.nan)
    value = float((w * r).sum() / total)
    influence = w * (r - value) / (total / r.size)
    half = z * _standard_error(influence)
    return Estimate(value, value - half, value + half)


def dm(direct: ArrayLike, level: float = 0.95) -> Estimate:
    """Direct method: the mean over rounds of the reward model's value of the target."""
    (d,) = _rounds(direct=direct)
    return _mean_estimate(d, level)


def dr(
    rewards: ArrayLike,
    weights: ArrayLike,
    direct: ArrayLike,
    logged_prediction: ArrayLike,
    level: float = 0.95,
) -> Estimate:
    """Doubly robust: ``mean(direct + w * (r - q_hat(x_i, a_i)))``.

    Unbiased when either the propensities or the reward model are right.
    """
    r, w, d, q = _rounds(
        rewards=rewards, weights=weights, direct=direct, logged_prediction=logged_prediction
    )
    return _mean_estimate(d + w * (r - q), level)


def effective_sample_size(weights: ArrayLike) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``; 0 when every weight is 0."""
    (w,) = _rounds(weights=weights)
    squares = float(np.dot(w, w))
    return 0.0 if squares == 0.0 else float(w.sum()) ** 2 / squares


def _mean_estimate(terms: FloatArray, level: float) -> Estimate:
    """The mean of per-round terms with its normal-approximation interval."""
    z = _z(level)
    value = float(terms.mean())
    half = z * _standard_error(terms)
    return Estimate(value, value - half, value + half)


def _standard_error(terms: FloatArray) -> float:
    """``sd / sqrt(n)`` with ddof 1; nan for a single round, whose spread is unknown."""
    if terms.size < 2:
        return math.nan
    return float(terms.std(ddof=1)) / math.sqrt(terms.size)


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise InvalidInput(f"level must be in (0, 1), got {level}", field="level")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _rounds(**arrays: ArrayLike) -> list[FloatArray]:
    """The arrays as float64, checked to be one-dimensional, finite, non-empty and aligned."""
    checked: list[FloatArray] = []
    for name, values in arrays.items():
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise InvalidInput(
                f"{name} must be one-dimensional, got shape {array.shape}", field=name
            )
        if array.size == 0:
            raise InvalidInput(f"{name} is empty: need at least one round", field=name)
        if checked and array.size != checked[0].size:
            first = next(iter(arrays))
            raise InvalidInput(
                f"{name} has {array.size} rounds but {first} has {checked[0].size}", field=name
            )
        finite = np.isfinite(array)
        if not finite.all():
            row = int(np.argmin(finite))
            raise InvalidInput(f"{name} is not finite at round {row}: {array[row]}", field=name)
        if name == "weights" and (array < 0).any():
            row = int(np.argmax(array < 0))
            raise InvalidInput(f"weights must be >= 0, round {row} is {array[row]}", field=name)
        checked.append(array)
    return checked
