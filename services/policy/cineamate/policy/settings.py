"""Settings of the policy service (variables prefixed CINEAMATE_POLICY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["PolicySettings"]


class PolicySettings(CommonSettings):
    """Shared settings plus the learner's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_POLICY_")

    port: int = setting(DEFAULT_PORTS["policy"], description="HTTP port of the policy service.")
    consumer_group: str = setting("policy", description="Kafka consumer group of the learner.")
    snapshot_interval_seconds: float = setting(
        30.0, description="How often posteriors are snapshotted to PostgreSQL."
    )
    snapshots_kept: int = setting(
        5, description="Snapshots kept per experiment and variant; older ones are deleted."
    )
    dedup_window_seconds: int = setting(
        21_600,
        description="How long applied reward ids are remembered to drop re-emitted duplicates.",
    )
    experiment_cache_seconds: float = setting(
        5.0, description="How long an experiment's configuration is cached."
    )
