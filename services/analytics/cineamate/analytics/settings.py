"""Settings of the analytics service (variables prefixed CINEAMATE_ANALYTICS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["AnalyticsSettings"]


class AnalyticsSettings(CommonSettings):
    """Shared settings plus the analytics service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_ANALYTICS_")

    port: int = setting(
        DEFAULT_PORTS["analytics"], description="HTTP port of the analytics service."
    )
