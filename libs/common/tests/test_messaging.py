"""Publisher, consumer, dead-lettering and RPC against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from pydantic import SecretStr

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
    is_connected,
)
from callbot.common.messaging.replay import replay_dead_letters
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


async def _dead_letter_count(connection: AbstractRobustConnection, topology: Topology) -> int:
    channel = await connection.channel()
    queue = await channel.declare_queue(topology.dead_letter_queue, passive=True)
    await channel.close()
    return queue.declaration_result.message_count or 0


async def test_the_last_failed_delivery_is_dead_lettered_and_logged_with_its_reason(
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = await _publisher(amqp_connection, topology)
    attempts: list[str] = []

    async def handle(event: AnyEvent) -> None:
        attempts.append(event.call_id)  # type: ignore[union-attr]
        if event.call_id == "bad":  # type: ignore[union-attr]
            raise RuntimeError("cannot store this one")

    consumer = EventConsumer(
        await _persistence_queue(amqp_connection, topology),
        handle,
        delivery_limit=topology.delivery_limit,
    )
    await consumer.start()
    await publisher.publish(CallEnding(call_id="bad", ended_by="error"))
    await publisher.publish(CallEnding(call_id="good", ended_by="user_goodbye"))
    await _wait_for(lambda: attempts.count("bad") == topology.delivery_limit + 1)
    await _wait_for(lambda: "good" in attempts)
    await consumer.stop()
    dead = [decode_event(body) for body in await _dead_letters(amqp_connection, topology)]
    assert [event.call_id for event in dead] == ["bad"]  # type: ignore[union-attr]
    last = [r for r in caplog.records if r.getMessage().startswith("handler failed on the last")]
    assert len(last) == 1
    assert last[0].reason == "RuntimeError: cannot store this one"  # type: ignore[attr-defined]
    assert last[0].deliveries == topology.delivery_limit + 1  # type: ignore[attr-defined]


async def test_a_poison_rpc_request_is_answered_and_a_copy_dead_lettered(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def handle(request: DialogRequest, deadline: Deadline) -> DialogReply:
        return DialogReply(call_id=request.call_id, say="Hello!", action="gather", next_seq=1)

    channel = await amqp_connection.channel()
    queue = await channel.get_queue(topology.dialog_rpc_queue)
    dead_letters = await channel.get_exchange(topology.dead_letter_exchange)
    server = RpcServer(channel, queue, DIALOG_REQUEST_ADAPTER, handle, dead_letters=dead_letters)
    await server.start()
    await channel.default_exchange.publish(
        aio_pika.Message(b'{"type": "dialog.turn"}', message_id="poison-1", type="dialog.turn"),
        routing_key=topology.dialog_rpc_queue,
    )
    client = await _rpc_client(amqp_connection)
    request = DialogTurn(call_id="c1", seq=1, speech="after the poison")
    reply = await client.call(
        topology.dialog_rpc_queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=5
    )
    await server.stop()
    assert isinstance(reply, DialogReply)
    dlq = await channel.get_queue(topology.dead_letter_queue)
    deadline = time.monotonic() + 5
    while (dead := await dlq.get(no_ack=True, fail=False)) is None:
        assert time.monotonic() < deadline, "the poison request's copy never reached the DLQ"
        await asyncio.sleep(0.02)
    assert dead.body == b'{"type": "dialog.turn"}'
    assert dead.message_id == "poison-1"
    assert (dead.headers or {})["x-callbot-dead-letter-queue"] == topology.dialog_rpc_queue
    assert "call_id" in str((dead.headers or {})["x-callbot-dead-letter-reason"])


async def test_replay_sends_dead_letters_back_to_the_queue_they_died_in(
    amqp_connection: AbstractRobustConnection, topology: Topology, settings: Settings
) -> None:
    publisher = await _publisher(amqp_connection, topology)
    broken = True
    stored: list[str] = []

    async def handle(event: AnyEvent) -> None:
        if broken:
            raise RuntimeError("MongoDB refuses the write")
        stored.append(event.call_id)  # type: ignore[union-attr]

    consumer = EventConsumer(
        await _persistence_queue(amqp_connection, topology),
        handle,
        delivery_limit=topology.delivery_limit,
    )
    await consumer.start()
    await publisher.publish(CallEnding(call_id="c-replayed", ended_by="user_goodbye"))
    # And one from a queue that is gone (a dialog replica's own queue, say).
    channel = await amqp_connection.channel()
    dlx = await channel.get_exchange(topology.dead_letter_exchange)
    await dlx.publish(
        aio_pika.Message(
            b"{}", headers={"x-callbot-dead-letter-queue": f"{topology.namespace}.gone"}
        ),
        routing_key="gone",
    )
    deadline = time.monotonic() + 15
    while await _dead_letter_count(amqp_connection, topology) < 2:
        assert time.monotonic() < deadline, "the failing event never reached the DLQ"
        await asyncio.sleep(0.05)

    listed: list[str] = []
    dry = await replay_dead_letters(settings, dry_run=True, report=listed.append)
    assert len(dry.listed) == 2
    assert await _dead_letter_count(amqp_connection, topology) == 2

    broken = False
    lines: list[str] = []
    outcome = await replay_dead_letters(settings, report=lines.append)
    await _wait_for(lambda: stored == ["c-replayed"])
    await consumer.stop()
    assert [letter.call_id for letter in outcome.replayed] == ["c-replayed"]
    assert outcome.replayed[0].queue == topology.persistence_queue.name
    assert [why for _, why in outcome.kept] == [
        f"queue '{topology.namespace}.gone' does not exist any more"
    ]
    assert not outcome.complete
    assert await _dead_letter_count(amqp_connection, topology) == 1


async def test_the_replay_command_lists_and_replays(
    amqp_connection: AbstractRobustConnection, topology: Topology, settings: Settings
) -> None:
    channel = await amqp_connection.channel()
    dlx = await channel.get_exchange(topology.dead_letter_exchange)
    await dlx.publish(
        aio_pika.Message(
            b'{"type": "agent.save"}',
            message_id="m-1",
            headers={"x-callbot-dead-letter-queue": topology.persistence_rpc_queue},
        ),
        routing_key=topology.persistence_rpc_queue,
    )
    env = {
        **os.environ,
        "RABBITMQ_URL": settings.rabbitmq_url.get_secret_value(),
        "RABBITMQ_NAMESPACE": topology.namespace,
    }
    command = [sys.executable, "-m", "callbot.common.messaging.replay"]

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *arguments], env=env, capture_output=True, text=True, timeout=60
        )

    listed = await asyncio.to_thread(run, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert f"queue={topology.persistence_rpc_queue}" in listed.stdout
    assert "message_id=m-1" in listed.stdout
    replayed = await asyncio.to_thread(run)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines()[-1].startswith("1 replayed, 0 kept")
    rpc_queue = await channel.declare_queue(topology.persistence_rpc_queue, passive=True)
    assert rpc_queue.declaration_result.message_count == 1
    wrong = await asyncio.to_thread(run, "--namespace", "no-such-namespace")
    assert wrong.returncode == 2
    assert "no queue 'no-such-namespace.dead-letters'" in wrong.stderr


def _rabbitmqctl(*arguments: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=check, capture_output=True, timeout=60)


async def test_is_connected_is_false_while_the_broker_refuses_the_reconnect(
    settings: Settings, namespace: str
) -> None:
    # The connection's vhost is deleted (its connections closed) and comes back later:
    # the robust connection retries meanwhile, and is not connected all that time.
    vhost = f"test-{namespace}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = settings.rabbitmq_url.get_secret_value().rstrip("/") + f"/{vhost}"
        own = settings.model_copy(update={"rabbitmq_url": SecretStr(url)})
        connection = await connect(own, f"test-{namespace}-vhost", wait_s=5)
        assert is_connected(connection)
        await asyncio.to_thread(_rabbitmqctl, "delete_vhost", vhost)
        await _wait_for(lambda: not is_connected(connection))
        await asyncio.sleep(1.0)  # several reconnect attempts, all refused
        assert not is_connected(connection)
        await asyncio.to_thread(_rabbitmqctl, "add_vhost", vhost)
        await asyncio.to_thread(
            _rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
        )
        await _wait_for(lambda: is_connected(connection), timeout_s=15)
        await connection.close()
        assert not is_connected(connection)
    finally:
        await asyncio.to_thread(_rabbitmqctl, "delete_vhost", vhost, check=False)
