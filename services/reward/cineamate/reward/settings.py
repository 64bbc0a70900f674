"""Settings of the reward service (variables prefixed CINEAMATE_REWARD_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["RewardSettings"]


class RewardSettings(CommonSettings):
    """Shared settings plus the join's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_REWARD_")

    port: int = setting(DEFAULT_PORTS["reward"], description="HTTP port of the reward service.")
    consumer_group: str = setting(
        "reward", description="Kafka consumer group of the join (its state is kept per group)."
    )
    allowed_lateness_seconds: float = setting(
        5.0,
        description="Event-time slack behind the slowest input before a window may close.",
    )
    idle_after_seconds: float = setting(
        5.0,
        description="Wall seconds without records after which an input stops holding the "
        "watermark back (and, with every input idle, the watermark follows the wall clock).",
    )
    click_grace_seconds: float = setting(
        300.0,
        description="Event-time seconds a click that came before its serve waits for it; "
        "then it is dead-lettered.",
    )
    closed_retention_seconds: float = setting(
        3_600.0,
        description="Event-time seconds a closed serve is remembered, so a click after its "
        "window counts as late; later clicks on it are dead-lettered as orphans.",
    )
    max_closes_per_batch: int = setting(
        20_000,
        description="Windows closed at most per partition and batch; the rest close next batch.",
    )
    experiment_cache_seconds: float = setting(
        5.0, description="How long an experiment's configuration is cached."
    )
