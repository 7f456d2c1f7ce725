"""W3C trace context through RabbitMQ: the one place messages carry it.

A publish (an event, an RPC request) opens a PRODUCER span and writes its
context (`traceparent`, `tracestate`) into the AMQP message headers; the
handling of a delivery (an event consumer, an RPC server) reads it back and
opens a CONSUMER span as its child. So one turn is one trace: gateway's
webhook, the `dialog.rpc` request, dialog's handling, the `call.turn` it
publishes, persistence's handling and write.

Names and attributes follow OpenTelemetry's messaging semantic conventions
for RabbitMQ: `messaging.system=rabbitmq`, `messaging.operation.type` and
`.name` (`send` / `process`), `messaging.destination.name` (the exchange; empty
for the default exchange, which routes an RPC request by queue name),
`messaging.rabbitmq.destination.routing_key`, `messaging.message.id`,
`messaging.message.conversation_id` (an RPC's correlation id),
`messaging.message.body.size`. Span names: `send <exchange>`, `send <queue>`
for an RPC request, `process <queue>`. The span of a publish covers its
retries across a reconnect (one publish, one span); `call_id` is on both sides.

We do this by hand rather than with opentelemetry-instrumentation-aio-pika
(whose version range does include our aio-pika): it names and attributes
spans after the 1.11 conventions (`<destination> send`, `messaging.destination`,
`net.peer.*`, the handling as `receive`), opens its producer span inside
`Exchange.publish`, where no `call_id` is known and each retry is a span of
its own, and reads aio-pika's private channel attributes.

Off (`callbot.common.tracing`), every function here returns at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind

from callbot.common.tracing import CALL_ID_ATTRIBUTE, tracing_enabled

_TRACER_NAME = "callbot.messaging"


class _HeadersGetter(Getter[Mapping[str, Any]]):
    """Reads `traceparent` from AMQP headers, whose strings may arrive as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _HeadersGetter()


def sending(
    message: aio_pika.Message,
    *,
    exchange: str,
    routing_key: str,
    call_id: str | None,
) -> AbstractContextManager[Span | None]:
    """The PRODUCER span of one publish of `message` (retries included); its
    context goes into `message.headers` as the block starts."""
    if not tracing_enabled():
        return nullcontext()
    return _sending(message, exchange, routing_key, call_id)


@contextmanager
def _sending(
    message: aio_pika.Message, exchange: str, routing_key: str, call_id: str | None
) -> Iterator[Span]:
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.body.size": len(message.body),
    }
    if message.message_id:
        attributes["messaging.message.id"] = message.message_id
    if message.correlation_id:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    if call_id:
        attributes[CALL_ID_ATTRIBUTE] = call_id
    name = f"send {exchange or routing_key}"
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        propagate.inject(message.headers)
        yield span


def processing(
    message: AbstractIncomingMessage, *, queue: str, call_id: str | None
) -> AbstractContextManager[Span | None]:
    """The CONSUMER span of handling one delivery from `queue`, a child of the
    span that published it (when its headers carry one)."""
    if not tracing_enabled():
        return nullcontext()
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": message.exchange or "",
        "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
        "messaging.message.body.size": len(message.body),
    }
    if message.message_id:
        attributes["messaging.message.id"] = message.message_id
    if message.correlation_id:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    if message.delivery_tag is not None:
        attributes["messaging.rabbitmq.message.delivery_tag"] = message.delivery_tag
    if call_id:
        attributes[CALL_ID_ATTRIBUTE] = call_id
    parent = propagate.extract(message.headers or {}, getter=_GETTER)
    return trace.get_tracer(_TRACER_NAME).start_as_current_span(
        f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )
