"""Settings of the guardrails service (variables prefixed CINEAMATE_GUARDRAILS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["GuardrailsSettings"]


class GuardrailsSettings(CommonSettings):
    """Shared settings plus the guardrails service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_GUARDRAILS_")

    port: int = setting(
        DEFAULT_PORTS["guardrails"], description="HTTP port of the guardrails service."
    )
