"""OpenTelemetry tracing: off unless an OTLP endpoint is configured.

`configure_tracing(service, settings)` runs once per process, at start-up.
Off (the default) it does nothing, and every helper here returns after one
test of a module flag: no SDK is loaded, no span object is made, no header is
written. On, spans are batched (the SDK's `BatchSpanProcessor`, a thread of
its own, `OTEL_BSP_*`) to an OTLP/HTTP exporter (`OTEL_EXPORTER_OTLP_*`);
sampling is the SDK's, from `OTEL_TRACES_SAMPLER` (parent-based always-on by
default), so the head decision taken at gateway's webhook holds for the whole
turn in every service.

Where spans come from:
- gateway's HTTP server: opentelemetry-instrumentation-fastapi (`instrument_app`);
- MongoDB commands, every service: opentelemetry-instrumentation-pymongo (its
  command listener runs in the awaiting task, so `AsyncMongoClient` commands
  nest under the span in hand);
- RabbitMQ publish, consume and the RPC: `callbot.common.messaging.trace_context`;
- the LLM request and MCP tool calls: dialog, through `span()`; the MCP SDK
  adds its own client span under ours and carries the context to the server.

Every span open where a log line names a call (`log_context(call_id=...)`)
gets the `call_id` attribute, so one call is found by `call_id`.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from callbot.common.settings import Settings

log = logging.getLogger(__name__)

CALL_ID_ATTRIBUTE = "call_id"
# The web paths nobody needs a trace of (probes and scrapes, every few seconds).
UNTRACED_URLS = "/healthz,/readyz,/metrics"

# At exit, the spans still queued get this long to reach the collector. The
# exporter retries a batch for up to OTEL_EXPORTER_OTLP_TIMEOUT (10 s): a
# collector that is away must not hold a stopping service that long.
EXIT_FLUSH_S = 2.0

_TRACER_NAME = "callbot"
_enabled = False


def tracing_enabled() -> bool:
    """`configure_tracing` turned tracing on in this process."""
    return _enabled


def configure_tracing(service: str, settings: Settings) -> bool:
    """Export this process's spans when the settings ask for it; True when on.
    `service` is the `service.name` unless `OTEL_SERVICE_NAME` gives one."""
    global _enabled
    if not settings.tracing_enabled or _enabled:
        return _enabled
    # Imported here: a process with tracing off never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; what
    # is passed here would override them, so the default name only when unset.
    attributes = {} if settings.otel_service_name else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    atexit.register(_flush_at_exit, provider.shutdown)
    PymongoInstrumentor().instrument()
    _enabled = True
    log.info(
        "tracing on: spans exported over OTLP/HTTP",
        extra={
            "endpoint": settings.otel_exporter_otlp_traces_endpoint
            or settings.otel_exporter_otlp_endpoint,
            "sampler": type(provider.sampler).__name__,
        },
    )
    return True


def _flush_at_exit(shutdown: Callable[[], None]) -> None:
    """Flush and close the exporter, for at most `EXIT_FLUSH_S` (the SDK's own exit
    hook would wait for the exporter's retries): on a thread, left behind if late."""
    flushing = threading.Thread(target=shutdown, name="otel-exit-flush", daemon=True)
    flushing.start()
    flushing.join(EXIT_FLUSH_S)
    if flushing.is_alive():
        log.warning(
            "spans not flushed at exit: the collector did not take them in time",
            extra={"waited_s": EXIT_FLUSH_S},
        )


def instrument_app(app: Any) -> None:
    """Server spans for a FastAPI app's requests (not for probes and scrapes)."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # The ASGI "receive"/"send" sub-spans would double every request's spans
    # and say nothing the server span does not.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"]
    )


def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None
) -> AbstractContextManager[Span | None]:
    """A span around the block (current inside it; records an exception that
    escapes it), or nothing at all while tracing is off."""
    if not _enabled:
        return nullcontext()
    return trace.get_tracer(_TRACER_NAME).start_as_current_span(
        name, kind=kind, attributes=attributes
    )


def tag_call(call_id: str | None) -> None:
    """Put `call_id` on the span in hand (see `callbot.common.logs.log_context`)."""
    if _enabled and call_id:
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attribute(CALL_ID_ATTRIBUTE, call_id)


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the span in hand, for log lines."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
