"""Publisher, consumer, dead-lettering and RPC against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection

from callbot.common.contracts import (
    DIALOG_REQUEST_ADAPTER,
    DIALOG_RESPONSE_ADAPTER,
    AnyEvent,
    CallAnswered,
    CallEnding,
    DialogReply,
    DialogRequest,
    DialogStart,
    DialogTurn,
    RpcFailure,
    decode_event,
)
from callbot.common.messaging import (
    Deadline,
    EventConsumer,
    EventPublisher,
    RpcClient,
    RpcServer,
    RpcTimeout,
    Topology,
    connect,
)
from callbot.common.settings import Settings
from callbot.testkit.rabbit import close_connections

pytestmark = pytest.mark.rabbit


async def _publisher(connection: AbstractRobustConnection, topology: Topology) -> EventPublisher:
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(topology.events_exchange)
    return EventPublisher(exchange, app_id="test")


async def _persistence_queue(
    connection: AbstractRobustConnection, topology: Topology
) -> AbstractQueue:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=10)
    return await channel.get_queue(topology.persistence_queue.name)


async def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _dead_letters(connection: AbstractRobustConnection, topology: Topology) -> list[bytes]:
    channel = await connection.channel()
    queue = await channel.get_queue(topology.dead_letter_queue)
    bodies = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        bodies.append(message.body)
    await channel.close()
    return bodies


async def test_published_event_is_confirmed_then_consumed(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    publisher = await _publisher(amqp_connection, topology)
    received: list[AnyEvent] = []

    async def handle(event: AnyEvent) -> None:
        received.append(event)

    consumer = EventConsumer(await _persistence_queue(amqp_connection, topology), handle)
    await consumer.start()
    sent = [CallAnswered(call_id=f"c{i}", call_sid=f"CA{i}", answered_by="human") for i in range(5)]
    for event in sent:
        await publisher.publish(event)
    await _wait_for(lambda: len(received) == 5)
    await consumer.stop()
    assert received == sent


async def test_failing_handler_dead_letters_after_the_limit_and_the_queue_flows(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    publisher = await _publisher(amqp_connection, topology)
    attempts: dict[str, int] = {}
    handled: list[str] = []

    async def handle(event: AnyEvent) -> None:
        assert isinstance(event, CallEnding)
        attempts[event.call_id] = attempts.get(event.call_id, 0) + 1
        if event.call_id == "bad":
            raise RuntimeError("handler cannot process this one")
        handled.append(event.call_id)

    consumer = EventConsumer(await _persistence_queue(amqp_connection, topology), handle)
    await consumer.start()
    await publisher.publish(CallEnding(call_id="bad", ended_by="error"))
    for i in range(3):
        await publisher.publish(CallEnding(call_id=f"good{i}", ended_by="user_goodbye"))
    await _wait_for(lambda: len(handled) == 3)
    # The quorum queue allows `delivery_limit` redeliveries, then dead-letters.
    await _wait_for(lambda: attempts.get("bad") == topology.delivery_limit + 1)
    dead: list[bytes] = []

    async def collect() -> bool:
        dead.extend(await _dead_letters(amqp_connection, topology))
        return bool(dead)

    deadline = time.monotonic() + 10
    while not await collect():
        assert time.monotonic() < deadline, "the failing message never reached the DLQ"
        await asyncio.sleep(0.05)
    await consumer.stop()
    assert [decode_event(body).call_id for body in dead] == ["bad"]  # type: ignore[union-attr]
    assert sorted(handled) == ["good0", "good1", "good2"]


async def test_poison_message_is_dead_lettered_at_once(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    handled: list[AnyEvent] = []

    async def handle(event: AnyEvent) -> None:
        handled.append(event)

    consumer = EventConsumer(await _persistence_queue(amqp_connection, topology), handle)
    await consumer.start()
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(topology.events_exchange)
    await exchange.publish(aio_pika.Message(b'{"type": "call.turn"}'), routing_key="call.turn")
    publisher = await _publisher(amqp_connection, topology)
    await publisher.publish(CallAnswered(call_id="after", call_sid="CA1"))
    await _wait_for(lambda: len(handled) == 1)
    await consumer.stop()
    dead = await _dead_letters(amqp_connection, topology)
    assert dead == [b'{"type": "call.turn"}']
    assert handled[0].call_id == "after"  # type: ignore[union-attr]


@pytest.fixture
async def dialog_server(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[list[DialogRequest]]:
    """A scripted dialog: replies at once, or after `delay_s` in the speech."""
    served: list[DialogRequest] = []

    async def handle(request: DialogRequest, deadline: Deadline) -> DialogReply:
        served.append(request)
        if isinstance(request, DialogTurn) and request.speech.startswith("sleep "):
            await asyncio.sleep(float(request.speech.split()[1]))
        return DialogReply(call_id=request.call_id, say="Hello!", action="gather", next_seq=1)

    channel = await amqp_connection.channel()
    queue = await channel.get_queue(topology.dialog_rpc_queue)
    server = RpcServer(channel, queue, DIALOG_REQUEST_ADAPTER, handle)
    await server.start()
    yield served
    await server.stop()


async def _rpc_client(connection: AbstractRobustConnection) -> RpcClient:
    client = RpcClient(await connection.channel(publisher_confirms=False))
    await client.start()
    return client


async def test_rpc_round_trip(
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    dialog_server: list[DialogRequest],
) -> None:
    client = await _rpc_client(amqp_connection)
    request = DialogStart(call_id="c1", agent_id="demo", call_sid="CA1", answered_by="human")
    replies = await asyncio.gather(
        *(
            client.call(topology.dialog_rpc_queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=5)
            for _ in range(20)
        )
    )
    assert all(isinstance(reply, DialogReply) and reply.say == "Hello!" for reply in replies)
    assert dialog_server[0] == request


async def test_rpc_past_its_deadline_times_out_and_the_late_reply_is_dropped(
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    dialog_server: list[DialogRequest],
) -> None:
    client = await _rpc_client(amqp_connection)
    slow = DialogTurn(call_id="c1", seq=1, speech="sleep 0.5")
    started = time.monotonic()
    with pytest.raises(RpcTimeout, match="no reply"):
        await client.call(topology.dialog_rpc_queue, slow, DIALOG_RESPONSE_ADAPTER, timeout_s=0.2)
    assert time.monotonic() - started < 0.45
    await asyncio.sleep(0.5)  # the late reply arrives now and must be discarded
    fast = DialogTurn(call_id="c1", seq=3, speech="hello")
    reply = await client.call(topology.dialog_rpc_queue, fast, DIALOG_RESPONSE_ADAPTER, timeout_s=5)
    assert isinstance(reply, DialogReply)


async def test_rpc_server_drops_requests_whose_deadline_passed(
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    dialog_server: list[DialogRequest],
) -> None:
    channel = await amqp_connection.channel()
    stale = DialogTurn(call_id="c1", seq=1, speech="too late")
    await channel.default_exchange.publish(
        aio_pika.Message(stale.to_json(), headers={"x-deadline-ms": int(time.time() * 1000) - 1}),
        routing_key=topology.dialog_rpc_queue,
    )
    client = await _rpc_client(amqp_connection)
    fresh = DialogTurn(call_id="c1", seq=3, speech="in time")
    await client.call(topology.dialog_rpc_queue, fresh, DIALOG_RESPONSE_ADAPTER, timeout_s=5)
    assert dialog_server == [fresh]


async def test_rpc_handler_error_is_answered_as_a_failure(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def handle(request: DialogRequest, deadline: Deadline) -> DialogReply:
        raise ValueError("agent 'nope' does not exist")

    channel = await amqp_connection.channel()
    queue = await channel.get_queue(topology.dialog_rpc_queue)
    server = RpcServer(channel, queue, DIALOG_REQUEST_ADAPTER, handle)
    await server.start()
    client = await _rpc_client(amqp_connection)
    request = DialogStart(call_id="c1", agent_id="nope", call_sid="CA1")
    reply = await client.call(
        topology.dialog_rpc_queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=5
    )
    await server.stop()
    assert isinstance(reply, RpcFailure)
    assert reply.code == "internal"
    assert "does not exist" in reply.message


async def test_dropped_connections_recover_and_nothing_acknowledged_is_lost(
    settings: Settings, topology: Topology, namespace: str
) -> None:
    connection = await connect(settings, f"test-{namespace}-victim", wait_s=5)
    publisher = await _publisher(connection, topology)
    received: list[str] = []

    async def handle(event: AnyEvent) -> None:
        received.append(event.call_id)  # type: ignore[union-attr]

    consumer = EventConsumer(await _persistence_queue(connection, topology), handle)
    await consumer.start()
    rpc_channel = await connection.channel()
    rpc_queue = await rpc_channel.get_queue(topology.dialog_rpc_queue)

    async def answer(request: DialogRequest, deadline: Deadline) -> DialogReply:
        return DialogReply(call_id=request.call_id, say="still here", action="gather", next_seq=2)

    server = RpcServer(rpc_channel, rpc_queue, DIALOG_REQUEST_ADAPTER, answer)
    await server.start()
    client = await _rpc_client(connection)

    confirmed: list[str] = []
    for i in range(10):
        await publisher.publish(CallAnswered(call_id=f"before{i}", call_sid="CA"))
        confirmed.append(f"before{i}")
    assert close_connections(f"test-{namespace}-victim") == 1
    for i in range(10):
        # Publishing retries across the reconnect until the broker confirms.
        await publisher.publish(CallAnswered(call_id=f"after{i}", call_sid="CA"), timeout_s=15)
        confirmed.append(f"after{i}")
    await _wait_for(lambda: set(confirmed) <= set(received), timeout_s=15)

    reply = None
    deadline = time.monotonic() + 15
    while reply is None:
        try:
            reply = await client.call(
                topology.dialog_rpc_queue,
                DialogTurn(call_id="c", seq=1),
                DIALOG_RESPONSE_ADAPTER,
                timeout_s=1,
            )
        except RpcTimeout:
            assert time.monotonic() < deadline, "RPC never recovered after the reconnect"
    assert isinstance(reply, DialogReply)
    await consumer.stop()
    await server.stop()
    await connection.close()
