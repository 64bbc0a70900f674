"""Thompson Sampling's slates are exact posterior draws and its propensity estimate is close to
the exact inclusion probability.

Exact references come from numerical integration: arm i is in a slate of k when fewer than k
of the other arms draw above its own draw, so
``P_i = integral of f_i(x) * P(fewer than k others exceed x) dx``, the count of others above
x being Poisson-binomial. The state's counts sit on top of the default Beta(1, 1) prior.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from scipy import integrate, stats

from cineamate.policies import ArmState, make_policy
from cineamate.policies.thompson import ThompsonSampling

FloatArray = npt.NDArray[np.float64]

# Largest |estimate - exact| over 50 propensity seeds and five posteriors, measured by
# test_propensity_error_shrinks_with_the_number_of_draws: 0.056 at 128 draws (the default),
# 0.038 at 512. The tolerances leave room above those.
ESTIMATE_TOLERANCE = {128: 0.07, 512: 0.045}
TWO_ARM_POSTERIORS = [
    pytest.param([(3, 5), (4, 4)], id="beta(3,5)-vs-beta(4,4)"),
    pytest.param([(1, 1), (20, 80)], id="beta(1,1)-vs-beta(20,80)"),
    pytest.param([(50, 50), (52, 48)], id="beta(50,50)-vs-beta(52,48)"),
]
THREE_ARM_POSTERIORS = [(3.0, 5.0), (6.0, 4.0), (10.0, 10.0)]


def _state_with_posteriors(posteriors: list[tuple[float, float]], version: int = 0) -> ArmState:
    """The state whose Beta(1, 1)-prior posteriors are the given Beta(alpha, beta)."""
    alpha = np.asarray([a for a, _ in posteriors], dtype=np.float64)
    beta = np.asarray([b for _, b in posteriors], dtype=np.float64)
    return ArmState(np.arange(alpha.size), alpha + beta - 2.0, alpha - 1.0, version)


def _twenty_arm_posteriors() -> list[tuple[float, float]]:
    rng = np.random.default_rng(5)
    alpha, beta = 1 + rng.integers(0, 30, 20), 1 + rng.integers(0, 30, 20)
    return [(float(a), float(b)) for a, b in zip(alpha, beta, strict=True)]


def _exact_inclusion(posteriors: list[tuple[float, float]], k: int) -> FloatArray:
    alpha = np.asarray([a for a, _ in posteriors])
    beta = np.asarray([b for _, b in posteriors])
    inclusion = np.empty(alpha.size)
    for arm in range(alpha.size):
        others = np.arange(alpha.size) != arm

        def integrand(x: float, arm: int = arm, others: npt.NDArray[np.bool_] = others) -> float:
            above = stats.beta.sf(x, alpha[others], beta[others])
            # Distribution of how many others exceed x, truncated to 0..k-1.
            counts = np.zeros(k)
            counts[0] = 1.0
            for p in above:
                counts[1:] = counts[1:] * (1.0 - p) + counts[:-1] * p
                counts[0] *= 1.0 - p
            return float(stats.beta.pdf(x, alpha[arm], beta[arm]) * counts.sum())

        inclusion[arm] = _integral(integrand)
    return inclusion


def _exact_first_arm_wins(first: tuple[float, float], second: tuple[float, float]) -> float:
    """P(theta_1 > theta_2) = integral of f_1(x) F_2(x) dx."""
    return _integral(lambda x: float(stats.beta.pdf(x, *first) * stats.beta.cdf(x, *second)))


def _integral(integrand: Callable[[float], float]) -> float:
    """Integral over [0, 1], to about 1e-10."""
    value, _ = integrate.quad(integrand, 0.0, 1.0, epsabs=1e-12, epsrel=1e-10, limit=200)
    return float(value)


@pytest.fixture(scope="module")
def twenty_arms() -> tuple[list[tuple[float, float]], FloatArray]:
    """A 20-arm posterior and its exact inclusion probabilities for k = 3."""
    posteriors = _twenty_arm_posteriors()
    return posteriors, _exact_inclusion(posteriors, 3)


def test_exact_reference_reproduces_a_closed_form() -> None:
    # theta_1 uniform: P(theta_1 > theta_2) = E[1 - theta_2] = 0.8 for theta_2 ~ Beta(20, 80).
    assert _exact_first_arm_wins((1, 1), (20, 80)) == pytest.approx(0.8, abs=1e-9)
    assert _exact_inclusion([(1, 1), (20, 80)], 1) == pytest.approx([0.8, 0.2], abs=1e-9)


@pytest.mark.parametrize("draws", [128, 512])
@pytest.mark.parametrize("posteriors", TWO_ARM_POSTERIORS)
def test_two_arm_propensity_is_close_to_exact_probability_of_the_larger_draw(
    posteriors: list[tuple[float, float]], draws: int
) -> None:
    state = _state_with_posteriors(posteriors)
    exact_first = _exact_first_arm_wins(posteriors[0], posteriors[1])

    estimate = ThompsonSampling(propensity_draws=draws).inclusion_probabilities(state, 1)

    print(f"\n{posteriors} R={draws}: exact {exact_first:.5f}, estimate {estimate[0]:.5f}")
    assert estimate.sum() == pytest.approx(1.0, abs=1e-12)
    assert estimate[0] == pytest.approx(exact_first, abs=ESTIMATE_TOLERANCE[draws])


def test_three_arm_propensities_agree_with_brute_force_monte_carlo() -> None:
    joint_draws, k = 1_000_000, 2
    state = _state_with_posteriors(THREE_ARM_POSTERIORS)
    rng = np.random.default_rng(31)
    thetas = np.stack([rng.beta(a, b, joint_draws) for a, b in THREE_ARM_POSTERIORS], axis=1)
    # With k = 2 of 3 arms, an arm is in the slate unless it drew the smallest value.
    brute_force = 1.0 - np.bincount(thetas.argmin(axis=1), minlength=3) / joint_draws
    standard_error = np.sqrt(brute_force * (1.0 - brute_force) / joint_draws)

    estimate = make_policy("thompson").inclusion_probabilities(state, k)
    exact = _exact_inclusion(THREE_ARM_POSTERIORS, k)

    print(f"\nbrute force {brute_force}, exact {exact}, estimate {estimate}")
    assert np.all(np.abs(exact - brute_force) < 4.5 * standard_error)
    assert np.all(np.abs(estimate - brute_force) < ESTIMATE_TOLERANCE[128] + 4 * standard_error)


def test_select_frequencies_on_twenty_arms_agree_with_the_propensity_estimate(
    twenty_arms: tuple[list[tuple[float, float]], FloatArray],
) -> None:
    posteriors, exact = twenty_arms
    selects, k = 20_000, 3
    state = _state_with_posteriors(posteriors)
    policy = make_policy("thompson")
    rng = np.random.default_rng(8)

    # One state object throughout: its threshold and estimate are computed once and reused.
    selections = [policy.select(state, k, rng) for _ in range(selects)]
    slates = np.concatenate([selection.arm_ids for selection in selections])
    frequencies = np.bincount(slates, minlength=state.n_arms) / selects
    estimate = policy.inclusion_probabilities(state, k)
    standard_error = np.sqrt(exact * (1.0 - exact) / selects)

    print(f"\nmax |frequency - estimate| {np.abs(frequencies - estimate).max():.4f}")
    # Selection is exact: frequencies match the exact probabilities within sampling error ...
    assert np.all(np.abs(frequencies - exact) <= 4.5 * standard_error + 1e-12)
    # ... and the estimate within sampling error plus the estimator's own error.
    assert np.all(np.abs(frequencies - estimate) <= 4.5 * standard_error + ESTIMATE_TOLERANCE[128])
    assert all(
        np.array_equal(selection.propensities, estimate[selection.arm_ids])
        for selection in selections
    )


@pytest.mark.slow
def test_selection_through_the_cached_threshold_draws_exact_posterior_slates() -> None:
    # 300 arms is above the size (2 * (2k + 20)) where selection switches to inverting the
    # CDF for the candidates above a cached threshold only.
    chooses, brute_force_draws, k = 20_000, 100_000, 3
    rng = np.random.default_rng(1)
    successes = np.concatenate([np.arange(25.0, 45.0, 2.0), rng.integers(0, 12, 290)])
    pulls = np.concatenate([np.full(10, 100.0), np.full(290, 40.0)])
    state = ArmState(np.arange(300), pulls, successes.astype(np.float64), version=3)
    policy = make_policy("thompson")
    alpha, beta = 1.0 + successes, 1.0 + pulls - successes

    choose_rng = np.random.default_rng(2)
    slates = np.concatenate([policy.choose(state, k, choose_rng) for _ in range(chooses)])
    frequencies = np.bincount(slates, minlength=300) / chooses
    counts = np.zeros(300)
    brute_rng = np.random.default_rng(3)
    for _ in range(brute_force_draws // 10_000):
        thetas = brute_rng.beta(alpha, beta, size=(10_000, 300))
        counts += np.bincount(np.argpartition(-thetas, k - 1, axis=1)[:, :k].ravel(), minlength=300)
    brute_force = counts / brute_force_draws

    pooled = np.sqrt(brute_force * (1.0 - brute_force) * (1 / chooses + 1 / brute_force_draws))
    print(f"\narms seen: choose {np.count_nonzero(frequencies)}, brute {np.count_nonzero(counts)}")
    assert np.all(np.abs(frequencies - brute_force) <= 4.5 * pooled + 2e-4)


def test_thompson_inclusion_sums_to_k_when_one_arm_is_almost_surely_in() -> None:
    # Beta(101, 1) against two Beta(51, 51): the first arm is in a slate of 2 with
    # probability about 1, so rescaling the estimate pushes it above 1, where it is clipped.
    state = ArmState(np.arange(3), np.full(3, 100.0), np.array([100.0, 50.0, 50.0]), version=1)

    inclusion = make_policy("thompson").inclusion_probabilities(state, 2)

    assert np.all(inclusion <= 1.0)
    assert inclusion.sum() == pytest.approx(2.0, abs=1e-9)


@pytest.mark.slow
def test_propensity_error_shrinks_with_the_number_of_draws(
    twenty_arms: tuple[list[tuple[float, float]], FloatArray],
) -> None:
    seeds = range(50)
    cases: dict[str, tuple[list[tuple[float, float]], int]] = {
        "beta(3,5) v beta(4,4), k=1": ([(3, 5), (4, 4)], 1),
        "beta(1,1) v beta(20,80), k=1": ([(1, 1), (20, 80)], 1),
        "beta(50,50) v beta(52,48), k=1": ([(50, 50), (52, 48)], 1),
        "3 arms, k=2": (THREE_ARM_POSTERIORS, 2),
        "20 arms, k=3": (twenty_arms[0], 3),
    }
    exact = {
        name: twenty_arms[1] if name.startswith("20") else _exact_inclusion(posteriors, k)
        for name, (posteriors, k) in cases.items()
    }

    # Small propensities set large inverse-propensity weights: their relative error matters.
    small = (twenty_arms[1] > 1e-4) & (twenty_arms[1] < 0.05)

    # errors[draws][case] = max over arms of |estimate - exact|, one value per seed.
    errors: dict[int, dict[str, FloatArray]] = {}
    relative_errors: dict[int, FloatArray] = {}
    for draws in (32, 128, 512):
        errors[draws] = {}
        for name, (posteriors, k) in cases.items():
            state = _state_with_posteriors(posteriors)
            estimates = np.stack(
                [
                    ThompsonSampling(
                        propensity_draws=draws, propensity_seed=seed
                    ).inclusion_probabilities(state, k)
                    for seed in seeds
                ]
            )
            errors[draws][name] = np.abs(estimates - exact[name]).max(axis=1)
            assert np.all(estimates > 0.0), "Rao-Blackwellisation keeps every estimate positive"
            if name.startswith("20"):
                relative_errors[draws] = np.abs(estimates[:, small] / exact[name][small] - 1.0)

    print("\nmax |estimate - exact| over arms, over 50 propensity seeds: mean / sd / p95 / max")
    for draws, by_case in errors.items():
        for name, values in by_case.items():
            print(
                f"R={draws:>3} {name:<32} {values.mean():.4f} / {values.std():.4f} / "
                f"{np.quantile(values, 0.95):.4f} / {values.max():.4f}"
            )
        pooled = np.concatenate(list(by_case.values()))
        print(
            f"R={draws:>3} {'all five':<32} {pooled.mean():.4f} / {pooled.std():.4f} / "
            f"{np.quantile(pooled, 0.95):.4f} / {pooled.max():.4f}"
        )

    print(f"relative error of the 20-arm propensities {np.round(twenty_arms[1][small], 5)}:")
    for draws, values in relative_errors.items():
        print(
            f"R={draws:>3} mean {np.round(values.mean(axis=0), 3)}, "
            f"max {np.round(values.max(axis=0), 3)}"
        )

    def pooled_mean(draws: int) -> float:
        return float(np.mean(np.concatenate(list(errors[draws].values()))))

    for name in cases:
        assert errors[32][name].mean() > errors[128][name].mean() > errors[512][name].mean()
    # Monte-Carlo error falls like 1 / sqrt(R): 16 times the draws, about a quarter the error.
    assert 2.5 < pooled_mean(32) / pooled_mean(512) < 6.0
    assert pooled_mean(128) < 0.03
    assert max(values.max() for values in errors[128].values()) < ESTIMATE_TOLERANCE[128]
