"""The headline figures the project quotes, named once, from the figures of a run.

Several benchmarks measure the same thing under their own detailed names
(``learner_rewards_per_s``); the headline gives each the name the project
states its promises in (``policy_updates_per_s``) and its ratio to a baseline
measured in the same run. A headline figure whose source benchmark did not run
is left out.
"""

from __future__ import annotations

import math

from bench._registry import Details, Figures

__all__ = ["ALIASES", "BASELINES", "add_headline"]

# headline name -> the figure it is (the first one present).
ALIASES: dict[str, tuple[str, ...]] = {
    "policy_updates_per_s": ("learner_rewards_per_s",),
    "reward_lag_p99_ms": ("reward_click_latency_p99_ms",),
    "baseline_fastapi_rps": ("baseline_fastapi_rps_max",),
}
# Routes of the dashboard API whose p95 ``analytics_query_p95_ms`` is the worst of.
_ANALYTICS_P95 = "analytics_api_p95_ms_"
# headline figure -> its same-run baseline.
BASELINES = {
    "rec_rps_max": "baseline_fastapi_rps",
    "rec_p99_ms_at_1000rps": "baseline_fastapi_p99_ms_at_1000rps",
    "pipeline_events_per_s": "baseline_kafka_produce_per_s",
    "policy_updates_per_s": "baseline_kafka_produce_per_s",
    "analytics_ingest_events_per_s": "baseline_kafka_produce_per_s",
    "replay_events_per_s": "baseline_kafka_produce_per_s",
    "reward_lag_p99_ms": "baseline_kafka_produce_p99_ms",
    "analytics_query_p95_ms": "baseline_analytics_healthz_p95_ms",
}


def add_headline(figures: Figures) -> tuple[Figures, Details]:
    """The headline figures and their ratios, and where each comes from."""
    headline: Figures = {}
    details: Details = {"sources": {}}
    for name, sources in ALIASES.items():
        source = next((s for s in sources if s in figures), None)
        if source is not None:
            headline[name] = figures[source]
            details["sources"][name] = source
    routes = {k: v for k, v in figures.items() if k.startswith(_ANALYTICS_P95)}
    if routes:
        worst = max(routes, key=routes.__getitem__)
        headline["analytics_query_p95_ms"] = routes[worst]
        details["sources"]["analytics_query_p95_ms"] = f"max over routes: {worst}"
    known = figures | headline
    for name, baseline in BASELINES.items():
        if name in known and baseline in known and known[baseline] > 0:
            value = known[name] / known[baseline]
            ratio = f"{name}_ratio"
            if ratio in figures:
                if math.isclose(figures[ratio], value, rel_tol=1e-9):
                    continue  # the benchmark already divides by this baseline
                ratio = f"{name}_to_{baseline}"
            headline[ratio] = value
            details.setdefault("baselines", {})[name] = baseline
    return headline, details
