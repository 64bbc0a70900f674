"""Prometheus metrics shared by every service, named by one convention.

``cineamate_<subsystem>_<what>_<unit>``; histograms in seconds, sizes in
records. Each process exposes the default registry on ``GET /metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

__all__ = [
    "BUILD_INFO",
    "CONSUMER_BATCH_SIZE",
    "CONSUMER_FAILURES",
    "CONSUMER_LAG",
    "CONSUMER_PROCESSING_SECONDS",
    "CONSUMER_RECORDS",
    "DEAD_LETTERS",
    "DEPENDENCY_UP",
    "HTTP_REQUEST_SECONDS",
    "PRODUCER_BUFFERED",
    "PRODUCER_FAILURES",
    "PRODUCER_SENT",
    "RECOMMENDATION_SECONDS",
    "SPOOLED_MESSAGES",
]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.12,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

BUILD_INFO = Info("cineamate_build", "Service name and version of this process.")

HTTP_REQUEST_SECONDS = Histogram(
    "cineamate_http_request_duration_seconds",
    "HTTP request duration by route template, method and status.",
    ("route", "method", "status"),
    buckets=_LATENCY_BUCKETS,
)

RECOMMENDATION_SECONDS = Histogram(
    "cineamate_recommendation_duration_seconds",
    "Time to answer a recommendation request, by experiment, variant and outcome.",
    ("experiment", "variant", "status"),
    buckets=_LATENCY_BUCKETS,
)

DEPENDENCY_UP = Gauge(
    "cineamate_dependency_up", "1 when the dependency answered its last check.", ("dependency",)
)

CONSUMER_LAG = Gauge(
    "cineamate_consumer_lag_records",
    "Records between the consumer's position and the partition end.",
    ("group", "topic", "partition"),
)
CONSUMER_BATCH_SIZE = Histogram(
    "cineamate_consumer_batch_size_records",
    "Records per processed batch.",
    ("group",),
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
CONSUMER_PROCESSING_SECONDS = Histogram(
    "cineamate_consumer_processing_seconds",
    "Time to decode, process and commit one batch.",
    ("group",),
    buckets=_LATENCY_BUCKETS,
)
CONSUMER_RECORDS = Counter(
    "cineamate_consumer_records_total", "Records consumed and committed.", ("group", "topic")
)
CONSUMER_FAILURES = Counter(
    "cineamate_consumer_batch_failures_total",
    "Batches whose processing failed and will be retried.",
    ("group",),
)
DEAD_LETTERS = Counter(
    "cineamate_dead_letters_total",
    "Messages sent to the dead-letter topic, by source topic and reason code.",
    ("topic", "reason"),
)

PRODUCER_SENT = Counter("cineamate_producer_sent_total", "Messages acknowledged.", ("topic",))
PRODUCER_FAILURES = Counter(
    "cineamate_producer_failures_total", "Messages the broker did not acknowledge.", ("topic",)
)
SPOOLED_MESSAGES = Gauge(
    "cineamate_spool_messages", "Events waiting in the local spool for the broker to return."
)
PRODUCER_BUFFERED = Gauge(
    "cineamate_producer_buffered_messages", "Messages waiting in the fire-and-forget buffer."
)
