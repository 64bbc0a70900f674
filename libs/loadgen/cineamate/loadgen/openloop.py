"""An open-loop HTTP/1.1 load engine on asyncio streams, for 127.0.0.1 only.

Request i is planned at ``start + i / rate`` whatever the server does. When
it falls due it goes to an idle keep-alive connection of the pool, or waits
in line for the next one that frees up; its latency runs from the planned
time to the last byte of the response. A closed-loop client (send, wait,
send again) measures from the moment it sends, so a server stall delays the
sends and disappears from the figures; here every request planned during a
stall carries it (coordinated omission avoided).

    >>> config = OpenLoopConfig(port=8000, rate=1_000, duration=10, warmup=2)
    >>> report = asyncio.run(run_open_loop(config, lambda i: (f"/hello?user=u{i}", {})))
    ... # doctest: +SKIP

The run is bounded: the plan ends after ``warmup + duration`` seconds, and the
engine waits at most ``grace`` seconds more for responses still due; what is
unanswered then is a timeout. The generator records when each request was
really written, so a report says whether the generator itself fell behind
(a request that found an idle connection and was still sent late).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from cineamate.loadgen.errors import HttpProtocolError, NonLoopbackHost
from cineamate.loadgen.protocol import ResponseParser, format_get
from cineamate.loadgen.report import LoadReport, Samples, build_report
from cineamate.loadgen.schedule import Schedule

__all__ = [
    "DEFAULT_CONNECTIONS",
    "LOOPBACK_HOST",
    "MAX_PLANNED_REQUESTS",
    "OpenLoopConfig",
    "RequestFactory",
    "check_loopback",
    "run_open_loop",
]

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_CONNECTIONS = 64
# Per-request records are kept in memory; this bounds them to a few hundred MB.
MAX_PLANNED_REQUESTS = 5_000_000
_READ_SIZE = 64 * 1024
_MIN_SLEEP = 0.001
_CLOSED = -1
_PROTOCOL = -2
_CONNECT = -3

RequestFactory = Callable[[int], tuple[str, Mapping[str, str]]]
"""Given the request's index, the path (with query) and the extra headers to send."""


def check_loopback(host: str) -> None:
    """Raise NonLoopbackHost unless ``host`` is the IPv4 loopback address 127.0.0.1."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address != ipaddress.IPv4Address(LOOPBACK_HOST):
        raise NonLoopbackHost(
            f"the load generator sends only to {LOOPBACK_HOST}, not to {host!r}", field="host"
        )


@dataclass(frozen=True)
class OpenLoopConfig:
    """Where to send, how fast, for how long, and how many keep-alive connections.

    >>> OpenLoopConfig(port=8000, rate=500, duration=2).schedule.total
    1000
    """

    port: int
    rate: float
    duration: float
    warmup: float = 0.0
    connections: int = DEFAULT_CONNECTIONS
    grace: float = 2.0
    connect_timeout: float = 5.0
    lag_limit: float = 0.005
    host: str = LOOPBACK_HOST

    def __post_init__(self) -> None:
        check_loopback(self.host)
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, not {self.port}")
        if self.connections < 1:
            raise ValueError("at least one connection is needed")
        if not (self.grace >= 0 and math.isfinite(self.grace)):
            raise ValueError(f"grace must be zero or more seconds, not {self.grace!r}")
        if self.schedule.total > MAX_PLANNED_REQUESTS:
            raise ValueError(
                f"{self.schedule.total} requests planned; at most {MAX_PLANNED_REQUESTS}"
            )

    @property
    def schedule(self) -> Schedule:
        return Schedule(rate=float(self.rate), duration=float(self.duration), warmup=self.warmup)

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


async def run_open_loop(config: OpenLoopConfig, request_factory: RequestFactory) -> LoadReport:
    """Run the plan of ``config`` against the server; the report covers the measured window."""
    check_loopback(config.host)
    run = _Run(config, request_factory)
    return await run.execute()


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Run:
    """The state of one run: the pool, the line of due requests, the per-request records."""

    def __init__(self, config: OpenLoopConfig, request_factory: RequestFactory) -> None:
        self._config = config
        self._factory = request_factory
        self._schedule = config.schedule
        total = self._schedule.total
        self._sent = [math.nan] * total
        self._done = [math.nan] * total
        self._status = [0] * total
        self._found_idle = [False] * total
        self._waiting: deque[tuple[int, bytes]] = deque()
        self._idle: deque[asyncio.Future[tuple[int, bytes] | None]] = deque()
        self._finished = 0
        self._all_finished = asyncio.Event()
        self._closing = False
        self._start = 0.0
        self._ended = math.nan
        self._writers: list[asyncio.StreamWriter] = []

    async def execute(self) -> LoadReport:
        config = self._config
        connections = await asyncio.gather(
            *(self._connect() for _ in range(config.connections)), return_exceptions=True
        )
        opened = [c for c in connections if not isinstance(c, BaseException)]
        failures = [c for c in connections if isinstance(c, BaseException)]
        if failures:
            await self._stop([])
            raise failures[0]
        workers = [asyncio.create_task(self._work(connection)) for connection in opened]
        cpu_before = time.process_time()
        self._start = time.perf_counter()
        try:
            await self._release_as_planned()
            deadline = self._start + self._schedule.end + config.grace
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._all_finished.wait(), max(0.0, deadline - time.perf_counter())
                )
        finally:
            wall = time.perf_counter() - self._start
            cpu = time.process_time() - cpu_before
            await self._stop(workers)
        self._ended = self._start + wall
        return build_report(
            target=config.authority,
            schedule=self._schedule,
            connections=config.connections,
            samples=self._samples(),
            lag_limit_s=config.lag_limit,
            cpu_seconds=cpu,
            wall_seconds=wall,
        )

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._config.host, self._config.port),
            self._config.connect_timeout,
        )
        self._writers.append(writer)
        return reader, writer

    async def _release_as_planned(self) -> None:
        """Hand each request to the pool at its planned time, never waiting for responses."""
        schedule = self._schedule
        total = schedule.total
        authority = self._config.authority
        clock = time.perf_counter
        start = self._start
        index = 0
        while index < total:
            due = schedule.due(clock() - start)
            while index < due:
                path, headers = self._factory(index)
                self._release(index, format_get(authority, path, headers))
                index += 1
            if index < total:
                # Event loop timers tick in milliseconds (uvloop turns a shorter sleep into
                # none at all, a busy loop), so requests due within a tick leave together.
                await asyncio.sleep(max(_MIN_SLEEP, start + schedule.offset(index) - clock()))

    def _release(self, index: int, payload: bytes) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                self._found_idle[index] = True
                waiter.set_result((index, payload))
                return
        self._waiting.append((index, payload))

    async def _next(self) -> tuple[int, bytes] | None:
        if self._waiting:
            return self._waiting.popleft()
        if self._closing:
            return None
        waiter: asyncio.Future[tuple[int, bytes] | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._idle.append(waiter)
        return await waiter

    async def _work(self, connection: _Connection | None) -> None:
        """Serve due requests on one connection, one at a time, reconnecting after a failure."""
        clock = time.perf_counter
        parser = ResponseParser()
        try:
            while True:
                job = await self._next()
                if job is None:
                    return
                index, payload = job
                if connection is None:
                    try:
                        connection = await self._connect()
                    except (OSError, TimeoutError):
                        self._finish(index, _CONNECT)
                        continue
                    parser = ResponseParser()
                reader, writer = connection
                self._sent[index] = clock()
                try:
                    writer.write(payload)
                    response = parser.next_response()
                    while response is None:
                        data = await reader.read(_READ_SIZE)
                        if data:
                            parser.feed(data)
                        else:
                            parser.feed_eof()
                            response = parser.next_response()
                            if response is None:
                                raise ConnectionResetError("closed before a response")
                            break
                        response = parser.next_response()
                except HttpProtocolError:
                    self._finish(index, _PROTOCOL)
                    writer.close()
                    connection = None
                    continue
                except OSError:
                    self._finish(index, _CLOSED)
                    writer.close()
                    connection = None
                    continue
                self._done[index] = clock()
                self._finish(index, response.status)
                if not response.keep_alive or not parser.idle:
                    writer.close()
                    connection = None
        finally:
            if connection is not None:
                connection[1].close()

    def _finish(self, index: int, status: int) -> None:
        self._status[index] = status
        self._finished += 1
        if self._finished == self._schedule.total:
            self._all_finished.set()

    async def _stop(self, workers: list[asyncio.Task[None]]) -> None:
        self._closing = True
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        # Closing completes on the loop; waiting for it leaves no socket to the collector.
        await asyncio.gather(
            *(writer.wait_closed() for writer in self._writers), return_exceptions=True
        )

    def _samples(self) -> Samples:
        first = self._schedule.first_measured
        start = self._start
        return Samples(
            planned_s=self._schedule.offsets()[first:],
            sent_s=np.asarray(self._sent[first:], dtype=np.float64) - start,
            done_s=np.asarray(self._done[first:], dtype=np.float64) - start,
            status=np.asarray(self._status[first:], dtype=np.int64),
            found_idle=np.asarray(self._found_idle[first:], dtype=np.bool_),
            started_at=start,
            ended_s=self._ended - start,
        )
