"""Request/reply over RabbitMQ direct reply-to, with a deadline on every request.

The client stamps each request with an absolute deadline (header
`x-deadline-ms`, epoch milliseconds) and an AMQP expiration, and raises
`RpcTimeout` when the deadline passes; a reply that comes later is discarded.
The server drops requests whose deadline passed before it got to them: the
caller has already answered without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from pydantic import TypeAdapter, ValidationError

from callbot.common.contracts import Message, RpcFailure, new_id
from callbot.common.logs import log_context
from callbot.common.messaging.publisher import TRANSIENT_PUBLISH_ERRORS
from callbot.common.messaging.topology import DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER
from callbot.common.messaging.trace_context import processing, sending
from callbot.common.metrics import RPC_SECONDS, RPC_SERVED

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"
DEADLINE_HEADER = "x-deadline-ms"

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep")


class RpcError(Exception):
    """An RPC did not produce a usable reply."""


class RpcTimeout(RpcError):
    """No reply before the deadline."""


class RpcUnavailable(RpcError):
    """The request could not be sent (the broker connection is away)."""


class RpcBadReply(RpcError):
    """The reply was not a valid response message."""


@dataclass(frozen=True)
class Deadline:
    """An absolute point in (wall-clock) time, shared between processes."""

    at: float  # epoch seconds

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.time() + seconds)

    def remaining(self) -> float:
        return self.at - time.time()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


class RpcClient:
    """Calls RPC servers. Uses one channel without publisher confirms: the reply
    is the confirmation, and confirms would only add latency on this path."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._reply_queue: AbstractQueue | None = None

    async def start(self) -> None:
        # The reply consumer must exist before the first publish, and must be
        # obtained through get_queue so the robust channel restores it after a
        # reconnect (otherwise every later call would time out).
        self._reply_queue = await self._channel.get_queue(REPLY_TO, ensure=True)
        await self._reply_queue.consume(self._on_reply, no_ack=True)

    async def call(
        self,
        queue_name: str,
        request: Message,
        adapter: TypeAdapter[Rep],
        *,
        timeout_s: float,
    ) -> Rep:
        method: str = request.type  # type: ignore[attr-defined]
        correlation_id = new_id()
        deadline = Deadline.after(timeout_s)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        started = time.perf_counter()
        outcome = "ok"
        message = request_message(request, method, correlation_id, deadline)
        call_id = getattr(request, "call_id", None)
        try:
            with sending(message, exchange="", routing_key=queue_name, call_id=call_id):
                async with asyncio.timeout(timeout_s):
                    await self._channel.default_exchange.publish(
                        message, routing_key=queue_name, mandatory=False
                    )
                    body = await future
            return adapter.validate_json(body)
        except TimeoutError as exc:
            outcome = "timeout"
            raise RpcTimeout(
                f"{method}: no reply from {queue_name} within {timeout_s:.2f}s"
            ) from exc
        except TRANSIENT_PUBLISH_ERRORS as exc:
            outcome = "unavailable"
            raise RpcUnavailable(f"{method}: could not send to {queue_name}: {exc!r}") from exc
        except ValidationError as exc:
            outcome = "bad_reply"
            raise RpcBadReply(f"{method}: invalid reply from {queue_name}: {exc}") from exc
        finally:
            self._pending.pop(correlation_id, None)
            RPC_SECONDS.labels(method, outcome).observe(time.perf_counter() - started)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is None or future.done():
            log.info(
                "late or unknown RPC reply discarded",
                extra={"correlation_id": message.correlation_id},
            )
            return
        future.set_result(message.body)


def request_message(
    request: Message, method: str, correlation_id: str, deadline: Deadline
) -> aio_pika.Message:
    """An RPC request as sent: to direct reply-to, with its deadline."""
    return aio_pika.Message(
        request.to_json(),
        content_type="application/json",
        correlation_id=correlation_id,
        reply_to=REPLY_TO,
        type=method,
        # The broker discards a request nobody took before its deadline.
        expiration=max(deadline.remaining(), 0.001),
        headers={DEADLINE_HEADER: int(deadline.at * 1000)},
    )


RpcHandler = Callable[[Req, Deadline], Awaitable[Message]]


class RpcServer(Generic[Req]):
    """Serves one RPC queue: parse, check the deadline, handle, reply, ack.

    A handler error becomes an `RpcFailure` reply (the caller learns at once
    rather than at its deadline); requests are acked, never redelivered in a
    loop, because the caller has its own fallback. A request that is not a
    valid request (a poison message) is answered `bad_request` and a copy goes
    to `dead_letters` (the dead-letter exchange), naming this queue and why:
    the queue itself has no dead-letter exchange, or every request that
    expired unserved would land in the dead-letter queue too."""

    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        adapter: TypeAdapter[Req],
        handler: RpcHandler[Req],
        *,
        dead_letters: AbstractExchange | None = None,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._adapter = adapter
        self._handler = handler
        self._dead_letters = dead_letters
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._consumer_tag = await self._queue.consume(self._on_request)

    async def stop(self) -> None:
        if self._consumer_tag is not None:
            await self._queue.cancel(self._consumer_tag)
            self._consumer_tag = None
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._serve(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _serve(self, message: AbstractIncomingMessage) -> None:
        # call_id is known once the request is parsed: `log_context` puts it on the span.
        with processing(message, queue=self._queue.name, call_id=None):
            await self._serve_traced(message)

    async def _serve_traced(self, message: AbstractIncomingMessage) -> None:
        method = message.type or "unknown"
        deadline_ms = (message.headers or {}).get(DEADLINE_HEADER)
        deadline = Deadline(
            deadline_ms / 1000 if isinstance(deadline_ms, int) else time.time() + 30
        )
        if deadline.expired:
            log.warning(
                "RPC request dropped: its deadline passed before it was served",
                extra={"method": method, "late_by_ms": int(-deadline.remaining() * 1000)},
            )
            RPC_SERVED.labels(method, "expired").inc()
            await message.ack()
            return
        reply, outcome = await self._handle(message, deadline)
        if isinstance(reply, RpcFailure) and reply.code == "bad_request":
            await self._dead_letter(message, reply.message)
        if message.reply_to:
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    reply.to_json(),
                    content_type="application/json",
                    correlation_id=message.correlation_id,
                    type=reply.type,  # type: ignore[attr-defined]
                ),
                routing_key=message.reply_to,
                mandatory=False,
            )
        await message.ack()
        RPC_SERVED.labels(method, outcome).inc()

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        if self._dead_letters is None:
            return
        headers = {
            **(message.headers or {}),
            DEAD_LETTER_QUEUE_HEADER: self._queue.name,
            DEAD_LETTER_REASON_HEADER: reason[:1000],
        }
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._dead_letters.publish(copy, routing_key=self._queue.name)
        except TRANSIENT_PUBLISH_ERRORS as exc:
            log.warning(
                "the poison request's copy was not dead-lettered", extra={"error": repr(exc)}
            )

    async def _handle(
        self, message: AbstractIncomingMessage, deadline: Deadline
    ) -> tuple[Message, str]:
        try:
            request = self._adapter.validate_json(message.body)
        except ValidationError as exc:
            log.error(
                "poison RPC request: answered bad_request, a copy dead-lettered",
                extra={
                    "reason": _first_errors(exc),
                    "method": message.type,
                    "message_id": message.message_id,
                    "queue": self._queue.name,
                },
            )
            return RpcFailure(code="bad_request", message=str(exc)), "bad_request"
        with log_context(call_id=getattr(request, "call_id", None)):
            try:
                return await self._handler(request, deadline), "ok"
            except Exception as exc:
                log.exception("RPC handler failed", extra={"method": message.type})
                return RpcFailure(code="internal", message=f"{type(exc).__name__}: {exc}"), "error"


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or '<body>'}: {err['msg']}"
        for err in exc.errors()[:limit]
    )
