"""Load generation against the platform's HTTP API: open-loop, measured from planned times.

    >>> from cineamate.loadgen import OpenLoopConfig, run_open_loop
    >>> config = OpenLoopConfig(port=8000, rate=1_000, duration=10, warmup=2)
    >>> report = asyncio.run(run_open_loop(config, lambda i: ("/healthz", {})))  # doctest: +SKIP
    >>> report.latency.p99_ms, report.achieved_rate_per_s  # doctest: +SKIP

``python -m cineamate.loadgen`` runs the same engine in a process of its own.
"""

from cineamate.loadgen.errors import HttpProtocolError, NonLoopbackHost
from cineamate.loadgen.openloop import (
    DEFAULT_CONNECTIONS,
    LOOPBACK_HOST,
    OpenLoopConfig,
    RequestFactory,
    check_loopback,
    run_open_loop,
)
from cineamate.loadgen.protocol import Response, ResponseParser, format_get
from cineamate.loadgen.report import (
    LatencySummary,
    LoadReport,
    Samples,
    build_report,
    summarise_latencies,
)
from cineamate.loadgen.schedule import Schedule

__all__ = [
    "DEFAULT_CONNECTIONS",
    "LOOPBACK_HOST",
    "HttpProtocolError",
    "LatencySummary",
    "LoadReport",
    "NonLoopbackHost",
    "OpenLoopConfig",
    "RequestFactory",
    "Response",
    "ResponseParser",
    "Samples",
    "Schedule",
    "build_report",
    "check_loopback",
    "format_get",
    "run_open_loop",
    "summarise_latencies",
]
