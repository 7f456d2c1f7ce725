"""The live page's events: `call.*` from the events exchange, fanned out to
every live page this gateway process serves.

One exclusive, auto-deleted queue per gateway process, declared when the
first live page opens and deleted when the last one closes: a gateway
nobody watches consumes nothing. Events go to each page through a bounded
in-memory queue; a page that falls that far behind is dropped (its stream
ends and the browser reconnects, which resends the calls in progress), so
one slow browser never holds memory or the consumer back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from callbot.common.contracts import AnyEvent, decode_event

log = logging.getLogger(__name__)

ROUTING_KEY = "call.*"
PAGE_BACKLOG = 1000  # events a page may lag behind before it is dropped
QUEUE_MAX_LENGTH = 10_000  # the broker drops the oldest beyond this (never blocks publishers)


@dataclass(eq=False)
class Listener:
    """One live page's events, in order; `dropped` once it fell behind."""

    events: asyncio.Queue[AnyEvent] = field(
        default_factory=lambda: asyncio.Queue(maxsize=PAGE_BACKLOG)
    )
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class LiveFeed:
    def __init__(self, connection: AbstractRobustConnection, exchange_name: str) -> None:
        self._connection = connection
        self._exchange_name = exchange_name
        self._listeners: set[Listener] = set()
        self._lock = asyncio.Lock()
        # Strong references: a robust connection restores only what is still referenced.
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[Listener]:
        """Events from now on, until the block ends."""
        listener = Listener()
        async with self._lock:
            if not self._listeners:
                await self._bind()
            self._listeners.add(listener)
        try:
            yield listener
        finally:
            async with self._lock:
                self._listeners.discard(listener)
                if not self._listeners:
                    await self._unbind()

    async def close(self) -> None:
        async with self._lock:
            for listener in self._listeners:
                listener.dropped.set()
            self._listeners.clear()
            await self._unbind()

    async def _bind(self) -> None:
        channel = await self._connection.channel(publisher_confirms=False)
        exchange = await channel.get_exchange(self._exchange_name, ensure=False)
        queue = await channel.declare_queue(
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
        )
        await queue.bind(exchange, routing_key=ROUTING_KEY)
        await queue.consume(self._deliver, no_ack=True)
        self._channel, self._queue = channel, queue
        log.info("live feed bound", extra={"queue": queue.name})

    async def _unbind(self) -> None:
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            await channel.close()  # the exclusive queue goes with its consumer
            log.info("live feed unbound: no live page open")

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode_event(message.body)
        except (ValidationError, ValueError):
            log.warning(
                "live feed: undecodable event skipped", extra={"routing_key": message.routing_key}
            )
            return
        for listener in list(self._listeners):
            try:
                listener.events.put_nowait(event)
            except asyncio.QueueFull:
                listener.dropped.set()
