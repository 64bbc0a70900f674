"""Pytest fixtures that give tests real servers.

The broker, PostgreSQL and Redis are the ones named by
``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` and ``REDIS_URL`` when set, and
embedded servers on free ports otherwise, started once per test session.
Tests isolate themselves with fresh databases and uniquely named topics
rather than by restarting servers.

Enabled by ``pytest_plugins = ["cineamate.stack.testing"]`` in the root conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from cineamate.common.experiments import ExperimentConfig
from cineamate.common.kafka import EventProducer, OutgoingMessage
from cineamate.common.settings import CommonSettings
from cineamate.stack.local import LocalStack
from cineamate.stack.processes import free_port
from cineamate.stack.services import PROCESS_NAMES, port_variable

__all__ = [
    "ADMIN",
    "CLIENT",
    "READ",
    "TEST_TOKENS",
    "free_ports",
    "fresh_database",
    "insert_running_experiment",
    "isolated_env",
    "new_database",
    "produce",
    "provision",
    "read_topic",
    "requires_program",
    "run_cli",
    "service_environment",
    "stack",
    "start_service",
    "stop_service",
    "temporary_stack",
    "topic_environment",
    "unique",
    "wait_for_status",
    "wait_until",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

# Tokens of platform processes started by tests; headers for each role.
TEST_TOKENS = {
    "CINEAMATE_ADMIN_TOKEN": "test-admin-token",
    "CINEAMATE_READ_TOKEN": "test-read-token",
    "CINEAMATE_CLIENT_KEY": "test-client-key",
}
ADMIN = {"Authorization": "Bearer test-admin-token"}
READ = {"Authorization": "Bearer test-read-token"}
CLIENT = {"Authorization": "Bearer test-client-key"}


def requires_program(command: str) -> str:
    """The path of ``command``; skips the test when it is missing, but fails it under CI=true,
    where a missing program means the build did not install what the suite needs."""
    path = shutil.which(command)
    if path is not None:
        return path
    reason = (
        f"{command} is not installed (see system-packages.txt; `make test` installs it as root)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    model: type[ModelT],
    *,
    expected: int,
    timeout: float = 30.0,
) -> list[ModelT]:
    """Every message of ``topic`` from the beginning, decoded as ``model``, until ``expected``
    have arrived or ``timeout`` seconds passed (without joining a consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        found: list[ModelT] = []
        deadline = time.monotonic() + timeout
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found += [model.model_validate_json(m.value) for ms in batch.values() for m in ms]
        return found
    finally:
        await consumer.stop()


async def produce(bootstrap_servers: str, messages: Iterable[OutgoingMessage]) -> None:
    """Send ``messages`` with the platform's producer; return once every one is acknowledged."""
    producer = EventProducer(bootstrap_servers, client_id="test")
    await producer.start()
    try:
        await producer.send_many(messages)
    finally:
        await producer.stop()


async def insert_running_experiment(
    database_url: str, experiment_id: str, config: ExperimentConfig
) -> None:
    """Store an experiment in status running directly, for tests of services that only read it."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO experiments (id, name, status, config) VALUES ($1, $2, 'running', $3)",
            experiment_id,
            config.name,
            config.model_dump_json(),
        )
    finally:
        await connection.close()


def free_ports() -> dict[str, str]:
    """A free port for every platform process, as the variables that set them."""
    return {port_variable(name): str(free_port()) for name in PROCESS_NAMES}


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``cineamate ARGS`` run to completion with ``env``; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "cineamate.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_status(
    url: str,
    status: int = 200,
    timeout: float = 30.0,
    process: subprocess.Popen[Any] | None = None,
) -> httpx.Response:
    """Poll ``url`` until it answers ``status``; fail with the last answer (or the exit)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode} before {url}")
        try:
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code == status:
                return answer
            last = f"{answer.status_code} {answer.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} within {timeout:g} s; last: {last}")


def wait_until(what: str, until: Callable[[], T], timeout: float = 60.0) -> T:
    """Call ``until`` every 0.3 s until it returns something true, and return that; fail
    naming ``what`` and the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = until()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def provision(env: dict[str, str]) -> None:
    """``cineamate migrate`` and ``cineamate topics`` for ``env``'s database and topics."""
    for command in ("migrate", "topics"):
        done = run_cli(env, command)
        assert done.returncode == 0, f"cineamate {command}: {done.stderr}"


def start_service(
    env: dict[str, str], name: str, logs: Path, *, timeout: float = 60.0
) -> subprocess.Popen[bytes]:
    """``cineamate serve NAME`` with ``env``, logging under ``logs``, once it listens on its
    port and its /readyz is 200.

    A free port can be taken before the service binds it: ``free_port`` draws from the
    range client connections use too, and parallel test workers draw from it at once. The
    service then exits naming the port, and another process may even answer its /readyz;
    so the service must own the listening socket, and a port taken is replaced in ``env``
    by a new one, up to three times."""
    logs.mkdir(parents=True, exist_ok=True)
    variable = port_variable(name)
    for _ in range(_PORT_ATTEMPTS):
        log_path = logs / f"{name}-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log:
            service = subprocess.Popen(
                [sys.executable, "-m", "cineamate.cli", "serve", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_ready(service, int(env[variable]), timeout, log_path):
                return service
        except BaseException:
            service.kill()
            service.wait(10)
            raise
        env[variable] = str(free_port())
    raise AssertionError(f"{name}: {_PORT_ATTEMPTS} free ports were taken before it bound them")


_PORT_ATTEMPTS = 3


def _wait_ready(
    service: subprocess.Popen[bytes], port: int, timeout: float, log_path: Path
) -> bool:
    """True once ``service`` listens on ``port`` and answers /readyz 200; False if it
    exited because the port was taken."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.poll() is not None:
            output = log_path.read_text(errors="replace")
            if f"port {port} on 127.0.0.1 is in use" in output:
                return False
            raise AssertionError(f"the service exited with {service.returncode}: {output[-2000:]}")
        if _listens(service.pid, port):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0)
                if answer.status_code == 200:
                    return True
                last = f"{answer.status_code} {answer.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"port {port} /readyz never answered 200 within {timeout:g} s: {last}")


def _listens(pid: int, port: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def stop_service(service: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within 30 s."""
    if service.poll() is None:
        service.terminate()
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(10)


def topic_environment(tag: str) -> dict[str, str]:
    """Variables naming every platform topic ``<topic>-<tag>``: topics of one's own."""
    env = {}
    for field in CommonSettings.model_fields:
        if field.endswith("_topic"):
            topic = field.removesuffix("_topic")
            env[f"CINEAMATE_{topic.upper()}_TOPIC"] = f"{topic.replace('_', '-')}-{tag}"
    return env


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def temporary_stack(
    prefix: str = "cineamate-test-", environ: Mapping[str, str] = os.environ
) -> Iterator[LocalStack]:
    """A ``LocalStack`` whose embedded servers live in a temporary folder removed on exit.
    With an empty ``environ`` every server is embedded and this stack's own: for tests that
    stop or freeze a server, which the session's stack must never see."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    # Embedded PostgreSQL runs as an unprivileged user under root and must reach this folder.
    home.chmod(0o755)
    local = LocalStack(home, durable=False, environ=environ)
    try:
        local.start()
        yield local
    finally:
        local.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """The session's broker, PostgreSQL and Redis."""
    with temporary_stack() as local:
        yield local


@contextlib.contextmanager
def new_database(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the server of ``server_url``, dropped on exit."""
    name = "t_" + uuid.uuid4().hex[:12]

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def service_environment(servers: LocalStack, database_url: str) -> dict[str, str]:
    """Environment for platform processes on ``servers`` with the database ``database_url``:
    topics of their own, free ports and the test tokens."""
    env = dict(os.environ)
    env.update(servers.environment())
    env["DATABASE_URL"] = database_url
    tag = uuid.uuid4().hex[:8]
    env.update(topic_environment(tag))
    env.update(free_ports())
    env.update(TEST_TOKENS)
    env["CINEAMATE_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def fresh_database(stack: LocalStack) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    with new_database(stack.database_url) as url:
        yield url


@pytest.fixture
def isolated_env(stack: LocalStack, fresh_database: str) -> dict[str, str]:
    """Environment for platform processes: the session's servers, a fresh database,
    topics of their own, free ports and a home of their own."""
    return service_environment(stack, fresh_database)


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")
