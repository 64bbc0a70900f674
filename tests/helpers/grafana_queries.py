"""The queries of the Grafana dashboards in deploy/grafana, expanded as Grafana would send them.

Grafana rewrites a panel's query in two steps before its datasource runs it:
the front end substitutes variables, then the PostgreSQL backend expands its
macros. The tests run the queries without Grafana, so this module does both,
for exactly the forms the CineaMate dashboards use, with Grafana's output:

SQL (variables first, then macros, as in Grafana's postgres ``macros.go``)

    ${name:sqlstring}              'value', quotes doubled (a dashboard variable)
    $__interval                    the panel interval, e.g. 1m
    $__timeFilter(column)          column BETWEEN '<from>' AND '<to>'  (RFC 3339, UTC)
    $__timeFrom(), $__timeTo()     '<from>', '<to>'
    $__timeGroupAlias(column, 1m)  floor(extract(epoch from column)/60)*60 AS "time"

PromQL

    $name, ${name}                 the variable's value as is
    $__interval, $__rate_interval, $__range    durations such as 1m
    label_values(metric, label)    (variable queries only) count by (label) (metric),
                                   whose series carry the values Grafana would list

Anything else that starts with ``$`` raises ``UnknownMacro``: a dashboard that
starts using another macro, or a bare ``$name`` in SQL (which Grafana would
insert unquoted), fails its test until this module learns it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "POSTGRES",
    "PROMETHEUS",
    "VARIABLE",
    "DashboardQuery",
    "TimeRange",
    "UnknownMacro",
    "expand_promql",
    "expand_sql",
    "load_dashboards",
    "metric_names",
    "queries",
]

POSTGRES = "postgres"
PROMETHEUS = "prometheus"
VARIABLE = "variable "  # how DashboardQuery.where starts for a variable's query

_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>\w+)\b(?!\()")
_MACRO = re.compile(r"\$(?P<name>\w+)\((?P<args>[^()]*)\)")
_DURATION = re.compile(r"'?(?P<count>\d+)(?P<unit>[smhd])'?")
_LABEL_VALUES = re.compile(r"^label_values\(\s*(?P<metric>[^,]+?)\s*,\s*(?P<label>\w+)\s*\)$")
_METRIC = re.compile(r"\bcineamate_\w+")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UnknownMacro(ValueError):
    """A ``$`` form this expander does not know (so neither does the test)."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range and the panel interval, as Grafana would pass them."""

    start: datetime
    stop: datetime
    interval: str = "1m"


@dataclass(frozen=True)
class DashboardQuery:
    """One query of a dashboard: a panel target or a variable's query."""

    dashboard: str
    where: str  # panel title and refId, or VARIABLE and the variable's name
    datasource: str  # POSTGRES or PROMETHEUS
    text: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.where}"


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    """The dashboards in ``directory``, by file name."""
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


def queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    """A dashboard's variable queries in their order (a later one may use an earlier one),
    then its annotation queries and every panel target (those of rows included)."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query if isinstance(query, str) else query["query"]
            where = f"{VARIABLE}{variable['name']}"
            found.append(
                DashboardQuery(dashboard["title"], where, variable["datasource"]["type"], text)
            )
    for annotation in dashboard["annotations"]["list"]:
        where = f"annotation {annotation['name']}"
        found.append(
            DashboardQuery(dashboard["title"], where, POSTGRES, annotation["target"]["rawSql"])
        )
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            kind = target["datasource"]["type"]
            text = target["rawSql"] if kind == POSTGRES else target["expr"]
            where = f"{panel['title']} [{target['refId']}]"
            found.append(DashboardQuery(dashboard["title"], where, kind, text))
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def expand_sql(sql: str, variables: Mapping[str, str], time_range: TimeRange) -> str:
    """``sql`` as Grafana's PostgreSQL datasource would run it."""

    def variable(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name == "__interval" and match["format"] is None:
            return time_range.interval
        if match["braced"] and match["format"] == "sqlstring" and name in variables:
            return "'" + variables[name].replace("'", "''") + "'"
        raise UnknownMacro(f"{match[0]}: SQL takes ${{name:sqlstring}} or $__interval")

    start, stop = _rfc3339(time_range.start), _rfc3339(time_range.stop)

    def macro(match: re.Match[str]) -> str:
        name, args = match["name"], [arg.strip() for arg in match["args"].split(",")]
        if name == "__timeFilter" and len(args) == 1 and args[0]:
            return f"{args[0]} BETWEEN '{start}' AND '{stop}'"
        if name == "__timeFrom" and args == [""]:
            return f"'{start}'"
        if name == "__timeTo" and args == [""]:
            return f"'{stop}'"
        if name == "__timeGroupAlias" and len(args) == 2:
            seconds = _duration_seconds(args[1])
            return f'floor(extract(epoch from {args[0]})/{seconds})*{seconds} AS "time"'
        raise UnknownMacro(f"{match[0]}: not a macro the dashboards' tests expand")

    return _leftovers(_MACRO.sub(macro, _VARIABLE.sub(variable, sql)))


def expand_promql(expr: str, variables: Mapping[str, str], durations: Mapping[str, str]) -> str:
    """``expr`` as Grafana's Prometheus datasource would send it; ``durations`` gives
    ``__interval``, ``__rate_interval`` and ``__range``; a variable query
    ``label_values(metric, label)`` becomes the PromQL that lists those values."""
    if (label_values := _LABEL_VALUES.match(expr.strip())) is not None:
        return f"count by ({label_values['label']}) ({label_values['metric']})"

    def variable(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if match["format"] is None:
            if name in ("__interval", "__rate_interval", "__range") and name in durations:
                return durations[name]
            if not name.startswith("__") and name in variables:
                return variables[name]
        raise UnknownMacro(f"{match[0]}: not a variable the dashboards' tests expand")

    if (macro := _MACRO.search(expr)) is not None:
        raise UnknownMacro(f"{macro[0]}: PromQL has no macros")
    return _leftovers(_VARIABLE.sub(variable, expr))


def metric_names(expr: str) -> list[str]:
    """The CineaMate metric names a PromQL expression reads."""
    return sorted(set(_METRIC.findall(expr)))


def _leftovers(text: str) -> str:
    if "$" in text:
        raise UnknownMacro(f"unexpanded $ left in: {text}")
    return text


def _duration_seconds(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UnknownMacro(f"{text!r} is not a duration such as 1m or '5m'")
    return int(match["count"]) * _SECONDS[match["unit"]]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
