"""``cineamate run``: the whole platform on one machine.

Order of events: check that every port is free, start or reach the stores,
apply migrations and create topics, start the six services and the public
entry under the supervisor, print the addresses once everything is ready,
and on Ctrl-C or SIGTERM stop the processes and then the embedded servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlencode

import httpx
from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from cineamate.common.errors import ConfigError
from cineamate.common.settings import (
    DEFAULT_PORTS,
    CommonSettings,
    ProcessSettings,
    load_settings,
    setting,
)
from cineamate.stack.demo import DemoPlan, run_demo
from cineamate.stack.local import LocalStack
from cineamate.stack.processes import ensure_port_free
from cineamate.stack.provision import provision
from cineamate.stack.services import PROCESS_NAMES, port_variable
from cineamate.stack.supervisor import ChildSpec, Supervisor

__all__ = ["RunSettings", "dashboard_link", "run_platform"]


class RunSettings(ProcessSettings):
    """Settings of ``cineamate run`` itself."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_")

    home: Path = setting(
        Path(".cineamate"),
        env="CINEAMATE_HOME",
        description="Directory of the embedded servers' data and logs.",
    )
    ready_timeout_seconds: float = setting(
        60.0,
        env="CINEAMATE_READY_TIMEOUT_SECONDS",
        description="How long cineamate run waits for every service to be ready.",
    )
    restart_max_seconds: float = setting(
        30.0,
        env="CINEAMATE_RESTART_MAX_SECONDS",
        description="Longest pause before restarting a crashed service.",
    )
    background_nice: int = setting(
        5,
        env="CINEAMATE_BACKGROUND_NICE",
        description="Scheduling niceness (0-19) of the services off the request path (the "
        "consumers) and of embedded PostgreSQL and Redis, so that on a small machine "
        "recommendations win the CPU; 0 for none.",
    )

    demo: bool | None = setting(
        None,
        env="CINEAMATE_DEMO",
        description="Run the demo once ready (synthetic MovieLens catalogue, an experiment of "
        "Thompson, epsilon-greedy and UCB1 against a random control, driven by the load "
        "generator); unset: only when every store is embedded. 0 off, 1 on.",
    )
    demo_rate: float = setting(
        5.0,
        env="CINEAMATE_DEMO_RATE",
        description="Recommendations per second the demo sends.",
    )

    @field_validator("demo_rate")
    @classmethod
    def _positive_rate(cls, value: float) -> float:
        if not 0 < value <= 1_000:
            raise ValueError("must lie above 0 and at most 1000")
        return value

    @field_validator("background_nice")
    @classmethod
    def _niceness(cls, value: int) -> int:
        if not 0 <= value <= 19:
            raise ValueError("must lie between 0 and 19")
        return value


def process_ports(environ: dict[str, str]) -> dict[str, int]:
    """The port of every process, from its variable or its default."""
    ports = {}
    for name in PROCESS_NAMES:
        variable = port_variable(name)
        raw = environ.get(variable, str(DEFAULT_PORTS[name]))
        try:
            port = int(raw)
        except ValueError:
            raise ConfigError(f"{variable} is invalid: {raw!r} is not a port number") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{variable} is invalid: {port} is not a port number")
        ports[name] = port
    return ports


def run_platform(settings: RunSettings, *, out: TextIO = sys.stdout) -> int:
    """Run until interrupted; returns the exit code."""
    started = time.monotonic()
    ports = process_ports(dict(os.environ))
    for name, port in ports.items():
        ensure_port_free(settings.bind_host, port, setting=port_variable(name))

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Until the supervisor's loop takes over, SIGTERM unwinds like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, interrupt)
    stack = LocalStack(settings.home.resolve(), store_nice=settings.background_nice)
    try:
        ensure_tokens(settings.home)
        stack.start()
        os.environ.update(stack.environment())
        common = load_settings(CommonSettings)
        asyncio.run(provision(common))
        children = _children(ports, stack, settings.background_nice)
        _write_run_file(settings.home, ports, stack)
        signal.signal(signal.SIGTERM, previous)
        dashboard = dashboard_link(f"http://127.0.0.1:{ports['gateway']}", common)
        demo = _demo_plan(settings, common, ports, stack)
        asyncio.run(_supervise(children, settings, ports, stack, started, dashboard, demo, out))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        (settings.home / "run.json").unlink(missing_ok=True)
        out.write("cineamate: stopped\n")
        out.flush()
    return 0


TOKENS_FILE = "tokens.env"
_TOKEN_VARIABLES = ("CINEAMATE_ADMIN_TOKEN", "CINEAMATE_READ_TOKEN", "CINEAMATE_CLIENT_KEY")


def ensure_tokens(home: Path) -> Path:
    """Give every token variable left unset a value kept in ``home/tokens.env`` across runs,
    so a local platform is never open by accident; set variables are left alone."""
    path = home / TOKENS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in _TOKEN_VARIABLES and value:
                stored[name] = value
    for name in _TOKEN_VARIABLES:
        stored.setdefault(name, secrets.token_urlsafe(24))
        os.environ.setdefault(name, stored[name])
    home.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}={value}\n" for name, value in stored.items()))
    path.chmod(0o600)
    return path


def dashboard_link(entry: str, common: CommonSettings) -> str:
    """The built-in dashboard's address, carrying the read token unless checks are off."""
    token = common.read_token.get_secret_value() if common.read_token else ""
    if common.auth_disabled or not token:
        return f"{entry}/"
    return f"{entry}/?{urlencode({'token': token})}"


# Answer requests: they keep the default priority; the others only consume topics (and
# serve low-rate reads), so they can yield the CPU and catch up a moment later.
_REQUEST_PATH = ("assignment", "gateway")


def _children(ports: dict[str, int], stack: LocalStack, background_nice: int) -> list[ChildSpec]:
    env = dict(os.environ) | stack.environment()
    # People read this output; a deployment's log shipper gets JSON by default.
    env.setdefault("CINEAMATE_LOG_FORMAT", "text")
    env.setdefault("CINEAMATE_ASSIGNMENT_SPOOL_DIR", str(stack.home / "spool" / "assignment"))
    for name, port in ports.items():
        env[port_variable(name)] = str(port)
        if name != "gateway":
            env[f"CINEAMATE_{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cineamate.cli", "serve"]
    return [
        ChildSpec(name, [*command, name], env, 0 if name in _REQUEST_PATH else background_nice)
        for name in PROCESS_NAMES
    ]


def _demo_plan(
    settings: RunSettings, common: CommonSettings, ports: dict[str, int], stack: LocalStack
) -> DemoPlan | None:
    """The demo, when asked for or (unset) when every store is embedded."""
    embedded_only = len(stack.embedded) == len(stack.environment())
    if not (settings.demo if settings.demo is not None else embedded_only):
        return None
    return DemoPlan(
        home=settings.home.resolve(),
        entry_port=ports["gateway"],
        database_url=stack.database_url,
        admin_token=common.admin_token.get_secret_value() if common.admin_token else None,
        client_key=common.client_key.get_secret_value() if common.client_key else None,
        rate=settings.demo_rate,
    )


async def _supervise(
    children: list[ChildSpec],
    settings: RunSettings,
    ports: dict[str, int],
    stack: LocalStack,
    started: float,
    dashboard: str,
    demo: DemoPlan | None,
    out: TextIO,
) -> None:
    supervisor = Supervisor(children, out=out, restart_max_seconds=settings.restart_max_seconds)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, supervisor.request_stop)

    async def when_ready() -> None:
        ready = await _announce_when_ready(supervisor, settings, ports, stack, started, dashboard)
        if ready and demo is not None:
            await run_demo(demo, lambda line: supervisor.say("demo", line))

    announce = asyncio.create_task(when_ready())
    try:
        await supervisor.run()
    finally:
        announce.cancel()


async def _announce_when_ready(
    supervisor: Supervisor,
    settings: RunSettings,
    ports: dict[str, int],
    stack: LocalStack,
    started: float,
    dashboard: str,
) -> bool:
    entry = f"http://127.0.0.1:{ports['gateway']}"
    deadline = time.monotonic() + settings.ready_timeout_seconds
    last: dict[str, object] = {}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                answer = await client.get(f"{entry}/readyz")
                last = answer.json()
                if answer.status_code == 200:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.25)
        else:
            supervisor.say(
                "cineamate", f"not ready after {settings.ready_timeout_seconds:g} s: {last}"
            )
            return False
    lines = [
        f"ready in {time.monotonic() - started:.1f} s",
        f"public entry  {entry}",
        f"{'dashboard':<13} {dashboard}",
    ]
    lines += [
        f"{name:<13} http://127.0.0.1:{ports[name]}" for name in PROCESS_NAMES if name != "gateway"
    ]
    lines += [f"{name:<13} {where}" for name, where in stack.describe().items()]
    lines.append(f"{'tokens':<13} {settings.home.resolve() / TOKENS_FILE} (Bearer tokens)")
    lines.append("press Ctrl-C to stop")
    for line in lines:
        supervisor.say("cineamate", line)
    return True


def _write_run_file(home: Path, ports: dict[str, int], stack: LocalStack) -> None:
    """Where the running platform is, for tools and tests started beside it."""
    body = {
        "pid": os.getpid(),
        "entry": f"http://127.0.0.1:{ports['gateway']}",
        "ports": ports,
        "stores": stack.environment(),
        "embedded_pids": [server.pid for server in stack.embedded],
    }
    path = home / "run.json"
    path.write_text(json.dumps(body, indent=2))
    path.chmod(0o600)
