"""Settings of the policy service (variables prefixed CINEAMATE_POLICY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["PolicySettings"]


class PolicySettings(CommonSettings):
    """Shared settings plus the policy service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_POLICY_")

    port: int = setting(DEFAULT_PORTS["policy"], description="HTTP port of the policy service.")
