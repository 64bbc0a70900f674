"""Kafka helpers: the batching producer, the spool-backed publisher, the batch consumer loop
and topic provisioning."""

from cineamate.common.kafka.admin import ensure_topics, topic_partitions
from cineamate.common.kafka.consumer import (
    BatchConsumer,
    Decoder,
    RawRecord,
    Record,
    Rejected,
    dead_letter_message,
    json_decoder,
    record_dead_letter,
    undecoded,
)
from cineamate.common.kafka.producer import EventProducer, OutgoingMessage
from cineamate.common.kafka.reliable import ReliablePublisher
from cineamate.common.kafka.spool import Spool

__all__ = [
    "BatchConsumer",
    "Decoder",
    "EventProducer",
    "OutgoingMessage",
    "RawRecord",
    "Record",
    "Rejected",
    "ReliablePublisher",
    "Spool",
    "dead_letter_message",
    "ensure_topics",
    "json_decoder",
    "record_dead_letter",
    "topic_partitions",
    "undecoded",
]
