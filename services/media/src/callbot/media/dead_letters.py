"""Dead-lettering an event the worker gave up on, with the reason in the headers.

The copy goes to the dead-letter exchange with the headers the replay tool
reads (`x-callbot-dead-letter-queue`, `x-callbot-dead-letter-reason`), so
`python -m callbot.common.messaging.replay` sends it back once the cause is
fixed; the original is then acknowledged.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange

from callbot.common.contracts import CallEvent, Event
from callbot.common.messaging.topology import DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER

MAX_REASON_CHARS = 1000


class DeadLetterPublisher:
    def __init__(self, exchange: AbstractExchange, queue_name: str) -> None:
        self._exchange = exchange
        self._queue_name = queue_name

    async def dead_letter(self, event: Event, reason: str) -> None:
        headers: dict[str, Any] = {
            DEAD_LETTER_QUEUE_HEADER: self._queue_name,
            DEAD_LETTER_REASON_HEADER: reason[:MAX_REASON_CHARS],
        }
        if isinstance(event, CallEvent):
            headers["call_id"] = event.call_id
        await self._exchange.publish(
            aio_pika.Message(
                event.to_json(),
                headers=headers,
                content_type="application/json",
                message_id=event.message_id,
                type=event.type,  # type: ignore[attr-defined]  # every concrete event has one
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self._queue_name,
        )
