"""What the service benchmarks share: a temporary stack, one service process, and the
same-run figures around it (a bare Kafka fetch, committed offsets, CPU shares).

Each service benchmark starts the embedded broker, PostgreSQL and Redis of a
``LocalStack`` in a temporary folder, gives every run its own topics, consumer
group and ports, and starts the service as in production: ``python -m
cineamate.cli serve <name>`` in a process of its own, on uvloop, logging JSON
at WARNING into a file that is shown when the service fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psutil
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from bench._machine import machine_cpu_seconds
from bench._platform import make_home
from cineamate.common.experiments import ExperimentConfig, VariantConfig
from cineamate.common.kafka import EventProducer, OutgoingMessage
from cineamate.stack.local import LocalStack
from cineamate.stack.processes import spawn, stop_process
from cineamate.stack.testing import (
    free_ports,
    insert_running_experiment,
    run_cli,
    topic_environment,
)

# The MovieLens-1M catalogue: item ids 1..3706.
N_ITEMS = 3_706
POLL_SECONDS = 0.05
# Records per getmany, as the services' default (CINEAMATE_CONSUMER_MAX_RECORDS).
FETCH_MAX_RECORDS = 2_000

T = TypeVar("T")


class ServiceBenchFailed(RuntimeError):
    """A service did not start, exited, or did not get through its input in time."""


def run_loop(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on uvloop, the loop the services run on."""
    return uvloop.run(coroutine_factory())


def cli(env: dict[str, str], *args: str) -> None:
    """``cineamate <args>`` with ``env``; raises when it fails."""
    done = run_cli(env, *args)
    if done.returncode != 0:
        raise RuntimeError(f"cineamate {' '.join(args)} failed: {done.stderr[-2000:]}")


def service_env(stack: LocalStack, tag: str) -> dict[str, str]:
    """A service's environment: the stack, topics named after ``tag``, free ports."""
    env = dict(os.environ) | stack.environment()
    env.update(topic_environment(tag))
    env.update(free_ports())
    # Token checks stay on, as in production; the benchmark reads with its own token.
    env["CINEAMATE_ADMIN_TOKEN"] = secrets.token_hex(16)
    env["CINEAMATE_READ_TOKEN"] = secrets.token_hex(16)
    env["CINEAMATE_LOG_LEVEL"] = "WARNING"
    env["CINEAMATE_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextmanager
def temporary_stack(
    stack_env: Callable[[LocalStack], dict[str, str]],
) -> Iterator[tuple[LocalStack, Path]]:
    """A started, migrated ``LocalStack`` in a temporary folder, removed afterwards;
    ``stack_env`` gives the environment the migration runs with."""
    home = make_home("stack")
    stack = LocalStack(home, durable=False, environ={})
    try:
        stack.start()
        cli(stack_env(stack), "migrate")
        yield stack, home
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


def start_experiment(
    env: dict[str, str],
    experiment_id: str,
    name: str,
    variants: Iterable[tuple[str, str]],
    **config: Any,
) -> None:
    """Make the run's topics and a running experiment on the MovieLens catalogue with
    ``variants`` (name, policy type; the last one is the control) and ``config``."""
    cli(env, "topics")
    named = list(variants)
    experiment = ExperimentConfig(
        name=name,
        catalogue=list(range(1, N_ITEMS + 1)),
        policies=[
            VariantConfig(name=variant, type=policy_type, control=variant == named[-1][0])
            for variant, policy_type in named
        ],
        **config,
    )
    run_loop(lambda: insert_running_experiment(env["DATABASE_URL"], experiment_id, experiment))


def median(runs: list[dict[str, Any]], key: str) -> float:
    """The median of ``key`` over the runs."""
    return float(np.median([run[key] for run in runs]))


async def produce(bootstrap: str, messages: Iterable[OutgoingMessage], client_id: str) -> float:
    """Produce ``messages`` acknowledged; the seconds it took."""
    producer = EventProducer(bootstrap, client_id=client_id)
    await producer.start()
    try:
        started = time.perf_counter()
        await producer.send_many(messages)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def fetch_all(
    bootstrap: str, partitions: list[TopicPartition], expected: int
) -> dict[str, Any]:
    """Baseline: fetch every message of ``partitions`` with getmany as the services do
    (partitions assigned, no group) and do nothing with them; the time and rate."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        per_partition = {f"{tp.topic}:{tp.partition}": 0 for tp in partitions}
        seen = 0
        started = time.perf_counter()
        deadline = started + 120
        while seen < expected and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=FETCH_MAX_RECORDS)
            for tp, messages in batch.items():
                per_partition[f"{tp.topic}:{tp.partition}"] += len(messages)
                seen += len(messages)
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    if seen != expected:
        raise ServiceBenchFailed(f"baseline consumer read {seen} messages, expected {expected}")
    return {"seconds": seconds, "per_s": seen / seconds, "messages_per_partition": per_partition}


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User plus system CPU seconds used so far by each named process and its children
    (except for this process, whose children are the servers and the service), and by the
    whole machine (busy, and stolen by the hypervisor)."""
    used = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            total = sum(process.cpu_times()[:2])
            if pid != os.getpid():
                for child in process.children(recursive=True):
                    total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
        used[name] = total
    return used | machine_cpu_seconds()


def cpu_shares(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Cores used per process over ``seconds``, and by every other process on the machine."""
    shares = {name: (after[name] - before[name]) / seconds for name in after if name in before}
    ours = sum(
        share for name, share in shares.items() if name not in ("machine_busy", "machine_steal")
    )
    shares["other_processes"] = max(shares.pop("machine_busy") - ours, 0.0)
    return shares


_CONSUMER_FAMILIES = {
    "cineamate_consumer_processing_seconds_sum": "processing_seconds_sum",
    "cineamate_consumer_processing_seconds_count": "batches",
    "cineamate_consumer_batch_size_records_sum": "batch_records_sum",
    "cineamate_consumer_batch_size_records_count": "batch_size_count",
    "cineamate_consumer_batch_failures_total": "batch_failures",
}


def consumer_metrics(text: str, group: str, summed: dict[str, str]) -> dict[str, float]:
    """From a ``/metrics`` page: the batch histograms and failures of consumer ``group``, and
    each sample named in ``summed`` (sample -> key) summed over its labels."""
    found = dict.fromkeys([*_CONSUMER_FAMILIES.values(), *summed.values()], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _CONSUMER_FAMILIES and sample.labels.get("group") == group:
                found[_CONSUMER_FAMILIES[sample.name]] = float(sample.value)
            elif sample.name in summed:
                found[summed[sample.name]] += float(sample.value)
    return found


def batch_means(metrics: dict[str, float]) -> dict[str, float]:
    """Records per batch, milliseconds per batch and records per second inside batches."""
    batches = metrics["batches"] or 1.0
    return {
        "batch_records_mean": metrics["batch_records_sum"] / batches,
        "batch_ms_mean": 1_000 * metrics["processing_seconds_sum"] / batches,
        "records_per_processing_s": metrics["batch_records_sum"]
        / max(metrics["processing_seconds_sum"], 1e-9),
    }


class ServiceProcess:
    """One ``cineamate serve <name>`` process, its output in ``log_path``.

    >>> service = ServiceProcess("policy", env, home / "policy.log")  # doctest: +SKIP
    >>> service.check_alive()  # doctest: +SKIP
    """

    failure: type[Exception] = ServiceBenchFailed

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self._log = open(log_path, "ab")
        self.log_path = log_path
        self.started = time.perf_counter()
        self.process = spawn(
            [sys.executable, "-m", "cineamate.cli", "serve", name], log=self._log, env=env
        )
        self.base_url = f"http://127.0.0.1:{env[f'CINEAMATE_{name.upper()}_PORT']}"
        self.headers = {"Authorization": f"Bearer {env['CINEAMATE_READ_TOKEN']}"}

    def stop_process(self) -> None:
        stop_process(self.process, timeout=30)
        self._log.close()

    def log_tail(self) -> str:
        """The end of the service's log: the temporary folder is gone once the benchmark ends."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:].strip() or "(empty log)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise self.failure(
                f"the {self.name} service exited ({self.process.returncode}): {self.log_tail()}"
            )


class CommittedOffsets:
    """The input offsets a consumer group has committed."""

    def __init__(self, bootstrap: str, group: str, inputs: list[TopicPartition]) -> None:
        self._group = group
        self._inputs = inputs
        self._coordinator: int | None = None
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def start(self) -> None:
        await self._admin.start()

    async def stop(self) -> None:
        await self._admin.close()

    async def committed(self) -> int:
        """Input events the group has committed, over every input partition."""
        if self._coordinator is None:
            self._coordinator = await self._admin.find_coordinator(self._group)
        offsets = await self._admin.list_consumer_group_offsets(
            self._group, self._coordinator, partitions=self._inputs
        )
        return sum(max(meta.offset, 0) for meta in offsets.values())


class ConsumingService(ServiceProcess):
    """A service whose consumer group works through pre-produced input, read over HTTP
    (async) and through the group's committed offsets.

    ``summed`` names the ``/metrics`` samples ``metrics()`` adds up over their labels
    (sample -> key), next to the group's batch figures."""

    summed: dict[str, str] = {"cineamate_dead_letters_total": "dead_letters"}

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_path: Path,
        group: str,
        inputs: list[TopicPartition],
    ) -> None:
        super().__init__(name, env, log_path)
        self.group = group
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=5)
        self._offsets = CommittedOffsets(env["KAFKA_BOOTSTRAP_SERVERS"], group, inputs)
        self._offsets_started = False

    async def stop(self) -> None:
        await self.http.aclose()
        self.stop_process()
        if self._offsets_started:
            await self._offsets.stop()

    async def committed(self) -> int:
        """Input events the service's consumer group has committed."""
        if not self._offsets_started:
            await self._offsets.start()
            self._offsets_started = True
        return await self._offsets.committed()

    async def first_commit(self, deadline: float) -> int:
        """Poll until the group commits anything (it has joined and processed a batch)."""
        while (committed := await self.committed()) == 0:
            self.check_alive()
            if time.perf_counter() > deadline:
                raise self.failure(f"no commit in time: {self.log_tail()}")
            await asyncio.sleep(POLL_SECONDS)
        return committed

    async def all_committed(
        self, committed: int, expected: int, deadline: float
    ) -> tuple[int, int]:
        """Poll from ``committed`` until the group has committed ``expected`` input events;
        what it committed and the number of polls."""
        polls = 0
        while committed < expected:
            self.check_alive()
            if time.perf_counter() > deadline:
                raise self.failure(
                    f"{committed} of {expected} events committed in time: {self.log_tail()}"
                )
            await asyncio.sleep(POLL_SECONDS)
            committed = await self.committed()
            polls += 1
        return committed, polls

    async def wait_ready(self, deadline: float) -> None:
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                if (await self.http.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(POLL_SECONDS)
        raise self.failure(f"/readyz never answered 200: {self.log_tail()}")

    async def metrics(self) -> dict[str, float]:
        """The group's batch figures and the ``summed`` samples, from ``/metrics``."""
        return consumer_metrics((await self.http.get("/metrics")).text, self.group, self.summed)

    async def drain(self, expected: int, server_pids: dict[str, int | None]) -> dict[str, Any]:
        """Wait for ``/readyz`` and the first commit, then until ``expected`` input events are
        committed: the rate over that window (start-up and group join left out), CPU shares,
        and the metrics at both ends of the window."""
        deadline = self.started + 60 + expected / 2_000
        await self.wait_ready(deadline)
        ready = time.perf_counter()
        committed_at_first = await self.first_commit(deadline)
        first = time.perf_counter()
        pids = {"service": self.process.pid, **server_pids, "bench": os.getpid()}
        cpu_at_first = cpu_seconds(pids)
        metrics_at_first = await self.metrics()
        committed, polls = await self.all_committed(committed_at_first, expected, deadline)
        done = time.perf_counter()
        cpu_at_done = cpu_seconds(pids)
        metrics_at_done = await self.metrics()
        window = done - first
        shares = cpu_shares(cpu_at_first, cpu_at_done, window)
        return {
            "start_s": ready - self.started,
            "first_commit_s": first - self.started,
            "end_to_end_s": done - self.started,
            "window_s": window,
            "committed": committed,
            "committed_at_first_poll": committed_at_first,
            "polls_in_window": polls,
            "events_per_s": (expected - committed_at_first) / window,
            "events_per_s_from_ready": expected / (done - ready),
            "cpu_share_in_window": shares,
            "service_cpu_us_per_event": 1e6
            * shares["service"]
            * window
            / (expected - committed_at_first),
            "metrics_at_first": metrics_at_first,
            "metrics_at_done": metrics_at_done,
        }
