"""Streaming RPC against the real RabbitMQ: order, final marker, deadline,
cancellation reaching the replica doing the work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from callbot.common.contracts import (
    DIALOG_REQUEST_ADAPTER,
    DIALOG_RESPONSE_ADAPTER,
    DialogReply,
    DialogRequest,
    DialogTurn,
    RpcFailure,
)
from callbot.common.messaging import (
    Deadline,
    RpcBadReply,
    RpcTimeout,
    StreamEmit,
    StreamingRpcClient,
    StreamingRpcServer,
    Topology,
    stream_cancel_exchange,
)
from callbot.common.streaming import STREAM_CANCEL_ADAPTER, StreamChunk

pytestmark = pytest.mark.rabbit


@dataclass
class Worker:
    """A scripted streaming dialog: speech "count N" emits N words, one every
    20 ms; "fail" raises; "wait" sleeps past any deadline."""

    emitted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)

    async def handle(
        self, request: DialogRequest, deadline: Deadline, emit: StreamEmit
    ) -> DialogReply:
        assert isinstance(request, DialogTurn)
        self.served.append(request.speech)
        words: list[str] = []
        try:
            if request.speech == "fail":
                raise ValueError("the model said nothing")
            if request.speech == "wait":
                await asyncio.sleep(60)
            for index in range(int(request.speech.split()[1])):
                word = f"w{index} "
                await emit(word)
                self.emitted.append(word)
                words.append(word)
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            self.cancelled.append(request.speech)
            raise
        return DialogReply(
            call_id=request.call_id, say="".join(words), action="gather", next_seq=request.seq + 1
        )


@pytest.fixture
async def stream_queue(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[str]:
    channel = await amqp_connection.channel()
    name = f"{topology.namespace}.stream-test"
    await channel.declare_queue(name)
    yield name
    cleanup = await amqp_connection.channel()
    await cleanup.queue_delete(name)
    await cleanup.exchange_delete(stream_cancel_exchange(topology.namespace))


async def _server(
    connection: AbstractRobustConnection, topology: Topology, queue_name: str, worker: Worker
) -> StreamingRpcServer[DialogRequest]:
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name)
    server = StreamingRpcServer(
        channel,
        queue,
        DIALOG_REQUEST_ADAPTER,
        worker.handle,
        cancel_exchange=stream_cancel_exchange(topology.namespace),
    )
    await server.start()
    return server


async def _client(connection: AbstractRobustConnection, topology: Topology) -> StreamingRpcClient:
    client = StreamingRpcClient(
        await connection.channel(publisher_confirms=False),
        stream_cancel_exchange(topology.namespace),
    )
    await client.start()
    return client


def _turn(speech: str) -> DialogTurn:
    return DialogTurn(call_id="c1", seq=1, speech=speech)


async def test_chunks_arrive_in_order_then_the_final_reply(
    amqp_connection: AbstractRobustConnection, topology: Topology, stream_queue: str
) -> None:
    worker = Worker()
    server = await _server(amqp_connection, topology, stream_queue, worker)
    client = await _client(amqp_connection, topology)

    async def one(count: int) -> tuple[list[str], object]:
        stream = await client.open(
            stream_queue, _turn(f"count {count}"), DIALOG_RESPONSE_ADAPTER, timeout_s=5
        )
        return [chunk async for chunk in stream.chunks()], stream.reply

    results = await asyncio.gather(*(one(count) for count in (0, 3, 7)))
    for count, (chunks, reply) in zip((0, 3, 7), results, strict=True):
        assert chunks == [f"w{index} " for index in range(count)]
        assert isinstance(reply, DialogReply)
        assert reply.say == "".join(chunks)
    await server.stop()


async def test_a_handler_error_ends_the_stream_with_a_failure(
    amqp_connection: AbstractRobustConnection, topology: Topology, stream_queue: str
) -> None:
    server = await _server(amqp_connection, topology, stream_queue, Worker())
    client = await _client(amqp_connection, topology)
    stream = await client.open(stream_queue, _turn("fail"), DIALOG_RESPONSE_ADAPTER, timeout_s=5)
    assert [chunk async for chunk in stream.chunks()] == []
    assert isinstance(stream.reply, RpcFailure)
    assert "the model said nothing" in stream.reply.message
    await server.stop()


async def test_the_caller_times_out_and_the_server_stops_the_work_at_the_deadline(
    amqp_connection: AbstractRobustConnection, topology: Topology, stream_queue: str
) -> None:
    worker = Worker()
    server = await _server(amqp_connection, topology, stream_queue, worker)
    client = await _client(amqp_connection, topology)
    stream = await client.open(stream_queue, _turn("wait"), DIALOG_RESPONSE_ADAPTER, timeout_s=0.3)
    with pytest.raises(RpcTimeout, match="did not end before its deadline"):
        _ = [chunk async for chunk in stream.chunks()]
    await asyncio.wait_for(server.stop(), 5)  # the handler was stopped, not left running
    assert worker.served == ["wait"]


async def test_cancel_reaches_the_replica_doing_the_work(
    amqp_connection: AbstractRobustConnection, topology: Topology, stream_queue: str
) -> None:
    workers = [Worker(), Worker()]
    servers = [await _server(amqp_connection, topology, stream_queue, w) for w in workers]
    client = await _client(amqp_connection, topology)
    stream = await client.open(
        stream_queue, _turn("count 500"), DIALOG_RESPONSE_ADAPTER, timeout_s=20
    )
    heard = []
    async for chunk in stream.chunks():
        heard.append(chunk)
        if len(heard) == 3:
            break
    await stream.cancel("the callee interrupted")
    for server in servers:
        await asyncio.wait_for(server.stop(), 5)  # returns only once the work ended
    doing = [worker for worker in workers if worker.served]
    assert len(doing) == 1
    assert doing[0].cancelled == ["count 500"]
    assert 3 <= len(doing[0].emitted) < 500
    # The next request on the same client is served normally.
    again = await _server(amqp_connection, topology, stream_queue, Worker())
    stream = await client.open(stream_queue, _turn("count 2"), DIALOG_RESPONSE_ADAPTER, timeout_s=5)
    assert [chunk async for chunk in stream.chunks()] == ["w0 ", "w1 "]
    await again.stop()


async def test_cancel_reaches_the_server_after_the_reading_task_was_cancelled(
    amqp_connection: AbstractRobustConnection, topology: Topology, stream_queue: str
) -> None:
    # How gateway stops an answer on barge-in: the task reading the chunks is
    # cancelled, then the stream.
    worker = Worker()
    server = await _server(amqp_connection, topology, stream_queue, worker)
    client = await _client(amqp_connection, topology)
    stream = await client.open(
        stream_queue, _turn("count 500"), DIALOG_RESPONSE_ADAPTER, timeout_s=20
    )
    first = asyncio.Event()

    async def read() -> None:
        async for _chunk in stream.chunks():
            first.set()

    reading = asyncio.create_task(read())
    await first.wait()
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    await stream.cancel("the callee interrupted")
    await asyncio.wait_for(server.stop(), 5)
    assert worker.cancelled == ["count 500"]
    assert len(worker.emitted) < 500


async def test_a_chunk_out_of_order_is_refused_and_the_work_cancelled(
    amqp_connection: AbstractRobustConnection, topology: Topology, stream_queue: str
) -> None:
    # A server that skips chunk 0, played by hand: the caller must not speak
    # chunk 1 and must stop the work rather than let it run to the deadline.
    channel = await amqp_connection.channel()
    cancels = await channel.declare_queue(exclusive=True)
    exchange = await channel.get_exchange(stream_cancel_exchange(topology.namespace), ensure=False)
    client = await _client(amqp_connection, topology)  # declares the cancel exchange
    await cancels.bind(exchange)
    requests = await channel.get_queue(stream_queue)
    stream = await client.open(stream_queue, _turn("count 3"), DIALOG_RESPONSE_ADAPTER, timeout_s=5)
    request = await _get(requests)
    assert request.reply_to is not None
    gap = StreamChunk(seq=1, text="w1 ")
    await channel.default_exchange.publish(
        aio_pika.Message(gap.to_json(), correlation_id=request.correlation_id, type=gap.type),
        routing_key=request.reply_to,
    )
    with pytest.raises(RpcBadReply, match="chunk 1 arrived, expected 0"):
        _ = [chunk async for chunk in stream.chunks()]
    cancel = STREAM_CANCEL_ADAPTER.validate_json((await _get(cancels)).body)
    assert cancel.correlation_id == request.correlation_id
    assert "chunk 1 arrived" in cancel.reason


async def _get(queue: AbstractQueue) -> AbstractIncomingMessage:
    """The queue's next message, waiting up to 5 s for it."""
    async with asyncio.timeout(5):
        while True:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                return message
            await asyncio.sleep(0.02)
