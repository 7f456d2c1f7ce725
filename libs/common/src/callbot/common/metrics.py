"""Prometheus metrics shared by every service.

Each service adds its own next to its code; these are the messaging ones, so
that every consumer and RPC reports the same way.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

MESSAGES_CONSUMED = Counter(
    "callbot_messages_consumed_total",
    "Messages taken from a queue, by outcome (acked, requeued, dead_lettered).",
    ["queue", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "callbot_events_published_total", "Events confirmed by the broker.", ["type"]
)
PUBLISH_SECONDS = Histogram(
    "callbot_publish_seconds",
    "Time from publish to the broker's confirm.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
RPC_SECONDS = Histogram(
    "callbot_rpc_seconds",
    "RPC round trip seen by the caller, by method and outcome.",
    ["method", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RPC_SERVED = Counter(
    "callbot_rpc_served_total",
    "RPC requests handled, by method and outcome.",
    ["method", "outcome"],
)


def serve_metrics(port: int) -> None:
    """Expose /metrics on `port` in a background thread; 0 leaves it off."""
    if port:
        start_http_server(port)
