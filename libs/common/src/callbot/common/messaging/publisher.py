"""Publishing events: persistent, confirmed by the broker, routed by type."""

from __future__ import annotations

import asyncio
import logging
import time

import aio_pika
from aio_pika.abc import AbstractExchange

from callbot.common.contracts import CallEvent, Event
from callbot.common.messaging.trace_context import sending
from callbot.common.metrics import EVENTS_PUBLISHED, PUBLISH_SECONDS

log = logging.getLogger(__name__)

# What a publish raises while the robust connection is away or reconnecting.
TRANSIENT_PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    RuntimeError,  # aiormq: "Connection closed" / writer is None during reconnect
)
_RETRYABLE: tuple[type[BaseException], ...] = (TimeoutError, *TRANSIENT_PUBLISH_ERRORS)


class PublishFailed(Exception):
    """The broker did not confirm the event within the time allowed."""


class EventPublisher:
    """Publishes events to the events exchange; `publish` returns once the broker
    has confirmed the message (the exchange's channel has publisher confirms)."""

    def __init__(self, exchange: AbstractExchange, app_id: str) -> None:
        self._exchange = exchange
        self._app_id = app_id

    async def publish(self, event: Event, *, timeout_s: float = 10.0) -> None:
        """Publish and wait for the confirm, retrying across a reconnect until
        `timeout_s` has passed; then raise `PublishFailed`."""
        call_id = event.call_id if isinstance(event, CallEvent) else None
        message = aio_pika.Message(
            event.to_json(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.message_id,
            type=event.type,  # type: ignore[attr-defined]  # every concrete event has one
            app_id=self._app_id,
            timestamp=event.occurred_at,
            headers={"call_id": call_id} if call_id else {},
        )
        routing_key: str = event.type  # type: ignore[attr-defined]
        started = time.perf_counter()
        exchange = self._exchange.name
        with sending(message, exchange=exchange, routing_key=routing_key, call_id=call_id):
            await self._publish_confirmed(message, routing_key, started + timeout_s, timeout_s)
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        EVENTS_PUBLISHED.labels(routing_key).inc()

    async def _publish_confirmed(
        self, message: aio_pika.Message, routing_key: str, deadline: float, timeout_s: float
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.perf_counter()
            try:
                await self._exchange.publish(
                    message, routing_key=routing_key, mandatory=False, timeout=remaining
                )
                return
            except _RETRYABLE as exc:
                if time.perf_counter() + 0.2 >= deadline:
                    raise PublishFailed(
                        f"{routing_key} {message.message_id} not confirmed after {attempt} "
                        f"attempts in {timeout_s:.1f}s: {exc!r}"
                    ) from exc
                log.warning(
                    "publish not confirmed, retrying",
                    extra={"event_type": routing_key, "attempt": attempt, "error": repr(exc)},
                )
                await asyncio.sleep(0.2)
