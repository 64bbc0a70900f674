"""Settings of the reward service (variables prefixed CINEAMATE_REWARD_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["RewardSettings"]


class RewardSettings(CommonSettings):
    """Shared settings plus the reward service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_REWARD_")

    port: int = setting(DEFAULT_PORTS["reward"], description="HTTP port of the reward service.")
