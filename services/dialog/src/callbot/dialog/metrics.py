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
MCP_TOOL_CALLS = Counter(
    "callbot_dialog_mcp_tool_calls_total",
    "MCP tool calls the model asked for, by server, tool and outcome "
    "(ok, tool_error, timeout, refused, unavailable).",
    ["server", "tool", "outcome"],
)
MCP_TOOL_SECONDS = Histogram(
    "callbot_dialog_mcp_tool_seconds",
    "MCP tool call time (connection included), by server and outcome.",
    ["server", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
)
MCP_TOOL_LISTINGS = Counter(
    "callbot_dialog_mcp_tool_listings_total",
    "tools/list requests to MCP servers (once per agent version and TTL), by outcome.",
    ["outcome"],
)
KNOWLEDGE_DOCUMENTS = Counter(
    "callbot_dialog_knowledge_documents_total",
    "Agent documents read for a knowledge index, by outcome (ok, unreadable, unavailable).",
    ["outcome"],
)
KNOWLEDGE_TURNS = Counter(
    "callbot_dialog_knowledge_turns_total",
    "Model turns of agents with documents, by outcome (passages, no_match, not_ready).",
    ["outcome"],
)
