"""The gateway's Prometheus metrics. RPC latency is the shared
`callbot_rpc_seconds` (callbot.common.metrics), observed by the RPC client."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "callbot_gateway_requests_total",
    "HTTP requests served, by endpoint (route template), method and status.",
    ["endpoint", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "callbot_gateway_request_seconds",
    "Time to answer an HTTP request, by endpoint (route template).",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DIALOG_FALLBACKS = Counter(
    "callbot_gateway_dialog_fallbacks_total",
    "Fallback TwiML served because dialog gave no usable reply, by RPC method and reason.",
    ["method", "reason"],
)
TWILIO_REQUESTS = Counter(
    "callbot_gateway_twilio_requests_total",
    "Twilio REST requests (each attempt), by operation and outcome.",
    ["operation", "outcome"],
)
CALLS_RECONCILED = Counter(
    "callbot_gateway_calls_reconciled_total",
    "Calls stuck in a non-final state looked up at Twilio by the reconciler, by outcome: "
    "finalized (Twilio's final status published), still_active (Twilio says the call goes on), "
    "not_found (Twilio does not know the call), failed (Twilio or the broker did not answer; "
    "retried next sweep).",
    ["outcome"],
)
RECORDINGS_RECONCILED = Counter(
    "callbot_gateway_recordings_reconciled_total",
    "Recordings Twilio listed for a reconciled call that callbot had not stored, published.",
)
ORPHAN_CALLBACKS = Counter(
    "callbot_gateway_orphan_callbacks_total",
    "Twilio callbacks for a call callbot never placed (no call.created stored), answered "
    "harmlessly and not stored, by callback: answer, speech, amd, status, recording.",
    ["callback"],
)
