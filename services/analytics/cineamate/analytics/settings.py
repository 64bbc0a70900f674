"""Settings of the analytics service (variables prefixed CINEAMATE_ANALYTICS_)."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, at_least_one, setting

__all__ = ["AnalyticsSettings"]


class AnalyticsSettings(CommonSettings):
    """Shared settings plus the analytics service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_ANALYTICS_")

    port: int = setting(
        DEFAULT_PORTS["analytics"], description="HTTP port of the analytics service."
    )
    consumer_group: str = setting("analytics", description="Kafka consumer group of the ingest.")
    retention_days: int = setting(
        30,
        description="Days of raw events kept, counted back from the newest event's day "
        "(0 keeps everything); the aggregates are kept for good.",
    )
    experiment_cache_seconds: float = setting(
        5.0, description="How long an experiment's configuration is cached."
    )
    default_latency_sla_ms: float = setting(
        120.0, description="Latency SLA of serves whose experiment is unknown."
    )
    export_chunk_rows: int = setting(
        5_000, description="Rows an export reads from PostgreSQL at a time."
    )
    user_count_cache_seconds: float = setting(
        5.0,
        description="How long the summary's user counts are reused before being counted "
        "again (0 counts on every call).",
    )
    gc_threshold: int = setting(
        1_000_000,
        description="Net allocations between two collections of the garbage collector's "
        "youngest generation. A batch of 10,000 events holds about 220,000 objects, and two "
        "are in flight: below that, every batch set off collections that scanned them all "
        "(at 100,000: 46 to 57 us of CPU per event; at 1,000,000: 36 to 38).",
    )
    ingest_max_records: int = setting(
        10_000,
        description="Most records the ingest writes per transaction: larger batches cost "
        "fewer statements per event.",
    )

    # 0 would turn automatic collection off, and reference cycles would pile up.
    _collects = field_validator("gc_threshold")(at_least_one)
