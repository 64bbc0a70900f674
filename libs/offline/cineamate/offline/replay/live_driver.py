"""Drive the running platform with a log's events on an accelerated event-time clock.

Event i is due ``(t_i - t_0) / speedup`` wall seconds after the start, whatever
the platform answers (open loop): the plan never waits for a response, at most
``concurrency`` requests are in flight, and how late each event was sent is
recorded. For each event the driver asks the platform for a slate for the
logged user (the platform assigns the user to a variant, stickily); when the
logged item is in the slate the event *matches*, and when it is also a click
the driver sends the click, as the logged user would have.

Errors: an unreachable platform is ``DependencyUnavailable``; a refused token is
``ConfigError`` naming the variable that holds it; any other failed request is
counted against its event and the run goes on.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from cineamate.common.errors import CineamateError, ConfigError, DependencyUnavailable
from cineamate.offline.replay.log import ReplayLog

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DriveResult",
    "Pacing",
    "PlatformClient",
    "cohort_attributes",
    "drive",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_CONCURRENCY = 32
# A new or just started experiment reaches every assignment instance within a second.
_NOT_YET_VISIBLE = frozenset({"not_found.experiment", "conflict.not_running"})
_VISIBILITY_WAIT_SECONDS = 5.0
_RETRY_PAUSE_SECONDS = 0.1
_FAILURES_KEPT = 5


@dataclass(frozen=True)
class Pacing:
    """How fast event time runs on the wall clock: ``speedup`` event seconds per wall second.

    >>> times = np.array([0, 3_600, 7_200])
    >>> Pacing(speedup=3_600.0).offsets(times).tolist()
    [0.0, 1.0, 2.0]
    >>> Pacing.for_rate(times, rate=4.0).speedup
    14400.0
    """

    speedup: float

    def __post_init__(self) -> None:
        if not self.speedup > 0:
            raise ConfigError(f"--speedup must be positive, not {self.speedup!r}")

    @classmethod
    def for_rate(cls, times: IntArray, rate: float) -> Pacing:
        """The speedup that sends ``times`` at ``rate`` events per wall second on average."""
        if not (rate > 0 and math.isfinite(rate)):
            raise ConfigError(f"--rate must be a positive number, not {rate!r}")
        span = float(times[-1] - times[0]) if times.size else 0.0
        if times.size < 2 or span == 0.0:
            return cls(math.inf)
        return cls(span * rate / (times.size - 1))

    def offsets(self, times: IntArray) -> FloatArray:
        """Wall seconds after the start at which each event is due."""
        if times.size == 0:
            return np.zeros(0)
        offsets: FloatArray = (times - times[0]).astype(np.float64) / self.speedup
        return offsets


def cohort_attributes(label: str) -> dict[str, str]:
    """A log cohort as the query attributes of a recommendation request.

    >>> cohort_attributes("F:25-34"), cohort_attributes("device=ios,plan=free")
    ({'gender': 'F', 'age': '25-34'}, {'device': 'ios', 'plan': 'free'})
    >>> cohort_attributes("all")
    {}
    """
    if "=" in label:
        return dict(part.split("=", 1) for part in label.split(","))
    gender, separator, age = label.partition(":")
    return {"gender": gender, "age": age} if separator else {}


class PlatformClient:
    """The platform's public API as the replay uses it: experiments with the admin
    token, recommendations and clicks with the client key.

    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with PlatformClient("http://127.0.0.1:8000", admin, client) as platform:
    ...         experiment = await platform.create_experiment(body)
    """

    def __init__(
        self,
        url: str,
        admin_token: str | None,
        client_key: str | None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._admin = _bearer(admin_token) | {"x-cineamate-actor": "replay-live"}
        self._client = _bearer(client_key)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(base_url=self.url, limits=limits, timeout=timeout)

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def check_client_key(self) -> None:
        """Fail early, without a side effect, when the client key is refused: an empty
        batch of clicks is rejected for its body only after the key is accepted."""
        answer = await self._send("POST", "/api/events/clicks", self._client, json=[])
        _refused(answer, "CINEAMATE_CLIENT_KEY")

    async def create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an experiment and start it; its document as the platform returns it."""
        created = await self._admin_call("POST", "/api/experiments", body)
        path = f"/api/experiments/{created['id']}"
        started: dict[str, Any] = await self._admin_call("PATCH", path, {"status": "running"})
        return started

    async def recommend(
        self, experiment_id: str, user_id: str, k: int, attributes: dict[str, str]
    ) -> dict[str, Any]:
        """A slate for ``user_id``; waits briefly for an experiment that was just started."""
        params = {**attributes, "experiment_id": experiment_id, "user_id": user_id, "k": str(k)}
        deadline = time.monotonic() + _VISIBILITY_WAIT_SECONDS
        while True:
            answer = await self._send(
                "GET", "/api/movies/recommendations", self._client, params=params
            )
            _refused(answer, "CINEAMATE_CLIENT_KEY")
            if _error_code(answer) in _NOT_YET_VISIBLE and time.monotonic() < deadline:
                await asyncio.sleep(_RETRY_PAUSE_SECONDS)
                continue
            serve: dict[str, Any] = _body(answer)
            return serve

    async def click(self, serve_id: str, movie_id: int, user_id: str) -> None:
        """Send one click on an item of a serve."""
        click = {"serve_id": serve_id, "movie_id": movie_id, "user_id": user_id}
        answer = await self._send("POST", "/api/events/clicks", self._client, json=click)
        _refused(answer, "CINEAMATE_CLIENT_KEY")
        _body(answer)

    async def _admin_call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        answer = await self._send(method, path, self._admin, json=body)
        _refused(answer, "CINEAMATE_ADMIN_TOKEN")
        return _body(answer)

    async def _send(
        self, method: str, path: str, headers: dict[str, str], **request: Any
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, headers=headers, **request)
        except httpx.ConnectError as exc:
            raise DependencyUnavailable(
                f"cannot reach the platform at {self.url} ({type(exc).__name__}); is it "
                "running (`make run`)?"
            ) from exc
        except httpx.TransportError as exc:
            raise _RequestFailed(f"{method} {path}: {type(exc).__name__}") from exc


@dataclass
class DriveResult:
    """What happened to each driven event."""

    # Index of the variant that served the event (in the order asked for), -1 if none did.
    variant: IntArray
    matched: BoolArray
    clicked: BoolArray
    # Wall seconds between when each event was due and when its request was sent.
    lateness: FloatArray
    # Wall seconds from sending each event's request to its slate.
    latency: FloatArray
    seconds: float = 0.0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, events: int) -> DriveResult:
        return cls(
            variant=np.full(events, -1, dtype=np.int64),
            matched=np.zeros(events, dtype=bool),
            clicked=np.zeros(events, dtype=bool),
            lateness=np.zeros(events),
            latency=np.zeros(events),
        )

    @property
    def rate(self) -> float:
        """Events per wall second over the whole run."""
        return self.variant.size / self.seconds if self.seconds > 0 else math.inf


async def drive(
    platform: PlatformClient,
    experiment_id: str,
    events: ReplayLog,
    variants: tuple[str, ...],
    *,
    k: int,
    pacing: Pacing,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[int], None] | None = None,
) -> DriveResult:
    """Send every event of ``events`` to the platform on ``pacing``'s clock.

    ``on_progress`` is called with 1 as each event finishes.
    """
    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    result = DriveResult.empty(len(events))
    variant_index = {name: index for index, name in enumerate(variants)}
    attributes = [cohort_attributes(label) for label in events.cohort_labels]
    offsets = pacing.offsets(events.times)
    slots = asyncio.Semaphore(concurrency)

    async def send(event: int) -> None:
        user = str(events.users[event])
        item = int(events.items[event])
        try:
            sent = time.perf_counter()
            serve = await platform.recommend(
                experiment_id, user, k, attributes[events.cohorts[event]]
            )
            result.latency[event] = time.perf_counter() - sent
            result.variant[event] = variant_index.get(serve["variant"], -1)
            if any(entry["movie_id"] == item for entry in serve["items"]):
                result.matched[event] = True
                if events.rewards[event] >= 1.0:
                    await platform.click(serve["serve_id"], item, user)
                    result.clicked[event] = True
        except _RequestFailed as exc:
            result.failed += 1
            if len(result.failures) < _FAILURES_KEPT:
                result.failures.append(f"event {event}: {exc.message}")
        finally:
            slots.release()
            if on_progress is not None:
                on_progress(1)

    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.TaskGroup() as group:
            for event in range(len(events)):
                due = start + offsets[event]
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                await slots.acquire()
                result.lateness[event] = max(0.0, loop.time() - due)
                group.create_task(send(event))
    except* CineamateError as group_error:
        raise group_error.exceptions[0] from None
    result.seconds = loop.time() - start
    return result


class _RequestFailed(CineamateError):
    """One request failed in a way that does not stop the run."""

    default_code = "unavailable.request"


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _error_code(answer: httpx.Response) -> str | None:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _refused(answer: httpx.Response, variable: str) -> None:
    if answer.status_code in (401, 403):
        raise ConfigError(
            f"the platform refused {variable} ({answer.status_code} {_error_code(answer)}); "
            f"set {variable} to the platform's token (`make run` writes it to "
            ".cineamate/tokens.env)"
        )


def _body(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        raise _RequestFailed(f"{answer.status_code} {_error_code(answer)}: {answer.text[:200]}")
    return answer.json()
