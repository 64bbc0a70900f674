"""Settings of the assignment service (variables prefixed CINEAMATE_ASSIGNMENT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["AssignmentSettings"]


class AssignmentSettings(CommonSettings):
    """Shared settings plus the assignment service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_ASSIGNMENT_")

    port: int = setting(
        DEFAULT_PORTS["assignment"], description="HTTP port of the assignment service."
    )
    posterior_staleness_seconds: float = setting(
        1.0, description="Longest time a cached posterior lags an announced new version."
    )
    experiment_refresh_seconds: float = setting(
        30.0, description="Experiments are reloaded at least this often, besides change events."
    )
    spool_dir: Path = setting(
        Path(".cineamate/spool/assignment"),
        description="Where serve and click events wait while the broker is unreachable.",
    )
    max_clicks_per_request: int = setting(
        1000, description="Most clicks one POST /api/events/clicks may carry."
    )
