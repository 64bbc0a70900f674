"""Code every CineaMate service shares and that holds no business decision.

settings       typed settings and the list of every variable
errors         the error hierarchy with dotted codes
events         event models of the topics, JSON on the wire
kafka          batching producer, batch consumer loop, topic provisioning
postgres       connection pool and migration runner
redis          Redis client
dependencies   background connection and readiness checks
app            FastAPI app factory: health, readiness, metrics, errors
metrics        Prometheus metric conventions
logging        structured JSON logging
"""

__all__ = [
    "app",
    "dependencies",
    "errors",
    "events",
    "kafka",
    "logging",
    "metrics",
    "postgres",
    "redis",
    "settings",
]
