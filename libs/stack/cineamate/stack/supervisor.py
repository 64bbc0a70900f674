"""Keeps the platform's processes running, with their output in one stream.

Each child's output lines are prefixed with its name. A child that exits is
restarted after a backoff that doubles up to a ceiling and resets once the
child has stayed up for a while. ``stop`` sends SIGTERM (the services finish
their batch and commit), waits, and kills what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from cineamate.stack.processes import die_with_parent

__all__ = ["ChildSpec", "Supervisor"]


@dataclass(frozen=True)
class ChildSpec:
    """A process to keep running."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Added to the child's scheduling niceness (lower priority) when above 0.
    nice: int = 0


class Supervisor:
    """Runs children until ``request_stop``, restarting crashed ones with backoff.

    >>> policy = ChildSpec("policy", ["cineamate", "serve", "policy"])
    >>> await Supervisor([policy]).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        out: TextIO = sys.stdout,
        restart_max_seconds: float = 30.0,
        stable_after_seconds: float = 30.0,
        stop_timeout_seconds: float = 15.0,
    ) -> None:
        self._children = list(children)
        self._out = out
        self._restart_max_seconds = restart_max_seconds
        self._stable_after_seconds = stable_after_seconds
        self._stop_timeout_seconds = stop_timeout_seconds
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._width = max((len(child.name) for child in children), default=8)

    @property
    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self._processes.items()}

    def request_stop(self) -> None:
        self._stopping.set()

    def say(self, name: str, line: str) -> None:
        self._out.write(f"{name:<{self._width}} | {line}\n")
        self._out.flush()

    async def run(self) -> None:
        """Run every child until a stop is requested, then stop them all."""
        tasks = [asyncio.create_task(self._keep_running(child)) for child in self._children]
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            await self._stop_all()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _keep_running(self, child: ChildSpec) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.5
        while not self._stopping.is_set():
            started = loop.time()
            process = await asyncio.create_subprocess_exec(
                *child.argv,
                env=child.env or None,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(nice=child.nice),
            )
            self._processes[child.name] = process
            assert process.stdout is not None
            pump = asyncio.create_task(self._pump(child.name, process.stdout))
            code = await process.wait()
            await pump
            if self._stopping.is_set():
                return
            if loop.time() - started > self._stable_after_seconds:
                delay = 0.5
            self.say(child.name, f"exited with code {code}; restarting in {delay:.1f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self._restart_max_seconds)

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit
                line = (await stream.read(65_536)) + b"\n"
            if not line:
                return
            self.say(name, line.decode(errors="replace").rstrip("\n"))

    async def _stop_all(self) -> None:
        # The entry point first, so nothing new arrives while the services drain.
        running = [p for p in reversed(list(self._processes.values())) if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.wait_for(p.wait(), self._stop_timeout_seconds) for p in running]
        results = await asyncio.gather(*waits, return_exceptions=True)
        for process, result in zip(running, results, strict=True):
            if isinstance(result, TimeoutError):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
