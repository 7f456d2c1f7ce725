"""dialog's Prometheus metrics (the messaging ones live in callbot.common.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LLM_SECONDS = Histogram(
    "callbot_dialog_llm_seconds",
    "LLM chat completion time per attempt, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0),
)
LLM_ERRORS = Counter(
    "callbot_dialog_llm_errors_total", "Failed LLM attempts, by error class.", ["error"]
)
FALLBACKS = Counter(
    "callbot_dialog_fallbacks_total",
    "Turns answered with the agent's fallback line because the LLM failed or ran out of time.",
)
SESSIONS_LIVE = Gauge("callbot_dialog_sessions_live", "Sessions held in this replica's cache.")
CACHE_LOOKUPS = Counter(
    "callbot_dialog_cache_lookups_total",
    "Agent and session cache lookups, by cache and outcome (hit, miss).",
    ["cache", "outcome"],
)
