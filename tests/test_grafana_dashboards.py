"""The Grafana provisioning and dashboards in deploy/grafana, checked and run for real.

The fast tests read the files: the datasources come from the environment,
every panel names a provisioned datasource, SQL panels are scoped to the
selected experiment, panels do not overlap, and the query expander
(tests/helpers/grafana_queries.py) expands what it knows as Grafana does and
refuses anything else.

The integration test starts the six services and a Prometheus server (Debian
package ``prometheus``) scraping them every second, drives recommendations
and clicks (some late, one on an item that was not served) through the HTTP
API, publishes one failed serve (which the guardrails roll back), then runs
every variable, annotation and panel query of every dashboard: each SQL
query against the database the services filled, each PromQL expression on
Prometheus. Every one must return data.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # comes with uvicorn[standard]

from cineamate.common.events import ServedItem, ServeEvent
from cineamate.common.kafka import EventProducer, OutgoingMessage
from cineamate.stack.processes import free_port
from cineamate.stack.testing import (
    ADMIN,
    CLIENT,
    provision,
    requires_program,
    start_service,
    stop_service,
    wait_for_status,
)

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"


def _load_helper(name: str) -> ModuleType:
    # Test modules are imported by path (--import-mode=importlib), so is their helper.
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "helpers" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gq = _load_helper("grafana_queries")

SERVICES = ("assignment", "reward", "policy", "analytics", "guardrails", "decision")
SCRAPE_SECONDS = 1
# What Grafana would put for its global variables, for a range that holds the whole test.
DURATIONS = {"__interval": "1m", "__rate_interval": "2m", "__range": "1h"}
USERS = 48
SLATE = 4
WINDOW_SECONDS = 2.0


def _dashboards() -> list[dict[str, Any]]:
    dashboards: list[dict[str, Any]] = gq.load_dashboards(DASHBOARDS)
    return dashboards


def _queries() -> list[Any]:
    return [query for dashboard in _dashboards() for query in gq.queries(dashboard)]


def _datasources() -> list[dict[str, Any]]:
    path = GRAFANA / "provisioning" / "datasources" / "cineamate.yml"
    datasources: list[dict[str, Any]] = yaml.safe_load(path.read_text())["datasources"]
    return datasources


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


# ----------------------------------------------------------------------------- the files


def test_every_dashboard_of_the_issue_is_there() -> None:
    titles = {dashboard["title"] for dashboard in _dashboards()}
    assert titles == {
        "CineaMate / Experiment overview",
        "CineaMate / Policy comparison",
        "CineaMate / Cohorts and fairness",
        "CineaMate / Latency and SLA",
        "CineaMate / Guardrails",
        "CineaMate / Pipeline health",
    }
    uids = [dashboard["uid"] for dashboard in _dashboards()]
    assert len(set(uids)) == len(uids)


def test_datasource_connections_come_from_the_environment() -> None:
    by_uid = {source["uid"]: source for source in _datasources()}
    postgres, prometheus = by_uid["cineamate-postgres"], by_uid["cineamate-prometheus"]
    assert postgres["type"] == gq.POSTGRES and prometheus["type"] == gq.PROMETHEUS
    connection = [
        postgres["url"],
        postgres["user"],
        postgres["secureJsonData"]["password"],
        postgres["jsonData"]["database"],
        postgres["jsonData"]["sslmode"],
        prometheus["url"],
    ]
    assert all(value.startswith("${CINEAMATE_GRAFANA_") for value in connection), connection


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    path = GRAFANA / "provisioning" / "dashboards" / "cineamate.yml"
    (provider,) = yaml.safe_load(path.read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_every_panel_queries_a_provisioned_datasource() -> None:
    provisioned = {(source["type"], source["uid"]) for source in _datasources()}
    for dashboard in _dashboards():
        name = dashboard["title"]
        variables = dashboard["templating"]["list"]
        for where in [*_panels(dashboard), *variables]:
            sources = [where["datasource"]] + [t["datasource"] for t in where.get("targets", [])]
            for source in sources:
                assert (source["type"], source["uid"]) in provisioned, (name, where.get("title"))


def test_sql_panels_show_the_selected_experiment() -> None:
    for query in _queries():
        if query.datasource == gq.POSTGRES and query.where != f"{gq.VARIABLE}experiment":
            assert "${experiment:sqlstring}" in query.text, query


def test_panels_fit_the_grid_without_overlapping() -> None:
    for dashboard in _dashboards():
        name = dashboard["title"]
        taken: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (name, panel["title"])
            cells = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & taken, (name, panel["title"])
            taken |= cells
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name


def test_every_query_expands_to_plain_sql_or_promql() -> None:
    time_range = gq.TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    variables = {"experiment": "exp_1", "attribute": "device", "job": ".+"}
    for query in _queries():
        if query.datasource == gq.POSTGRES:
            assert "$" not in gq.expand_sql(query.text, variables, time_range)
        else:
            assert "$" not in gq.expand_promql(query.text, variables, DURATIONS)


# ----------------------------------------------------------------------------- the expander


def test_sql_macros_expand_as_grafana_does() -> None:
    time_range = gq.TimeRange(
        datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 13, 30, tzinfo=UTC), "5m"
    )
    sql = (
        "SELECT $__timeGroupAlias(minute, $__interval), x FROM t "
        "WHERE id = ${experiment:sqlstring} AND $__timeFilter(minute) "
        "AND h > $__timeFrom() AND h <= $__timeTo()"
    )
    assert gq.expand_sql(sql, {"experiment": "it's"}, time_range) == (
        'SELECT floor(extract(epoch from minute)/300)*300 AS "time", x FROM t '
        "WHERE id = 'it''s' AND minute BETWEEN '2026-03-01T12:00:00Z' AND '2026-03-01T13:30:00Z' "
        "AND h > '2026-03-01T12:00:00Z' AND h <= '2026-03-01T13:30:00Z'"
    )
    hourly = gq.expand_sql("SELECT $__timeGroupAlias(t, '1h')", {}, time_range)
    assert hourly == 'SELECT floor(extract(epoch from t)/3600)*3600 AS "time"'


def test_promql_variables_and_durations_expand_and_label_values_lists() -> None:
    expr = 'rate(m{experiment="$experiment", job=~"${job}"}[$__rate_interval])'
    expanded = gq.expand_promql(expr, {"experiment": "exp_1", "job": ".+"}, DURATIONS)
    assert expanded == 'rate(m{experiment="exp_1", job=~".+"}[2m])'
    listed = gq.expand_promql("label_values(cineamate_build_info, job)", {}, DURATIONS)
    assert listed == "count by (job) (cineamate_build_info)"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 WHERE $__unixEpochFilter(t)",
        "SELECT $__timeGroup(t, '1m')",
        "SELECT $__timeGroupAlias(t, 1w)",
        "SELECT 1 WHERE id = '$experiment'",
        "SELECT 1 WHERE id = ${experiment}",
        "SELECT 1 WHERE id = ${experiment:csv}",
        "SELECT 1 WHERE id = ${unknown:sqlstring}",
        "SELECT $__interval_ms",
        "SELECT $1",
    ],
)
def test_sql_expander_refuses_what_it_does_not_know(sql: str) -> None:
    time_range = gq.TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(gq.UnknownMacro):
        gq.expand_sql(sql, {"experiment": "exp_1"}, time_range)


@pytest.mark.parametrize(
    "expr",
    [
        "rate(m[$__range_s])",
        'm{job=~"${job:regex}"}',
        'm{job="$unknown"}',
        "$__timeFilter(m)",
        'label_replace(m, "a", "$1", "b", "(.*)")',
    ],
)
def test_promql_expander_refuses_what_it_does_not_know(expr: str) -> None:
    with pytest.raises(gq.UnknownMacro):
        gq.expand_promql(expr, {"job": ".+"}, DURATIONS)


# ----------------------------------------------------------------------------- run for real


def _wait_for(what: str, failures: Callable[[], list[str]], timeout: float) -> None:
    """Retry until ``failures`` is empty; then fail naming what still fails."""
    deadline = time.monotonic() + timeout
    while (found := failures()) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not found, f"{what}:\n" + "\n".join(found)


def _sql_has_data(rows: list[asyncpg.Record]) -> bool:
    """Rows, and when they hold numbers (besides a "time" column), one that is neither
    NULL nor zero: a query whose every value is empty or zero saw no data."""
    # A column is numeric when a value in it is a number; NULLs of text columns don't count.
    numeric = {
        column
        for row in rows
        for column, value in row.items()
        if column != "time" and isinstance(value, int | float | Decimal)
        if not isinstance(value, bool)
    }
    numbers = [row[column] for row in rows for column in numeric]
    return bool(rows) and (not numbers or any(value for value in numbers))


async def _sql_failures(database_url: str, test_started: datetime) -> list[str]:
    time_range = gq.TimeRange(
        test_started - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=5)
    )
    failures = []
    connection = await asyncpg.connect(database_url)
    try:
        for dashboard in _dashboards():
            variables: dict[str, str] = {}
            for query in gq.queries(dashboard):
                if query.datasource != gq.POSTGRES:
                    continue
                sql = gq.expand_sql(query.text, variables, time_range)
                try:
                    rows = await connection.fetch(sql)
                except asyncpg.PostgresError as exc:
                    failures.append(f"{query}: {exc!r}\n{sql}")
                    rows = []
                else:
                    if not _sql_has_data(rows):
                        failures.append(f"{query}: no data ({[dict(r) for r in rows]})")
                if query.where.startswith(gq.VARIABLE):
                    if not rows:
                        break  # the panels need the variable
                    # Grafana selects the first option: its value column, else the first.
                    first = rows[0]
                    value = first["__value"] if "__value" in first else first[0]
                    variables[query.where.removeprefix(gq.VARIABLE)] = str(value)
    finally:
        await connection.close()
    return failures


def _promql_failures(prometheus: httpx.Client, experiment_id: str) -> list[str]:
    failures = []
    for dashboard in _dashboards():
        variables = {"experiment": experiment_id}
        for variable in dashboard["templating"]["list"]:
            if variable["datasource"]["type"] == gq.PROMETHEUS:
                variables[variable["name"]] = variable["allValue"]
        for query in gq.queries(dashboard):
            if query.datasource != gq.PROMETHEUS:
                continue
            expr = gq.expand_promql(query.text, variables, DURATIONS)
            answer = prometheus.get("/api/v1/query", params={"query": expr}).json()
            if answer["status"] != "success":
                failures.append(f"{query}: {answer.get('error')}\n{expr}")
                continue
            values = [float(series["value"][1]) for series in answer["data"]["result"]]
            if not any(math.isfinite(value) for value in values):
                failures.append(f"{query}: no data ({values})\n{expr}")
    return failures


def _unknown_metrics(prometheus: httpx.Client, names: set[str]) -> list[str]:
    """The metric families among ``names`` that no scraped service exposes (a typo, or
    a metric that only ever appears on one side of an ``or``)."""
    unknown = []
    for name in sorted(names):
        family = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        known = any(
            prometheus.get("/api/v1/targets/metadata", params={"metric": metric}).json()["data"]
            for metric in {name, family}
        )
        if not known:
            unknown.append(name)
    return unknown


def _start_prometheus(
    program: str, env: dict[str, str], home: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus on a free port, scraping every service, with its data under ``home``."""
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": name,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{env[f'CINEAMATE_{name.upper()}_PORT']}"]}
                ],
            }
            for name in SERVICES
        ],
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "prometheus.yml").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{free_port()}"
    with (home / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                program,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_status(f"{url}/-/ready", timeout=30, process=process)
    except AssertionError:
        process.kill()
        process.wait(10)
        raise
    return process, url


def _targets_down(prometheus: httpx.Client) -> list[str]:
    targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
    down = [
        f"{target['labels']['job']}: {target['health']} {target['lastError']}"
        for target in targets
        if target["health"] != "up"
    ]
    if len(targets) != len(SERVICES):
        down.append(f"{len(targets)} of {len(SERVICES)} targets")
    return down


@pytest.fixture
def prometheus_program() -> str:
    """The prometheus binary (asked for before the services start, so a skip is quick)."""
    return requires_program("prometheus")


@pytest.fixture
def platform(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The services on a migrated database, evaluating guardrails and decisions every
    second, and their environment."""
    env = dict(isolated_env) | {
        "CINEAMATE_REWARD_IDLE_AFTER_SECONDS": "1",
        "CINEAMATE_REWARD_ALLOWED_LATENESS_SECONDS": "0.5",
        "CINEAMATE_POLICY_SNAPSHOT_INTERVAL_SECONDS": "1",
        "CINEAMATE_ANALYTICS_EXPERIMENT_CACHE_SECONDS": "0.5",
        "CINEAMATE_GUARDRAILS_EVALUATION_INTERVAL_SECONDS": "1",
        "CINEAMATE_GUARDRAILS_MIN_SAMPLE": "1",
        "CINEAMATE_GUARDRAILS_ASSIGNMENT_URL": (
            f"http://127.0.0.1:{isolated_env['CINEAMATE_ASSIGNMENT_PORT']}"
        ),
        "CINEAMATE_DECISION_EVALUATION_INTERVAL_SECONDS": "1",
    }
    provision(env)
    started = []
    try:
        for name in SERVICES:
            started.append(start_service(env, name, tmp_path / "logs"))
        yield env
    finally:
        for service in reversed(started):
            stop_service(service)


def _create_experiment(assignment: httpx.Client) -> str:
    created = assignment.post(
        "/api/experiments",
        headers=ADMIN,
        json={
            "name": "dashboards",
            "catalogue": list(range(1, 31)),
            "policies": [
                {"name": "control", "type": "random", "control": True},
                {"name": "ts", "type": "thompson"},
                {"name": "greedy", "type": "egreedy"},
            ],
            "traffic": 1.0,
            "slate_size": SLATE,
            "reward_window_hours": WINDOW_SECONDS / 3600,
            # Any failed serve breaches it: the failed one published below rolls "ts" back.
            "guardrails": {"error_rate": 0.0},
        },
    )
    assert created.status_code == 201, created.text
    experiment_id: str = created.json()["id"]
    started = assignment.patch(
        f"/api/experiments/{experiment_id}", headers=ADMIN, json={"status": "running"}
    )
    assert started.status_code == 200, started.text
    return experiment_id


def _drive_traffic(assignment: httpx.Client, experiment_id: str) -> None:
    """Recommendations for users of two cohort attributes; clicks whose rate depends on
    the cohort, a few dated after their serve's window (late clicks), and one on an item
    that was not served (dead-lettered).

    The requests come in two rounds a few scrapes apart: a series that appears with its
    final count has no rate, since Prometheus cannot tell when it grew."""
    for first_user in (0, USERS // 2):
        if first_user:
            time.sleep(3 * SCRAPE_SECONDS)
        users = range(first_user, first_user + USERS // 2)
        served = [_recommend(assignment, experiment_id, user) for user in users]
        # Returning users (multiples of 3) click every slate, new ones about one in four.
        clicks = [
            _click(serve, serve["items"][0]["movie_id"])
            for user, serve in zip(users, served, strict=True)
            if user % 3 == 0 or user % 4 == 0
        ]
        after_window = datetime.now(UTC) + timedelta(seconds=WINDOW_SECONDS + 3)
        late = [_click(serve, serve["items"][-1]["movie_id"], after_window) for serve in served[:3]]
        poison = _click(served[-1], 999_999)
        accepted = assignment.post(
            "/api/events/clicks", headers=CLIENT, json=[*clicks, *late, poison]
        )
        assert accepted.status_code == 202, accepted.text


def _click(serve: dict[str, Any], movie_id: int, at: datetime | None = None) -> dict[str, Any]:
    click = {"serve_id": serve["serve_id"], "movie_id": movie_id, "user_id": serve["user_id"]}
    return click if at is None else click | {"ts": at.isoformat()}


def _recommend(assignment: httpx.Client, experiment_id: str, user: int) -> dict[str, Any]:
    answer = assignment.get(
        "/api/movies/recommendations",
        params={
            "experiment_id": experiment_id,
            "user_id": f"user-{user}",
            "user_type": "new" if user % 3 else "returning",
            "device": "mobile" if user % 2 else "web",
        },
        headers=CLIENT,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _publish_failed_serve(env: dict[str, str], experiment_id: str) -> None:
    """A serve answered with status error, as the assignment service logs one when its
    policy fails: no request can make it fail on purpose."""
    failed = ServeEvent(
        serve_id="failed-serve",
        experiment_id=experiment_id,
        variant="ts",
        policy_type="thompson",
        user_id="user-failed",
        items=[ServedItem(item_id=1, position=0, propensity=1.0)],
        cohort={"user_type": "new", "device": "web"},
        state_version=0,
        latency_ms=250.0,
        status="error",
        served_at=datetime.now(UTC),
    )
    producer = EventProducer(env["KAFKA_BOOTSTRAP_SERVERS"], client_id="dashboards-test")
    await producer.start()
    try:
        await producer.send_many([OutgoingMessage.of(env["CINEAMATE_SERVES_TOPIC"], failed)])
    finally:
        await producer.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_every_dashboard_query_returns_data(
    prometheus_program: str, platform: dict[str, str], tmp_path: Path
) -> None:
    test_started = datetime.now(UTC)
    env = platform
    process, url = _start_prometheus(prometheus_program, env, tmp_path / "prometheus")
    prometheus = httpx.Client(base_url=url, timeout=10)
    assignment = httpx.Client(
        base_url=f"http://127.0.0.1:{env['CINEAMATE_ASSIGNMENT_PORT']}", timeout=10
    )
    try:
        _wait_for("Prometheus scraping every service", lambda: _targets_down(prometheus), 30)
        experiment_id = _create_experiment(assignment)
        _drive_traffic(assignment, experiment_id)
        asyncio.run(_publish_failed_serve(env, experiment_id))
        _wait_for(
            "SQL queries without data",
            lambda: asyncio.run(_sql_failures(env["DATABASE_URL"], test_started)),
            timeout=90,
        )
        _wait_for(
            "PromQL expressions without data",
            lambda: _promql_failures(prometheus, experiment_id),
            timeout=60,
        )
        named = {
            name
            for query in _queries()
            if query.datasource == gq.PROMETHEUS
            for name in gq.metric_names(query.text)
        }
        made_up = "cineamate_made_up_total"
        assert _unknown_metrics(prometheus, named | {made_up}) == [made_up]
    finally:
        prometheus.close()
        assignment.close()
        stop_service(process)
