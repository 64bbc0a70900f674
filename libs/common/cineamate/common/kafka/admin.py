"""Topic provisioning: create what is missing, leave what exists."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from cineamate.common.errors import DependencyUnavailable
from cineamate.common.settings import TopicSpec

__all__ = ["ensure_topics", "topic_partitions"]

_log = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap_servers: str, topics: Sequence[TopicSpec], *, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="cineamate-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [spec for spec in topics if spec.name not in existing]
        if missing:
            new_topics = [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    replication_factor,
                    topic_configs=(
                        {"retention.ms": str(spec.retention_ms)} if spec.retention_ms else {}
                    ),
                )
                for spec in missing
            ]
            try:
                await admin.create_topics(new_topics)
            except TopicAlreadyExistsError:
                _log.info("topics created concurrently by another process")
        return [spec.name for spec in missing]
    except KafkaError as exc:
        raise DependencyUnavailable(f"kafka: {exc}", code="unavailable.kafka") from exc
    finally:
        await admin.close()


async def topic_partitions(bootstrap_servers: str, topic: str) -> int:
    """Number of partitions of ``topic`` (0 when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="cineamate-admin")
    try:
        await admin.start()
        described = await admin.describe_topics([topic])
        for entry in described:
            if entry.get("topic") == topic and not entry.get("error_code"):
                return len(entry.get("partitions", []))
        return 0
    finally:
        await admin.close()
