"""Typed settings, read from the environment once at start-up.

Every service has one settings class deriving from :class:`CommonSettings`;
its own fields take the prefix ``CINEAMATE_<SERVICE>_`` while the shared ones
keep the names below, so one ConfigMap serves every process. The three
connection URLs use the conventional unprefixed names (``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL``, ``REDIS_URL``) so the platform can be pointed at existing
servers without learning new names.

``describe`` lists every field with its variable, default and description; the
CLI renders it (``cineamate settings``) and ``docs/settings.md`` is generated
from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from cineamate.common.errors import ConfigError

__all__ = [
    "DEFAULT_PORTS",
    "SERVICE_NAMES",
    "CommonSettings",
    "ProcessSettings",
    "SettingDoc",
    "TopicSpec",
    "at_least_one",
    "describe",
    "env_name",
    "load_settings",
    "setting",
]

SERVICE_NAMES = ("assignment", "policy", "reward", "guardrails", "decision", "analytics")
DEFAULT_PORTS = {
    "gateway": 8000,
    "assignment": 8001,
    "policy": 8002,
    "reward": 8003,
    "guardrails": 8004,
    "decision": 8005,
    "analytics": 8006,
}

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def setting(default: Any = ..., *, env: str | None = None, description: str) -> Any:
    """A settings field; ``env`` pins the variable name regardless of the class prefix."""
    alias = AliasChoices(env) if env else None
    return Field(default, validation_alias=alias, description=description)


def at_least_one(value: int) -> int:
    """A field validator: counts and sizes that 0 would switch off or break."""
    if value < 1:
        raise ValueError("must be at least 1")
    return value


@dataclass(frozen=True)
class TopicSpec:
    """A Kafka topic the platform needs, with its partition count."""

    name: str
    partitions: int
    retention_ms: int | None = None


class ProcessSettings(BaseSettings):
    """Settings of every CineaMate process, services and the public entry alike."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_", extra="ignore", frozen=True)

    bind_host: str = setting(
        "127.0.0.1", env="CINEAMATE_BIND_HOST", description="Address the HTTP servers bind to."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", env="CINEAMATE_LOG_LEVEL", description="Lowest log level written."
    )
    log_format: Literal["json", "text"] = setting(
        "json", env="CINEAMATE_LOG_FORMAT", description="json (one object a line) or text."
    )
    admin_token: SecretStr | None = setting(
        None,
        env="CINEAMATE_ADMIN_TOKEN",
        description="Bearer token of operators: create and steer experiments, read everything.",
    )
    read_token: SecretStr | None = setting(
        None,
        env="CINEAMATE_READ_TOKEN",
        description="Bearer token for read-only access: dashboards, analytics, state.",
    )
    client_key: SecretStr | None = setting(
        None,
        env="CINEAMATE_CLIENT_KEY",
        description="Bearer token of client applications: recommendations and clicks.",
    )
    auth_disabled: bool = setting(
        False,
        env="CINEAMATE_AUTH_DISABLED",
        description="true turns token checks off (local demos only).",
    )
    max_request_bytes: int = setting(
        1_048_576,
        env="CINEAMATE_MAX_REQUEST_BYTES",
        description="Largest request body accepted, bytes; a larger one is answered 413.",
    )
    cors_origins: str = setting(
        "",
        env="CINEAMATE_CORS_ORIGINS",
        description="Origins (scheme://host[:port], comma-separated) whose pages may call the "
        "API from a browser; empty allows the same origin only.",
    )
    rate_limit_per_second: float = setting(
        10_000.0,
        env="CINEAMATE_RATE_LIMIT_PER_SECOND",
        description="Requests per second to public routes per client token (per client address "
        "without a known token); above it 429 with Retry-After; 0 turns the limit off.",
    )
    rate_limit_burst: int = setting(
        20_000,
        env="CINEAMATE_RATE_LIMIT_BURST",
        description="Requests a client may make at once beyond its rate before it is limited.",
    )

    _at_least_one = field_validator("max_request_bytes", "rate_limit_burst")(at_least_one)

    @field_validator("rate_limit_per_second")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative (0 turns the limit off)")
        return value

    def allowed_origins(self) -> frozenset[str]:
        """The origins of ``cors_origins``, without a trailing slash."""
        return frozenset(
            origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()
        )


class CommonSettings(ProcessSettings):
    """Settings every service reads.

    >>> settings = load_settings(CommonSettings)  # doctest: +SKIP
    >>> settings.serves_topic
    'serves'
    """

    kafka_bootstrap_servers: str = setting(
        env="KAFKA_BOOTSTRAP_SERVERS",
        description="Kafka bootstrap servers, comma-separated host:port list.",
    )
    database_url: SecretStr = setting(
        env="DATABASE_URL",
        description="PostgreSQL URL, postgresql://user:password@host:port/database.",
    )
    redis_url: SecretStr = setting(
        env="REDIS_URL", description="Redis URL, redis://[:password@]host:port/db."
    )
    serves_topic: str = setting(
        "serves", env="CINEAMATE_SERVES_TOPIC", description="Topic of serve events."
    )
    clicks_topic: str = setting(
        "clicks", env="CINEAMATE_CLICKS_TOPIC", description="Topic of click events."
    )
    rewards_topic: str = setting(
        "rewards", env="CINEAMATE_REWARDS_TOPIC", description="Topic of reward events."
    )
    late_clicks_topic: str = setting(
        "late-clicks",
        env="CINEAMATE_LATE_CLICKS_TOPIC",
        description="Topic of clicks that came after their attribution window.",
    )
    state_updates_topic: str = setting(
        "state-updates",
        env="CINEAMATE_STATE_UPDATES_TOPIC",
        description="Topic of posterior and experiment-configuration updates.",
    )
    dead_letter_topic: str = setting(
        "dead-letter",
        env="CINEAMATE_DEAD_LETTER_TOPIC",
        description="Topic of messages no consumer could process, with the reason.",
    )
    serves_partitions: int = setting(
        6, env="CINEAMATE_SERVES_PARTITIONS", description="Partitions of the serves topic."
    )
    clicks_partitions: int = setting(
        6,
        env="CINEAMATE_CLICKS_PARTITIONS",
        description="Partitions of the clicks topic (keep equal to serves: the join is local).",
    )
    rewards_partitions: int = setting(
        6, env="CINEAMATE_REWARDS_PARTITIONS", description="Partitions of the rewards topic."
    )
    late_clicks_partitions: int = setting(
        1,
        env="CINEAMATE_LATE_CLICKS_PARTITIONS",
        description="Partitions of the late-clicks topic.",
    )
    state_updates_partitions: int = setting(
        1,
        env="CINEAMATE_STATE_UPDATES_PARTITIONS",
        description="Partitions of the state-updates topic.",
    )
    dead_letter_partitions: int = setting(
        1,
        env="CINEAMATE_DEAD_LETTER_PARTITIONS",
        description="Partitions of the dead-letter topic.",
    )
    kafka_replication_factor: int = setting(
        1,
        env="CINEAMATE_KAFKA_REPLICATION_FACTOR",
        description="Replication factor for topics the platform creates.",
    )
    kafka_linger_ms: int = setting(
        5, env="CINEAMATE_KAFKA_LINGER_MS", description="Producer linger before a batch is sent."
    )
    kafka_max_batch_bytes: int = setting(
        262_144,
        env="CINEAMATE_KAFKA_MAX_BATCH_BYTES",
        description="Producer batch size per partition, bytes.",
    )
    producer_buffer_limit: int = setting(
        100_000,
        env="CINEAMATE_PRODUCER_BUFFER_LIMIT",
        description="Events a fire-and-forget producer buffers before refusing more.",
    )
    consumer_max_records: int = setting(
        2_000,
        env="CINEAMATE_CONSUMER_MAX_RECORDS",
        description="Most records a consumer fetches per batch.",
    )
    max_message_bytes: int = setting(
        1_000_000,
        env="CINEAMATE_MAX_MESSAGE_BYTES",
        description="Largest message a consumer accepts; larger ones are dead-lettered.",
    )
    dependency_retry_max_seconds: float = setting(
        10.0,
        env="CINEAMATE_DEPENDENCY_RETRY_MAX_SECONDS",
        description="Longest pause between reconnection attempts to a dependency.",
    )
    readiness_timeout_seconds: float = setting(
        1.0,
        env="CINEAMATE_READINESS_TIMEOUT_SECONDS",
        description="Time each dependency check of /readyz may take.",
    )
    postgres_pool_max_size: int = setting(
        10, env="CINEAMATE_POSTGRES_POOL_MAX_SIZE", description="Connections per process pool."
    )

    def topics(self) -> list[TopicSpec]:
        """Every topic the platform uses, with its partition count."""
        return [
            TopicSpec(self.serves_topic, self.serves_partitions),
            TopicSpec(self.clicks_topic, self.clicks_partitions),
            TopicSpec(self.rewards_topic, self.rewards_partitions),
            TopicSpec(self.late_clicks_topic, self.late_clicks_partitions),
            TopicSpec(self.state_updates_topic, self.state_updates_partitions),
            TopicSpec(self.dead_letter_topic, self.dead_letter_partitions),
        ]


def env_name(cls: type[BaseSettings], field_name: str, field: FieldInfo) -> str:
    """The environment variable that sets ``field_name`` of ``cls``."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    if isinstance(alias, str):
        return alias
    prefix = cls.model_config.get("env_prefix", "") or ""
    return f"{prefix}{field_name}".upper()


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build ``cls`` from the environment; a bad or missing value raises ConfigError naming it."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"][0] if error["loc"] else ""
        variable = _variable_for(cls, str(loc))
        if error["type"] == "missing":
            field = cls.model_fields.get(_field_for(cls, variable) or "")
            hint = f" ({field.description})" if field and field.description else ""
            message = f"{variable} is not set{hint}"
        else:
            message = f"{variable} is invalid: {error['msg']}"
        raise ConfigError(message, field=variable) from exc


def _field_for(cls: type[BaseSettings], variable: str) -> str | None:
    for name, field in cls.model_fields.items():
        if env_name(cls, name, field) == variable:
            return name
    return None


def _variable_for(cls: type[BaseSettings], loc: str) -> str:
    for name, field in cls.model_fields.items():
        variable = env_name(cls, name, field)
        if loc in (name, variable):
            return variable
    return loc


@dataclass(frozen=True)
class SettingDoc:
    """One documented setting."""

    variable: str
    default: str
    description: str
    secret: bool


def describe(*classes: type[BaseSettings]) -> list[SettingDoc]:
    """Every setting of ``classes``, first occurrence wins, in declaration order."""
    seen: dict[str, SettingDoc] = {}
    for cls in classes:
        for name, field in cls.model_fields.items():
            variable = env_name(cls, name, field)
            if variable in seen:
                continue
            if field.is_required():
                default = "(required)"
            else:
                value = field.get_default(call_default_factory=True)
                default = "(empty)" if value in ("", None) else str(value)
            secret = field.annotation is SecretStr or "SecretStr" in str(field.annotation)
            seen[variable] = SettingDoc(variable, default, field.description or "", secret)
    return list(seen.values())
