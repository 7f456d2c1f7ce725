"""Consuming events: ack after the handler's effect is durable.

- A message that is not a valid event (a poison message) is rejected at once
  and dead-lettered: retrying cannot fix it.
- A handler that raises gets its message requeued; the quorum queue's
  delivery limit dead-letters it after the last attempt, so one bad message
  never blocks the queue. Given that `delivery_limit`, the consumer rejects
  the last attempt itself, so the log says when and why a message went to the
  dead-letter queue. Handlers that expect long outages (persistence and
  MongoDB) retry inside themselves instead of raising.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from callbot.common.contracts import AnyEvent, decode_event
from callbot.common.logs import log_context
from callbot.common.messaging.trace_context import processing
from callbot.common.metrics import MESSAGES_CONSUMED

log = logging.getLogger(__name__)

EventHandler = Callable[[AnyEvent], Awaitable[None]]


class EventConsumer:
    def __init__(
        self, queue: AbstractQueue, handler: EventHandler, *, delivery_limit: int | None = None
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._delivery_limit = delivery_limit
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop taking messages, then let the ones in hand finish (and ack)."""
        if self._consumer_tag is not None:
            await self._queue.cancel(self._consumer_tag)
            self._consumer_tag = None
        current = asyncio.current_task()
        pending = [task for task in self._in_flight if task is not current]
        if pending:
            await asyncio.wait(pending)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._process(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        queue = self._queue.name
        call_id = (message.headers or {}).get("call_id")
        call_id = call_id if isinstance(call_id, str) else None
        with (
            processing(message, queue=queue, call_id=call_id),
            log_context(call_id=call_id, message_id=message.message_id, queue=queue),
        ):
            try:
                event = decode_event(message.body)
            except ValidationError as exc:
                log.error(
                    "poison message dead-lettered: not a valid event",
                    extra={"reason": _first_errors(exc), "routing_key": message.routing_key},
                )
                await message.reject(requeue=False)
                MESSAGES_CONSUMED.labels(queue, "dead_lettered").inc()
                return
            try:
                await self._handler(event)
            except Exception as exc:
                # The quorum queue's count of earlier deliveries; past the limit it dead-letters.
                deliveries = (message.headers or {}).get("x-delivery-count", 0)
                previous = deliveries if isinstance(deliveries, int) else 0
                if self._delivery_limit is not None and previous >= self._delivery_limit:
                    log.exception(
                        "handler failed on the last delivery allowed; message dead-lettered",
                        extra={
                            "event_type": event.type,
                            "reason": f"{type(exc).__name__}: {exc}",
                            "deliveries": previous + 1,
                        },
                    )
                    await message.reject(requeue=False)
                    MESSAGES_CONSUMED.labels(queue, "dead_lettered").inc()
                    return
                log.exception(
                    "handler failed; message requeued (dead-lettered after the delivery limit)",
                    extra={"event_type": event.type, "previous_deliveries": deliveries},
                )
                await message.nack(requeue=True)
                MESSAGES_CONSUMED.labels(queue, "requeued").inc()
                return
            await message.ack()
            MESSAGES_CONSUMED.labels(queue, "acked").inc()


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or '<body>'}: {err['msg']}"
        for err in exc.errors()[:limit]
    )
