"""The plan of an open-loop run and the rules that turn its samples into a report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cineamate.loadgen import LoadReport, Samples, Schedule, build_report, summarise_latencies


@pytest.mark.parametrize(
    ("rate", "duration", "warmup", "total", "measured"),
    [
        (500.0, 2.0, 0.0, 1_000, 1_000),
        (1_000.0, 10.0, 2.0, 12_000, 10_000),
        (3.0, 1.0, 0.5, 5, 3),
        (10.0, 0.1 * 3, 0.0, 3, 3),
        (2_500.0, 0.3, 0.0, 750, 750),
    ],
)
def test_schedule_plans_rate_times_duration_requests(
    rate: float, duration: float, warmup: float, total: int, measured: int
) -> None:
    plan = Schedule(rate=rate, duration=duration, warmup=warmup)
    assert (plan.total, plan.measured) == (total, measured)
    offsets = plan.offsets()
    assert offsets.size == total
    assert offsets[-1] < plan.end
    np.testing.assert_allclose(np.diff(offsets), 1.0 / rate)


def test_due_counts_requests_planned_up_to_now() -> None:
    plan = Schedule(rate=1_000.0, duration=1.0)
    assert [plan.due(t) for t in (-0.1, 0.0, 0.0005, 0.001, 0.0999, 5.0)] == [
        0,
        1,
        1,
        2,
        100,
        1_000,
    ]


@pytest.mark.parametrize("bad", [{"rate": 0.0}, {"duration": -1.0}, {"warmup": math.nan}])
def test_schedule_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Schedule(**({"rate": 10.0, "duration": 1.0} | bad))


def test_latency_summary_matches_numpy_percentiles_in_ms() -> None:
    rng = np.random.default_rng(7)
    seconds = rng.exponential(0.002, 10_000)
    summary = summarise_latencies(np.append(seconds, np.nan))
    assert summary.count == 10_000
    expected = np.percentile(seconds * 1_000, [50, 90, 99, 99.9])
    assert [summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.p999_ms] == pytest.approx(
        expected
    )
    assert summary.max_ms == pytest.approx(seconds.max() * 1_000)
    assert math.isnan(summarise_latencies([]).p99_ms)


def _report(status: list[int], *, lag: float = 0.0, done_after: float = 0.002) -> LoadReport:
    n = len(status)
    planned = np.arange(n) / 100.0
    codes = np.asarray(status, dtype=np.int64)
    sent = np.where(codes == -3, np.nan, planned + lag)
    done = np.where(codes > 0, planned + lag + done_after, np.nan)
    ended = n / 100.0 + 1.0
    samples = Samples(planned, sent, done, codes, np.ones(n, dtype=np.bool_), 0.0, ended)
    return build_report(
        target="127.0.0.1:1",
        schedule=Schedule(rate=100.0, duration=n / 100.0),
        connections=4,
        samples=samples,
        lag_limit_s=0.005,
        cpu_seconds=0.5,
        wall_seconds=1.0,
    )


def test_report_counts_statuses_transport_failures_and_timeouts() -> None:
    report = _report([200] * 90 + [503] * 4 + [404] + [-1, -2, -3] + [0, 0])
    assert report.planned == 100
    assert report.ok == 90
    assert report.completed == 95
    assert report.errors_by_status == {
        "404": 1,
        "503": 4,
        "transport.closed": 1,
        "transport.protocol": 1,
        "transport.connect": 1,
    }
    assert report.timeouts == 2
    assert report.unsent == 0
    assert report.sent == 99
    assert report.error_rate == pytest.approx(0.10)
    assert report.latency.count == 95
    assert report.latency.p50_ms == pytest.approx(2.0)
    # Unanswered requests count in latency_all with what they had waited at the end.
    assert report.latency_all.count == 100
    assert report.latency_all.max_ms == pytest.approx((2.0 - 0.95) * 1_000)


def test_generator_behind_when_an_idle_connection_still_sent_late() -> None:
    assert not _report([200] * 50, lag=0.001).generator_fell_behind
    late = _report([200] * 50, lag=0.020)
    assert late.generator_fell_behind
    assert late.generator_lag_max_ms == pytest.approx(20.0)
    # The lag is the generator's, yet it is counted in the latency from the plan.
    assert late.latency.p50_ms == pytest.approx(22.0)


def test_report_is_json_ready_without_samples() -> None:
    body = _report([200] * 10).as_dict()
    assert "samples" not in body
    assert body["latency_ms"]["count"] == 10
    assert body["achieved_rate_per_s"] == pytest.approx(100.0)
