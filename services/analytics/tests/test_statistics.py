"""The dashboard's statistics: intervals that cover, percentiles from histograms, regret,
fairness and the CSV guard."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import numpy as np
import pytest

from cineamate.analytics.export import csv_lines, neutralise
from cineamate.analytics.stats import (
    coefficient_of_variation,
    cumulative_regret,
    uplift_interval,
    wilson_interval,
)
from cineamate.common.latency import BUCKETS, bucket_of, merge, percentile


@pytest.mark.parametrize(("rate", "trials"), [(0.02, 200), (0.1, 1_000), (0.5, 50)])
def test_wilson_intervals_cover_the_true_ctr_about_95_percent_of_the_time(
    rate: float, trials: int
) -> None:
    rng = np.random.default_rng(17)
    clicks = rng.binomial(trials, rate, size=4_000)
    covered = 0
    for count in clicks:
        interval = wilson_interval(float(count), trials)
        assert interval.low is not None and interval.high is not None
        covered += interval.low <= rate <= interval.high
    assert 0.93 <= covered / len(clicks) <= 0.975


def test_uplift_intervals_cover_the_true_uplift() -> None:
    rng = np.random.default_rng(5)
    control_rate, rate, trials = 0.05, 0.06, 20_000
    covered = 0
    for _ in range(2_000):
        interval = uplift_interval(
            float(rng.binomial(trials, rate)),
            trials,
            float(rng.binomial(trials, control_rate)),
            trials,
        )
        assert interval.low is not None and interval.high is not None
        covered += interval.low <= rate / control_rate - 1 <= interval.high
    assert 0.93 <= covered / 2_000 <= 0.97


def test_no_trials_gives_no_estimate() -> None:
    assert wilson_interval(0, 0).estimate is None
    assert uplift_interval(1, 10, 0, 10).estimate is None


def test_percentiles_read_from_the_histogram_are_within_ten_percent() -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(mean=2.0, sigma=0.8, size=50_000)
    histogram = [0] * BUCKETS
    for value in latencies:
        histogram[bucket_of(float(value))] += 1
    for quantile in (0.5, 0.95, 0.99):
        estimate = percentile(histogram, quantile)
        assert estimate == pytest.approx(float(np.quantile(latencies, quantile)), rel=0.1)
    assert percentile([0] * BUCKETS, 0.5) is None
    assert merge([[1, 2], [0, 1, 5]])[:3] == [1, 3, 5]


def test_regret_is_measured_against_the_best_ctr_so_far() -> None:
    steps = [{"a": (10.0, 5.0), "b": (10.0, 1.0)}, {"a": (10.0, 1.0), "b": (10.0, 1.0)}]
    first, second = cumulative_regret(steps)
    assert first == {"a": 0.0, "b": pytest.approx(10 * 0.5 - 1)}
    # a: 6/20 = 0.3 is still the best; b: 2/20.
    assert second == {"a": pytest.approx(0.0), "b": pytest.approx(20 * 0.3 - 2)}


def test_fairness_is_the_coefficient_of_variation() -> None:
    assert coefficient_of_variation([0.5, 0.0]) == pytest.approx(1.0)
    assert coefficient_of_variation([0.2, 0.2, 0.2]) == pytest.approx(0.0)
    assert coefficient_of_variation([0.3]) is None


@pytest.mark.parametrize("text", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx"])
def test_cells_that_look_like_formulas_are_shown_as_text(text: str) -> None:
    assert neutralise(text) == "'" + text
    assert neutralise("plain") == "plain"


def test_csv_lines_quote_what_needs_quoting() -> None:
    async def rows() -> AsyncIterator[dict[str, object]]:
        yield {"a": 'say "hi", then', "b": [1, 2], "c": None}

    async def collect() -> str:
        return b"".join([line async for line in csv_lines(["a", "b", "c"], rows())]).decode()

    parsed = list(csv.reader(io.StringIO(asyncio.run(collect()))))
    assert parsed == [["a", "b", "c"], ['say "hi", then', "[1,2]", ""]]
