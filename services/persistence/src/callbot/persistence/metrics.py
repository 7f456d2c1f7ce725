"""persistence's Prometheus metrics (the messaging ones are in callbot.common.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WRITES = Counter(
    "callbot_persistence_writes_total", "Call events made durable in MongoDB.", ["event_type"]
)
WRITE_SECONDS = Histogram(
    "callbot_persistence_write_seconds",
    "Time to make one event durable, retries during a MongoDB outage included.",
    ["event_type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
)
PUBLISH_TO_WRITE_SECONDS = Histogram(
    "callbot_persistence_event_lag_seconds",
    "Lag from an event's publication (its occurred_at) to its durable write.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0),
)
COMPLETIONS_PUBLISHED = Counter(
    "callbot_persistence_completions_published_total",
    "call.completed events confirmed by the broker, by what triggered them "
    "(finalized: the scheduled publication; sweeper: a republication after a crash or failure).",
    ["trigger"],
)
COMPLETION_FAILURES = Counter(
    "callbot_persistence_completion_failures_total",
    "Attempts to publish call.completed that failed (the sweeper retries them).",
)
