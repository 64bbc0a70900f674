"""Load generation against the platform's HTTP API: open-loop, measured from planned times.

    >>> from cineamate.loadgen import OpenLoopConfig, run_open_loop
    >>> config = OpenLoopConfig(port=8000, rate=1_000, duration=10, warmup=2)
    >>> report = asyncio.run(run_open_loop(config, lambda i: ("/healthz", {})))  # doctest: +SKIP
    >>> report.latency.p99_ms, report.achieved_rate_per_s  # doctest: +SKIP

``python -m cineamate.loadgen`` runs the same engine in a process of its own.
``run_live`` drives an experiment with a ``Population`` of users and the clicks of a
planted ``ClickModel`` (what ``cineamate loadgen`` and the ``make run`` demo use).
"""

from cineamate.loadgen.clicks import DEFAULT_ATTENTION, ClickModel
from cineamate.loadgen.errors import HttpProtocolError, NonLoopbackHost
from cineamate.loadgen.live import LiveConfig, LiveReport, VariantTally, run_live
from cineamate.loadgen.openloop import (
    DEFAULT_CONNECTIONS,
    LOOPBACK_HOST,
    OpenLoopConfig,
    RequestFactory,
    ResponseHandler,
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
from cineamate.loadgen.users import Population

__all__ = [
    "DEFAULT_ATTENTION",
    "DEFAULT_CONNECTIONS",
    "LOOPBACK_HOST",
    "ClickModel",
    "HttpProtocolError",
    "LatencySummary",
    "LiveConfig",
    "LiveReport",
    "LoadReport",
    "NonLoopbackHost",
    "OpenLoopConfig",
    "Population",
    "RequestFactory",
    "Response",
    "ResponseHandler",
    "ResponseParser",
    "Samples",
    "Schedule",
    "VariantTally",
    "build_report",
    "check_loopback",
    "format_get",
    "run_live",
    "run_open_loop",
    "summarise_latencies",
]
