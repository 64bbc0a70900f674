"""Spawning child processes that cannot outlive the platform.

Every child runs in its own session (so a terminal's Ctrl-C reaches only the
supervisor, which then stops children in order) and asks the kernel to
signal it when its parent dies, so even a SIGKILLed supervisor leaves no
server behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from cineamate.common.errors import ConfigError

__all__ = [
    "PortInUse",
    "die_with_parent",
    "ensure_port_free",
    "free_port",
    "spawn",
    "stop_process",
    "wait_for_port",
]

_PR_SET_PDEATHSIG = 1


class PortInUse(ConfigError):
    """A port the platform must bind is taken."""

    default_code = "invalid.port_in_use"


def die_with_parent(sig: int = signal.SIGTERM, *, nice: int = 0) -> Callable[[], None]:
    """A preexec function: the child receives ``sig`` when the parent exits, and runs
    ``nice`` steps below the parent's priority."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)
        if nice > 0:
            os.nice(nice)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log: IO[Any] | int | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    death_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, tied to this process's life, ``nice``
    steps below this process's priority (the processes it forks inherit that)."""
    return subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        user=user,
        start_new_session=True,
        preexec_fn=die_with_parent(death_signal, nice=nice),
    )


def stop_process(
    process: subprocess.Popen[bytes] | psutil.Process,
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 10.0,
) -> None:
    """Signal a process, wait for it, and kill it if it does not stop in time."""
    try:
        process.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return
    try:
        process.wait(timeout)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        process.kill()
        process.wait(5)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int, *, setting: str) -> None:
    """Raise PortInUse naming the setting to change when ``port`` is taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"port {port} on {host} is in use; free it or set {setting} to another port",
                field=setting,
            ) from exc


def wait_for_port(
    host: str, port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:g} s")


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
