"""Streaming RPC: a reply in ordered chunks, a final marker, and cancellation.

The request travels like a one-shot RPC request (`rpc.py`): the same queue,
the `x-deadline-ms` header, an AMQP expiration, direct reply-to. The server
answers with `StreamChunk`s numbered from 0 and one `StreamFinal`, all
published on one channel to the caller's reply-to address, so they arrive in
order; the caller checks the numbering and refuses a gap (`RpcBadReply`),
cancelling the work.
To stop the work early the caller publishes a `StreamCancel` on the fanout
exchange `<namespace>.rpc.cancel`: every server replica has a queue of its
own bound to it, and the replica running that request cancels its task (the
model stream it reads is closed by the cancellation). A cancel that arrives
before the request is served makes the server drop the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from pydantic import TypeAdapter, ValidationError

from callbot.common.contracts import Message, RpcFailure, new_id
from callbot.common.logs import log_context
from callbot.common.messaging.publisher import TRANSIENT_PUBLISH_ERRORS
from callbot.common.messaging.rpc import (
    DEADLINE_HEADER,
    REPLY_TO,
    Deadline,
    RpcBadReply,
    RpcTimeout,
    RpcUnavailable,
    request_message,
)
from callbot.common.messaging.trace_context import processing, sending
from callbot.common.metrics import RPC_SECONDS, RPC_SERVED
from callbot.common.streaming import (
    STREAM_CANCEL_ADAPTER,
    STREAM_FRAME_ADAPTER,
    StreamCancel,
    StreamChunk,
    StreamFinal,
)

log = logging.getLogger(__name__)

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep")

StreamEmit = Callable[[str], Awaitable[None]]
StreamingRpcHandler = Callable[[Req, Deadline, StreamEmit], Awaitable[Message]]

_REMEMBERED_CANCELS = 1024


def stream_cancel_exchange(namespace: str) -> str:
    """The fanout exchange every streaming server replica hears cancels on."""
    return f"{namespace}.rpc.cancel"


async def declare_cancel_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)


class RpcStream(Generic[Rep]):
    """One streaming call in progress: iterate `chunks()` for the text in
    order; `reply` holds the final reply once the iteration ended."""

    def __init__(
        self,
        client: StreamingRpcClient,
        correlation_id: str,
        method: str,
        frames: asyncio.Queue[bytes],
        adapter: TypeAdapter[Rep],
        deadline: Deadline,
    ) -> None:
        self._client = client
        self.correlation_id = correlation_id
        self._method = method
        self._frames = frames
        self._adapter = adapter
        self._deadline = deadline
        self._next_seq = 0
        # The final frame arrived, or the stream was cancelled: nothing to stop.
        self._done = False
        self.reply: Rep | None = None

    @property
    def chunks_received(self) -> int:
        return self._next_seq

    async def chunks(self) -> AsyncIterator[str]:
        """The text chunks in order. Raises `RpcTimeout` at the deadline (the
        server stops at the same deadline) and `RpcBadReply` on a frame that is
        not valid or out of order (the work is cancelled on its replica)."""
        try:
            while True:
                body = await self._next_frame()
                try:
                    frame = STREAM_FRAME_ADAPTER.validate_json(body)
                except ValidationError as exc:
                    raise await self._refused(f"invalid stream frame: {exc}") from exc
                if isinstance(frame, StreamChunk):
                    if frame.seq != self._next_seq:
                        raise await self._refused(
                            f"chunk {frame.seq} arrived, expected {self._next_seq}"
                        )
                    self._next_seq += 1
                    yield frame.text
                    continue
                self._done = True  # the final frame: the work is over
                if frame.chunks != self._next_seq:
                    raise RpcBadReply(
                        f"{self._method}: the stream ended after {frame.chunks} chunks, "
                        f"{self._next_seq} arrived"
                    )
                try:
                    self.reply = self._adapter.validate_python(frame.reply)
                except ValidationError as exc:
                    raise RpcBadReply(f"{self._method}: invalid final reply: {exc}") from exc
                return
        finally:
            # Left early (cancelled, timed out, a bad frame): later frames are
            # dropped; `cancel` still reaches the server.
            self._client.forget(self.correlation_id)

    async def _refused(self, problem: str) -> RpcBadReply:
        """A frame the caller cannot use: the work stops on its replica now
        (the caller speaks its fallback instead), not at the deadline."""
        await self.cancel(f"bad reply: {problem}"[:200])
        return RpcBadReply(f"{self._method}: {problem}")

    async def _next_frame(self) -> bytes:
        remaining = self._deadline.remaining()
        try:
            if remaining <= 0:
                raise TimeoutError
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the
            # get in a task of its own, a loop turn more on every frame.
            async with asyncio.timeout(remaining):
                return await self._frames.get()
        except TimeoutError as exc:
            raise RpcTimeout(
                f"{self._method}: the stream did not end before its deadline "
                f"({self._next_seq} chunks arrived)"
            ) from exc

    async def cancel(self, reason: str = "") -> None:
        """Stop the work on whichever replica does it; later frames are dropped."""
        if self._done:
            return
        self._done = True
        self._client.forget(self.correlation_id)
        await self._client.send_cancel(self.correlation_id, reason)


class StreamingRpcClient:
    """Opens streaming calls. Its own channel, without publisher confirms (the
    first chunk is the confirmation), consuming direct reply-to before the
    first publish."""

    def __init__(self, channel: AbstractChannel, cancel_exchange: str) -> None:
        self._channel = channel
        self._cancel_exchange_name = cancel_exchange
        self._cancel_exchange: AbstractExchange | None = None
        self._pending: dict[str, asyncio.Queue[bytes]] = {}
        self._reply_queue: AbstractQueue | None = None

    async def start(self) -> None:
        self._cancel_exchange = await declare_cancel_exchange(
            self._channel, self._cancel_exchange_name
        )
        self._reply_queue = await self._channel.get_queue(REPLY_TO, ensure=True)
        await self._reply_queue.consume(self._on_frame, no_ack=True)

    async def open(
        self,
        queue_name: str,
        request: Message,
        adapter: TypeAdapter[Rep],
        *,
        timeout_s: float,
    ) -> RpcStream[Rep]:
        method: str = request.type  # type: ignore[attr-defined]
        correlation_id = new_id()
        deadline = Deadline.after(timeout_s)
        frames: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending[correlation_id] = frames
        message = request_message(request, method, correlation_id, deadline)
        call_id = getattr(request, "call_id", None)
        started = time.perf_counter()
        try:
            with sending(message, exchange="", routing_key=queue_name, call_id=call_id):
                await self._channel.default_exchange.publish(
                    message, routing_key=queue_name, mandatory=False
                )
        except TRANSIENT_PUBLISH_ERRORS as exc:
            self.forget(correlation_id)
            RPC_SECONDS.labels(method, "unavailable").observe(time.perf_counter() - started)
            raise RpcUnavailable(f"{method}: could not send to {queue_name}: {exc!r}") from exc
        return RpcStream(self, correlation_id, method, frames, adapter, deadline)

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    async def send_cancel(self, correlation_id: str, reason: str) -> None:
        if self._cancel_exchange is None:
            raise RuntimeError("StreamingRpcClient.start() was not called")
        cancel = StreamCancel(correlation_id=correlation_id, reason=reason)
        try:
            await self._cancel_exchange.publish(
                aio_pika.Message(
                    cancel.to_json(), content_type="application/json", type=cancel.type
                ),
                routing_key="",
            )
        except TRANSIENT_PUBLISH_ERRORS as exc:
            # The work then stops at its deadline instead; nobody listens to it.
            log.warning(
                "stream cancel not sent: the work runs on until its deadline",
                extra={"correlation_id": correlation_id, "error": repr(exc)},
            )

    async def _on_frame(self, message: AbstractIncomingMessage) -> None:
        frames = self._pending.get(message.correlation_id or "")
        if frames is None:
            log.debug(
                "frame of a finished or cancelled stream discarded",
                extra={"correlation_id": message.correlation_id},
            )
            return
        frames.put_nowait(message.body)


class StreamingRpcServer(Generic[Req]):
    """Serves streaming requests from one queue: parse, check the deadline,
    run the handler (which emits text chunks and returns the final reply)
    until done, cancelled or past the deadline, then ack.

    A handler error becomes a `StreamFinal` holding an `RpcFailure`; a
    request that is not valid is answered `bad_request`. A request cancelled
    or past its deadline gets no final frame: its caller stopped listening."""

    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        adapter: TypeAdapter[Req],
        handler: StreamingRpcHandler[Req],
        *,
        cancel_exchange: str,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._adapter = adapter
        self._handler = handler
        self._cancel_exchange_name = cancel_exchange
        self._cancel_queue: AbstractQueue | None = None
        self._consumer_tags: list[tuple[AbstractQueue, str]] = []
        self._work: dict[str, asyncio.Task[Message]] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        exchange = await declare_cancel_exchange(self._channel, self._cancel_exchange_name)
        # Exclusive and server-named: one per replica, gone with the replica.
        # Kept referenced so a robust reconnect restores it and its binding.
        self._cancel_queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await self._cancel_queue.bind(exchange)
        tag = await self._cancel_queue.consume(self._on_cancel, no_ack=True)
        self._consumer_tags.append((self._cancel_queue, tag))
        tag = await self._queue.consume(self._on_request)
        self._consumer_tags.append((self._queue, tag))

    async def stop(self) -> None:
        for queue, tag in reversed(self._consumer_tags):
            await queue.cancel(tag)
        self._consumer_tags.clear()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _on_cancel(self, message: AbstractIncomingMessage) -> None:
        try:
            cancel = STREAM_CANCEL_ADAPTER.validate_json(message.body)
        except ValidationError:
            log.warning("invalid stream cancel ignored", extra={"body": message.body[:200]})
            return
        task = self._work.get(cancel.correlation_id)
        if task is not None:
            task.cancel(f"cancelled by the caller: {cancel.reason}")
            return
        self._cancelled[cancel.correlation_id] = None
        while len(self._cancelled) > _REMEMBERED_CANCELS:
            self._cancelled.popitem(last=False)

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
        with processing(message, queue=self._queue.name, call_id=None):
            await self._serve_traced(message)

    async def _serve_traced(self, message: AbstractIncomingMessage) -> None:
        method = message.type or "unknown"
        correlation_id = message.correlation_id or ""
        deadline_ms = (message.headers or {}).get(DEADLINE_HEADER)
        deadline = Deadline(
            deadline_ms / 1000 if isinstance(deadline_ms, int) else time.time() + 30
        )
        if deadline.expired or correlation_id in self._cancelled:
            outcome = "expired" if deadline.expired else "cancelled"
            log.info(
                "streaming request dropped before it was served",
                extra={"method": method, "outcome": outcome, "correlation_id": correlation_id},
            )
            self._cancelled.pop(correlation_id, None)
            RPC_SERVED.labels(method, outcome).inc()
            await message.ack()
            return
        reply, outcome = await self._handle(message, method, deadline)
        if reply is not None and message.reply_to:
            await self._publish(message, StreamFinal(chunks=reply[1], reply=reply[0]))
        await message.ack()
        RPC_SERVED.labels(method, outcome).inc()

    async def _handle(
        self, message: AbstractIncomingMessage, method: str, deadline: Deadline
    ) -> tuple[tuple[dict[str, object], int] | None, str]:
        try:
            request = self._adapter.validate_json(message.body)
        except ValidationError as exc:
            log.error(
                "invalid streaming request answered bad_request",
                extra={"method": method, "message_id": message.message_id},
            )
            failure = RpcFailure(code="bad_request", message=str(exc))
            return (failure.model_dump(mode="json", by_alias=True), 0), "bad_request"
        sent = 0

        async def emit(text: str) -> None:
            nonlocal sent
            if message.reply_to:
                await self._publish(message, StreamChunk(seq=sent, text=text))
                # The chunk is on its way to a caller who is waiting for speech:
                # let the broker run before the rest of this turn does. Its
                # schedulers are bound to cores (RabbitMQ's default `+stbt db`);
                # when the one our write woke shares this core, it would wait
                # out the kernel's wake-up granularity (up to a few ms) behind
                # us. Costs a syscall when nothing else is runnable here.
                os.sched_yield()
            sent += 1

        correlation_id = message.correlation_id or new_id()
        with log_context(call_id=getattr(request, "call_id", None)):
            work = asyncio.create_task(self._run(request, deadline, emit))
            self._work[correlation_id] = work
            try:
                reply = await work
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                log.info(
                    "streaming request cancelled by its caller",
                    extra={"method": method, "chunks_sent": sent},
                )
                return None, "cancelled"
            except TimeoutError:
                log.warning(
                    "streaming request stopped at its deadline",
                    extra={"method": method, "chunks_sent": sent},
                )
                return None, "expired"
            except Exception as exc:
                log.exception("streaming RPC handler failed", extra={"method": method})
                reply = RpcFailure(code="internal", message=f"{type(exc).__name__}: {exc}")
            finally:
                self._work.pop(correlation_id, None)
        return (reply.model_dump(mode="json", by_alias=True), sent), "ok"

    async def _run(self, request: Req, deadline: Deadline, emit: StreamEmit) -> Message:
        async with asyncio.timeout(max(deadline.remaining(), 0)):
            return await self._handler(request, deadline, emit)

    async def _publish(self, request: AbstractIncomingMessage, frame: Message) -> None:
        await self._channel.default_exchange.publish(
            aio_pika.Message(
                frame.to_json(),
                content_type="application/json",
                correlation_id=request.correlation_id,
                type=frame.type,  # type: ignore[attr-defined]
            ),
            routing_key=request.reply_to or "",
            mandatory=False,
        )
