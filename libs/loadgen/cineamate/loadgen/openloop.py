"""An open-loop HTTP/1.1 load engine on asyncio protocols, for 127.0.0.1 only.

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
from typing import cast

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
    "ResponseHandler",
    "check_loopback",
    "run_open_loop",
]

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_CONNECTIONS = 64
# Per-request records are kept in memory; this bounds them to a few hundred MB.
MAX_PLANNED_REQUESTS = 5_000_000
_READ_SIZE = 64 * 1024
_MIN_SLEEP = 0.001
_RECONNECT_PAUSE = 0.010
_CLOSED = -1
_PROTOCOL = -2
_CONNECT = -3

RequestFactory = Callable[[int], tuple[str, Mapping[str, str]]]
"""Given the request's index, the path (with query) and the extra headers to send."""

ResponseHandler = Callable[[int, int, bytes], None]
"""Called as request ``index`` ends, with its status (below 0 for a transport failure,
see ``TRANSPORT_ERRORS``) and its body (empty without a response)."""


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


async def run_open_loop(
    config: OpenLoopConfig,
    request_factory: RequestFactory,
    on_response: ResponseHandler | None = None,
) -> LoadReport:
    """Run the plan of ``config`` against the server; the report covers the measured window.

    ``on_response`` sees every request end, warm-up included, on the engine's loop: it
    must be quick, as the next request on that connection waits for it."""
    check_loopback(config.host)
    run = _Run(config, request_factory, on_response)
    return await run.execute()


class _Run:
    """The state of one run: the pool, the line of due requests, the per-request records.

    Connections are protocol objects, not stream tasks: a response is parsed in the
    callback that receives its bytes, and the next request in line is written from
    there, so a request costs no task switch on either side. Each connection carries
    one request at a time (no pipelining).
    """

    def __init__(
        self,
        config: OpenLoopConfig,
        request_factory: RequestFactory,
        on_response: ResponseHandler | None = None,
    ) -> None:
        self._config = config
        self._factory = request_factory
        self._on_response = on_response
        self._schedule = config.schedule
        total = self._schedule.total
        self._sent = [math.nan] * total
        self._done = [math.nan] * total
        self._status = [0] * total
        self._found_idle = [False] * total
        self._waiting: deque[tuple[int, bytes]] = deque()
        self._idle: list[_Connection] = []
        self._connections: list[_Connection] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._finished = 0
        self._all_finished = asyncio.Event()
        self._closing = False
        self._start = 0.0
        self._ended = math.nan

    async def execute(self) -> LoadReport:
        config = self._config
        opened = await asyncio.gather(
            *(self._open() for _ in range(config.connections)), return_exceptions=True
        )
        failures = [c for c in opened if isinstance(c, BaseException)]
        if failures:
            self._stop()
            raise failures[0]
        self._idle.extend(c for c in opened if not isinstance(c, BaseException))
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
            self._stop()
            # Closing completes on the loop; waiting for it leaves no socket to the collector.
            await asyncio.sleep(0)
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

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        transport, connection = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(self), self._config.host, self._config.port),
            self._config.connect_timeout,
        )
        # uvloop may call connection_made only after create_connection has returned.
        connection.connection_made(transport)
        self._connections.append(connection)
        return connection

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
        if self._idle:
            self._found_idle[index] = True
            self._idle.pop().send(index, payload)
        else:
            self._waiting.append((index, payload))

    def answered(
        self, connection: _Connection, index: int, status: int, reusable: bool, body: bytes = b""
    ) -> None:
        """``connection`` got the response to request ``index``; it takes the next one."""
        self._done[index] = time.perf_counter()
        self._finish(index, status, body)
        if reusable:
            self._free(connection)
        else:
            connection.close()
            self._replace()

    def failed(self, index: int, status: int) -> None:
        """Request ``index`` ended without a response; its connection is gone."""
        self._finish(index, status)
        self._replace()

    def lost(self, connection: _Connection) -> None:
        """An idle ``connection`` closed; another one takes its place."""
        if connection in self._idle:
            self._idle.remove(connection)
        self._replace()

    def sent(self, index: int) -> None:
        self._sent[index] = time.perf_counter()

    def _free(self, connection: _Connection) -> None:
        if self._closing:
            return
        if self._waiting:
            connection.send(*self._waiting.popleft())
        else:
            self._idle.append(connection)

    def _replace(self) -> None:
        """Open a connection in place of a lost one; a request that waits for it and cannot
        get it fails as a connect error, as the next one in line then tries again."""
        if self._closing:
            return
        task = asyncio.create_task(self._reconnect())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _reconnect(self) -> None:
        while not self._closing:
            try:
                connection = await self._open()
            except (OSError, TimeoutError):
                if self._waiting:
                    index, _ = self._waiting.popleft()
                    self._finish(index, _CONNECT)
                    continue
                await asyncio.sleep(_RECONNECT_PAUSE)
                continue
            self._free(connection)
            return

    def _finish(self, index: int, status: int, body: bytes = b"") -> None:
        self._status[index] = status
        self._finished += 1
        if self._on_response is not None:
            self._on_response(index, status, body)
        if self._finished == self._schedule.total:
            self._all_finished.set()

    def _stop(self) -> None:
        self._closing = True
        for task in self._connecting:
            task.cancel()
        for connection in self._connections:
            connection.close()

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


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses responses as their bytes arrive."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser()
        self._index = -1
        self._dropped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, index: int, payload: bytes) -> None:
        assert self._transport is not None
        if self._transport.is_closing():
            self._run.failed(index, _CLOSED)
            return
        self._index = index
        self._run.sent(index)
        self._transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        self._deliver()

    def eof_received(self) -> bool:
        self._parser.feed_eof()
        self._deliver()
        if self._index >= 0:
            self._fail(_CLOSED)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._dropped:
            return
        if self._index >= 0:
            self._fail(_CLOSED)
        else:
            self._dropped = True
            self._run.lost(self)

    def close(self) -> None:
        """Close without reporting anything; the caller accounts for the request."""
        self._index = -1
        self._dropped = True
        if self._transport is not None:
            self._transport.close()

    def _deliver(self) -> None:
        try:
            response = self._parser.next_response()
        except HttpProtocolError:
            self._fail(_PROTOCOL)
            return
        if response is None:
            return
        index = self._index
        if index < 0:
            # Bytes nobody asked for: the connection is out of step.
            self.close()
            self._run.lost(self)
            return
        self._index = -1
        reusable = response.keep_alive and self._parser.idle
        self._run.answered(self, index, response.status, reusable, response.body)

    def _fail(self, status: int) -> None:
        index = self._index
        self.close()
        self._run.failed(index, status)
