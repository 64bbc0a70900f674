"""Settings of the assignment service (variables prefixed CINEAMATE_ASSIGNMENT_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["AssignmentSettings"]


class AssignmentSettings(CommonSettings):
    """Shared settings plus the assignment service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_ASSIGNMENT_")

    port: int = setting(
        DEFAULT_PORTS["assignment"], description="HTTP port of the assignment service."
    )
