"""The dashboard API (read token): summary, time series, arms, cohorts, latency, event log
and CSV export of one experiment."""

from __future__ import annotations

import base64
import math
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from scipy.stats import beta as beta_distribution

from cineamate.analytics import queries, stats
from cineamate.analytics.export import csv_lines
from cineamate.analytics.settings import AnalyticsSettings
from cineamate.common.auth import Role, require
from cineamate.common.errors import InvalidInput
from cineamate.common.experiments import Experiment, require_experiment
from cineamate.common.latency import BUCKET_BOUNDS_MS, merge, percentile

__all__ = ["router"]

router = APIRouter(tags=["analytics"], dependencies=[Depends(require(Role.READ))])

ACTIVE_WINDOW = timedelta(hours=24)
MAX_POINTS = 2_000
_INTERVAL = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.dependencies.pool
    return pool


async def _experiment(request: Request, experiment_id: str) -> Experiment:
    return await require_experiment(_pool(request), experiment_id)


async def _user_counts(
    request: Request, experiment_id: str
) -> tuple[dict[str, int], dict[str, int]]:
    """Users and active users per variant, counted at most every few seconds per experiment:
    the count reads every user of the experiment, and the dashboard asks every 5 s."""
    settings: AnalyticsSettings = request.app.state.settings
    cache: dict[str, tuple[float, tuple[dict[str, int], dict[str, int]]]] = (
        request.app.state.__dict__.setdefault("user_counts", {})
    )
    now = time.monotonic()
    cached = cache.get(experiment_id)
    if cached is not None and now - cached[0] < settings.user_count_cache_seconds:
        return cached[1]
    counts = await queries.user_counts(_pool(request), experiment_id, ACTIVE_WINDOW)
    cache[experiment_id] = (now, counts)
    return counts


@router.get("/api/experiments/{experiment_id}/summary")
async def summary(request: Request, experiment_id: str) -> dict[str, Any]:
    """Traffic split, users, serves, clicks, rewards and CTR per variant with 95% intervals,
    and uplift versus the control."""
    experiment = await _experiment(request, experiment_id)
    pool = _pool(request)
    totals = {row["variant"]: row for row in await queries.variant_totals(pool, experiment_id)}
    users, active = await _user_counts(request, experiment_id)
    config = experiment.config
    control = config.control.name
    all_users = sum(users.values())
    names = [variant.name for variant in config.policies]
    names += sorted(set(totals) - set(names))
    control_row = totals.get(control)
    c_clicks = float(control_row["rewards"]) if control_row else 0.0
    c_outcomes = float(control_row["outcomes"]) if control_row else 0.0
    variants = []
    for name in names:
        row = totals.get(name)
        serves = int(row["serves"]) if row else 0
        outcomes = float(row["outcomes"]) if row else 0.0
        clicks = float(row["rewards"]) if row else 0.0
        configured = config.variant(name)
        variants.append(
            {
                "variant": name,
                "policy_type": configured.type if configured else None,
                "control": name == control,
                "serves": serves,
                "errors": int(row["errors"]) if row else 0,
                "users": users.get(name, 0),
                "active_users": active.get(name, 0),
                "rewards": int(outcomes),
                "clicks": clicks,
                "late_clicks": int(row["late_clicks"]) if row else 0,
                "ctr": stats.wilson_interval(clicks, outcomes).as_dict(),
                "uplift": None
                if name == control
                else stats.uplift_interval(clicks, outcomes, c_clicks, c_outcomes).as_dict(),
                "difference": None
                if name == control
                else stats.difference_interval(clicks, outcomes, c_clicks, c_outcomes).as_dict(),
            }
        )
    return {
        "experiment_id": experiment.id,
        "name": config.name,
        "status": experiment.status,
        "traffic": {
            "configured": config.user_shares(),
            "observed": {
                name: (users.get(name, 0) / all_users if all_users else None) for name in names
            },
        },
        "users": {
            "total": all_users,
            "active": sum(active.values()),
            "active_window_hours": ACTIVE_WINDOW.total_seconds() / 3600,
        },
        "totals": {
            "serves": sum(v["serves"] for v in variants),
            "rewards": sum(v["rewards"] for v in variants),
            "clicks": sum(v["clicks"] for v in variants),
            "errors": sum(v["errors"] for v in variants),
            "late_clicks": sum(v["late_clicks"] for v in variants),
        },
        "variants": variants,
        "guardrails": None,
        "decision": None,
    }


def _interval(text: str | None, start: datetime | None, stop: datetime | None) -> timedelta:
    if text is None:
        if start is None or stop is None:
            return timedelta(minutes=1)
        span = stop - start
        minutes = max(1, math.ceil(span / timedelta(minutes=1) / 300))
        if minutes > 60:
            minutes = math.ceil(minutes / 60) * 60  # whole hours: read from the hourly rows
        return timedelta(minutes=minutes)
    match = _INTERVAL.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(
            f"interval {text!r} is not a count of minutes, hours or days such as 5m, 1h, 1d",
            code="invalid.interval",
            field="interval",
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


@router.get("/api/experiments/{experiment_id}/timeseries")
async def timeseries(
    request: Request,
    experiment_id: str,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    stop: Annotated[datetime | None, Query(alias="to")] = None,
    interval: Annotated[str | None, Query(description="5m, 1h, 1d, ...")] = None,
) -> dict[str, Any]:
    """Per variant and interval of serve time: serves, clicks, CTR, cumulative reward and
    cumulative regret against the best variant so far (both from ``from``)."""
    await _experiment(request, experiment_id)
    pool = _pool(request)
    if start is not None and stop is not None and stop <= start:
        raise InvalidInput("to must be after from", code="invalid.range", field="to")
    first, last = await queries.minute_range(pool, experiment_id)
    span_start = start or first
    span_stop = stop or (last + timedelta(minutes=1) if last else None)
    step = _interval(interval, span_start, span_stop)
    if span_start and span_stop and (span_stop - span_start) / step > MAX_POINTS:
        raise InvalidInput(
            f"more than {MAX_POINTS} points: choose a longer interval",
            code="invalid.interval",
            field="interval",
        )
    rows = await queries.timeseries_rows(pool, experiment_id, start, stop, step)
    by_bucket: dict[datetime, dict[str, asyncpg.Record]] = defaultdict(dict)
    for row in rows:
        by_bucket[row["bucket"]][row["variant"]] = row
    buckets = sorted(by_bucket)
    regrets = stats.cumulative_regret(
        [
            {v: (float(r["outcomes"]), float(r["rewards"])) for v, r in by_bucket[b].items()}
            for b in buckets
        ]
    )
    cumulative: dict[str, float] = defaultdict(float)
    points = []
    for bucket, regret in zip(buckets, regrets, strict=True):
        variants = {}
        for variant, row in sorted(by_bucket[bucket].items()):
            outcomes, clicks = float(row["outcomes"]), float(row["rewards"])
            cumulative[variant] += clicks
            variants[variant] = {
                "serves": int(row["serves"]),
                "rewards": int(outcomes),
                "clicks": clicks,
                "ctr": clicks / outcomes if outcomes else None,
                "cumulative_reward": cumulative[variant],
                "cumulative_regret": regret.get(variant, 0.0),
            }
        points.append({"time": bucket.isoformat(), "variants": variants})
    return {
        "experiment_id": experiment_id,
        "interval_seconds": step.total_seconds(),
        "from": span_start.isoformat() if span_start else None,
        "to": span_stop.isoformat() if span_stop else None,
        "points": points,
    }


def _share_anomaly(
    recent: int, recent_total: int, share: float, *, z_limit: float = 4.0
) -> str | None:
    if recent_total < 100 or share <= 0 or share >= 1:
        return None
    recent_share = recent / recent_total
    z = (recent_share - share) / math.sqrt(share * (1 - share) / recent_total)
    if abs(z) > z_limit and abs(recent_share / share - 1) > 0.5:
        return (
            f"share of serves moved from {share:.2%} overall to {recent_share:.2%} "
            f"in the latest hour (z = {z:.1f})"
        )
    return None


def _ctr_anomaly(
    clicks: float, outcomes: float, posterior: tuple[float, float] | None
) -> str | None:
    if posterior is None or outcomes < 30:
        return None
    pulls, successes = posterior
    low, high = beta_distribution.ppf([0.0005, 0.9995], 1 + successes, 1 + pulls - successes)
    ctr = clicks / outcomes
    if ctr < low or ctr > high:
        return (
            f"CTR {ctr:.3f} is outside the learner's 99.9% posterior interval "
            f"[{low:.3f}, {high:.3f}]"
        )
    return None


@router.get("/api/experiments/{experiment_id}/arms")
async def arms(
    request: Request,
    experiment_id: str,
    variant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 20,
) -> dict[str, Any]:
    """The most served items per variant: pulls, clicks, CTR, posterior mean, share of serves
    and an anomaly flag with its reason."""
    await _experiment(request, experiment_id)
    pool = _pool(request)
    rows = await queries.arm_totals(pool, experiment_id, variant, limit)
    items = sorted({row["item_id"] for row in rows})
    recent = await queries.recent_item_serves(pool, experiment_id, items)
    posteriors = await queries.latest_posteriors(pool, experiment_id, items)
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        name, item = row["variant"], row["item_id"]
        outcomes, clicks = float(row["outcomes"]), float(row["rewards"])
        share = row["serves"] / row["variant_serves"] if row["variant_serves"] else 0.0
        posterior = posteriors.get((name, item))
        pulls, successes = posterior if posterior else (outcomes, clicks)
        reasons = [
            reason
            for reason in (
                _ctr_anomaly(clicks, outcomes, posterior),
                _share_anomaly(
                    recent.items.get((name, item), 0), recent.variants.get(name, 0), share
                ),
            )
            if reason
        ]
        by_variant[name].append(
            {
                "item_id": item,
                "serves": row["serves"],
                "pulls": int(outcomes),
                "clicks": clicks,
                "ctr": clicks / outcomes if outcomes else None,
                "posterior_mean": (1 + successes) / (2 + pulls),
                "share_of_serves": share,
                "anomaly": bool(reasons),
                "anomaly_reason": "; ".join(reasons) or None,
            }
        )
    return {
        "experiment_id": experiment_id,
        "latest_hour": recent.hour.isoformat() if recent.hour else None,
        "variants": [{"variant": name, "arms": items} for name, items in by_variant.items()],
    }


@router.get("/api/experiments/{experiment_id}/cohorts")
async def cohorts(
    request: Request,
    experiment_id: str,
    by: Annotated[str, Query(min_length=1, max_length=64)] = "user_type",
) -> dict[str, Any]:
    """CTR per cohort value and variant, and the fairness figure per variant: the
    coefficient of variation of CTR across cohort values."""
    await _experiment(request, experiment_id)
    pool = _pool(request)
    rows = await queries.cohort_counts(pool, experiment_id, by)
    by_variant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        outcomes, clicks = float(row["outcomes"]), float(row["rewards"])
        by_variant[row["variant"]].append(
            {
                "value": row["value"],
                "serves": row["serves"],
                "rewards": int(outcomes),
                "clicks": clicks,
                "ctr": stats.wilson_interval(clicks, outcomes).as_dict(),
            }
        )
    variants = []
    for name, cohorts_of_variant in by_variant.items():
        rates = [c["ctr"]["estimate"] for c in cohorts_of_variant if c["rewards"] > 0]
        variants.append(
            {
                "variant": name,
                "cohorts": cohorts_of_variant,
                "fairness_cv": stats.coefficient_of_variation(rates),
            }
        )
    return {
        "experiment_id": experiment_id,
        "by": by,
        "attributes": await queries.cohort_attributes(pool, experiment_id),
        "variants": variants,
    }


@router.get("/api/experiments/{experiment_id}/latency")
async def latency(request: Request, experiment_id: str) -> dict[str, Any]:
    """p50, p95 and p99 per variant (read from a histogram, within about 10%), the
    histogram, and the share of serves within the experiment's latency SLA."""
    experiment = await _experiment(request, experiment_id)
    rows = await queries.variant_totals(_pool(request), experiment_id)
    variants = []
    for row in rows:
        histogram = merge([row["latency_buckets"]])
        serves = int(row["serves"])
        variants.append(
            {
                "variant": row["variant"],
                "serves": serves,
                "p50_ms": percentile(histogram, 0.50),
                "p95_ms": percentile(histogram, 0.95),
                "p99_ms": percentile(histogram, 0.99),
                "mean_ms": row["latency_sum_ms"] / serves if serves else None,
                "within_sla": row["within_sla"] / serves if serves else None,
                "histogram": [
                    {"le_ms": bound, "count": count}
                    for bound, count in zip([*BUCKET_BOUNDS_MS, None], histogram, strict=True)
                    if count
                ],
            }
        )
    return {
        "experiment_id": experiment_id,
        "sla_ms": experiment.config.guardrails.latency_p95_ms,
        "variants": variants,
    }


def _encode_cursor(time: datetime, identity: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([time.isoformat(), identity])).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        moment, identity = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(moment), str(identity)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "cursor is not one this API gave", code="invalid.cursor", field="cursor"
        ) from exc


async def _event_filter(
    request: Request,
    experiment_id: str,
    type_: Annotated[str, Query(alias="type", description="serve, reward, click, late_click")] = (
        "serve"
    ),
    variant: str | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    stop: Annotated[datetime | None, Query(alias="to")] = None,
) -> queries.EventQuery:
    """Which events to list or export (a FastAPI dependency shared by both routes)."""
    if type_ not in queries.EVENT_TYPES:
        raise InvalidInput(
            f"type must be one of {', '.join(queries.EVENT_TYPES)}",
            code="invalid.type",
            field="type",
        )
    await _experiment(request, experiment_id)
    return queries.EventQuery(experiment_id, type_, variant, start, stop)


EventFilter = Annotated[queries.EventQuery, Depends(_event_filter)]


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    data = {key: value for key, value in row.items() if not key.startswith("cursor_")}
    if isinstance(data.get("cohort"), str):
        data["cohort"] = orjson.loads(data["cohort"])
    return data


@router.get("/api/experiments/{experiment_id}/events")
async def events(
    request: Request,
    selection: EventFilter,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    """Raw events in (time, id) order, a page at a time; ``next_cursor`` continues."""
    query = replace(selection, after=_decode_cursor(cursor) if cursor else None)
    page = await queries.event_page(_pool(request), query, limit)
    last = page.rows[-1] if page.rows else None
    return {
        "experiment_id": query.experiment_id,
        "type": query.type,
        "events": [_jsonable(row) for row in page.rows],
        "next_cursor": _encode_cursor(last["cursor_time"], last["cursor_id"])
        if page.more and last is not None
        else None,
    }


@router.get("/api/experiments/{experiment_id}/export")
async def export(request: Request, selection: EventFilter) -> StreamingResponse:
    """Every selected event as CSV, streamed row by row."""
    settings: AnalyticsSettings = request.app.state.settings
    rows = queries.export_rows(_pool(request), selection, settings.export_chunk_rows)

    async def body() -> AsyncIterator[bytes]:
        async for line in csv_lines(queries.event_columns(selection.type), rows):
            yield line

    filename = f"{selection.experiment_id}-{selection.type}s.csv"
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
