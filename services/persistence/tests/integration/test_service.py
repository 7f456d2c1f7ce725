"""The persistence service in-process, with the real RabbitMQ and the MongoDB fixture."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    PERSISTENCE_RESPONSE_ADAPTER,
    AgentSave,
    AgentSaved,
    AgentUpdated,
    AnyEvent,
    CallCompleted,
    CallEvent,
    decode_event,
    utcnow,
)
from callbot.common.messaging import EventPublisher, RpcClient, Topology
from callbot.common.mongo import AGENTS, CALLS, Document
from callbot.common.settings import Settings
from callbot.persistence.domain.projection import project
from callbot.persistence.service import PersistenceService

if TYPE_CHECKING:
    from conftest import CallScript

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

GRACE_S = 0.3
CLAIM_TIMEOUT_S = 2.0
SWEEP_INTERVAL_S = 0.5


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


class Subscriber:
    """A test queue bound to the events persistence publishes."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.events.append(decode_event(message.body))

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
async def subscriber(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[Subscriber]:
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(topology.events_exchange)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in ("call.completed", "call.recording_ready", "agent.updated"):
        await queue.bind(exchange, routing_key=key)
    received = Subscriber()
    await queue.consume(received._on_message, no_ack=True)
    yield received
    await channel.close()


@pytest.fixture
async def publisher(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> EventPublisher:
    channel = await amqp_connection.channel(publisher_confirms=True)
    return EventPublisher(await channel.get_exchange(topology.events_exchange), app_id="test")


def service_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"completed_sweep_interval_s": SWEEP_INTERVAL_S, **changes})


@pytest.fixture
async def service(settings: Settings, topology: Topology) -> AsyncIterator[PersistenceService]:
    running = PersistenceService(
        service_settings(settings), completion_grace_s=GRACE_S, claim_timeout_s=CLAIM_TIMEOUT_S
    )
    await running.start()
    yield running
    await running.stop()


async def stored_call(database: AsyncDatabase[Document], call_id: str) -> CallDocument | None:
    document = await database[CALLS].find_one({"_id": call_id})
    return None if document is None else CallDocument.model_validate(document)


def content(call: CallDocument | None) -> CallDocument:
    """The call as the events made it: without the store's and the outbox's timestamps."""
    assert call is not None
    return call.model_copy(
        update={"updated_at": None, "completed_claimed_at": None, "completed_published_at": None}
    )


async def publish_all(publisher: EventPublisher, events: list[CallEvent]) -> None:
    for event in events:
        await publisher.publish(event)


async def wait_for_completion(
    mongo_db: AsyncDatabase[Document], subscriber: Subscriber, call_id: str
) -> CallDocument:
    async def published() -> bool:
        call = await stored_call(mongo_db, call_id)
        return call is not None and call.completed_published_at is not None

    await wait_until(published, f"call.completed of {call_id} to be marked published")
    await wait_until(
        lambda: _true(any(e.call_id == call_id for e in subscriber.of_type(CallCompleted))),
        f"call.completed of {call_id} to reach the subscriber",
    )
    call = await stored_call(mongo_db, call_id)
    assert call is not None
    return call


async def _true(value: bool) -> bool:
    return value


async def test_a_whole_call_in_order_gives_the_expected_document_and_one_completed(
    service: PersistenceService,
    publisher: EventPublisher,
    subscriber: Subscriber,
    mongo_db: AsyncDatabase[Document],
    script: CallScript,
) -> None:
    events = script.whole_call()
    await publish_all(publisher, events)
    call = await wait_for_completion(mongo_db, subscriber, script.call_id)

    expected = project(events, script.call_id)
    assert content(call) == expected
    assert (call.status, call.ended_by, call.duration_s) == ("completed", "system_complete", 42)
    [completed] = subscriber.of_type(CallCompleted)
    assert content(completed.call) == expected


async def test_shuffled_and_duplicated_events_give_the_same_document(
    service: PersistenceService,
    publisher: EventPublisher,
    subscriber: Subscriber,
    mongo_db: AsyncDatabase[Document],
    script: CallScript,
) -> None:
    events = script.whole_call()
    await publish_all(publisher, script.shuffled_with_duplicates(events, seed=11))
    call = await wait_for_completion(mongo_db, subscriber, script.call_id)
    assert content(call) == project(events, script.call_id)


async def test_status_callbacks_out_of_order_end_terminal_with_the_right_duration(
    service: PersistenceService,
    publisher: EventPublisher,
    subscriber: Subscriber,
    mongo_db: AsyncDatabase[Document],
    script: CallScript,
) -> None:
    await publish_all(
        publisher,
        [
            script.status("completed", 4, 60, duration=57),
            script.status("in-progress", 2, 5),
            script.created(),
            script.status("ringing", 1, 2),
            script.status("initiated", 0, 1),
        ],
    )
    call = await wait_for_completion(mongo_db, subscriber, script.call_id)
    assert (call.status, call.status_seq, call.duration_s) == ("completed", 4, 57)
    assert call.ended_at == script.at(60)
    assert call.agent_id == "demo"


async def test_call_completed_is_published_once_when_status_events_come_twice(
    service: PersistenceService,
    publisher: EventPublisher,
    subscriber: Subscriber,
    mongo_db: AsyncDatabase[Document],
    script: CallScript,
) -> None:
    completed = script.status("completed", 3, 31, duration=42)
    await publish_all(publisher, [script.created(), completed, completed, completed.model_copy()])
    await wait_for_completion(mongo_db, subscriber, script.call_id)
    # A second publication could only come from a scheduled task (after the
    # grace period) or a sweep; give both time to misbehave.
    await asyncio.sleep(GRACE_S + 2 * SWEEP_INTERVAL_S)
    assert len(subscriber.of_type(CallCompleted)) == 1


async def test_the_sweeper_closes_the_crash_window(
    settings: Settings,
    topology: Topology,
    subscriber: Subscriber,
    mongo_db: AsyncDatabase[Document],
    script: CallScript,
) -> None:
    # A document finalized by a process that died before publishing: one never
    # claimed, one claimed by the dead process long ago.
    finalized_long_ago = utcnow() - timedelta(minutes=5)
    crashed_claim = type(script)()
    for call_id, claimed_at in (
        (script.call_id, None),
        (crashed_claim.call_id, finalized_long_ago),
    ):
        await mongo_db[CALLS].insert_one(
            {
                "_id": call_id,
                "status": "completed",
                "status_seq": 3,
                "ended_by": "user_goodbye",
                "duration_s": 42,
                "ended_at": finalized_long_ago,
                "completed_claimed_at": claimed_at,
                "completed_published_at": None,
                "updated_at": finalized_long_ago,
            }
        )
    restarted = PersistenceService(
        service_settings(settings), completion_grace_s=GRACE_S, claim_timeout_s=CLAIM_TIMEOUT_S
    )
    await restarted.start()
    try:
        for call_id in (script.call_id, crashed_claim.call_id):
            call = await wait_for_completion(mongo_db, subscriber, call_id)
            assert call.ended_by == "user_goodbye"
    finally:
        await restarted.stop()
    assert sorted(event.call_id for event in subscriber.of_type(CallCompleted)) == sorted(
        [script.call_id, crashed_claim.call_id]
    )


async def test_mongodb_unreachable_for_a_while_loses_nothing_and_keeps_order(
    settings: Settings,
    topology: Topology,
    publisher: EventPublisher,
    subscriber: Subscriber,
    tmp_path: Path,
    script: CallScript,
) -> None:
    from callbot.testkit.mongo_standin import start_standin_process

    standin = start_standin_process(state_file=tmp_path / "mongo-state")
    own_settings = service_settings(
        settings, mongodb_url=SecretStr(standin.url), mongodb_timeout_ms=300
    )
    running = PersistenceService(
        own_settings, completion_grace_s=GRACE_S, claim_timeout_s=CLAIM_TIMEOUT_S
    )
    await running.start()
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Document] = AsyncMongoClient(
        standin.url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    database = client[own_settings.mongodb_db]
    try:
        turns = script.turns()
        await publish_all(publisher, [script.created(), *turns[:2]])

        async def first_turns_stored() -> bool:
            call = await stored_call(database, script.call_id)
            return call is not None and len(call.turns) == 2

        await wait_until(first_turns_stored, "the turns published before the outage")

        standin.stop()
        await publish_all(
            publisher,
            [*turns[2:], script.ending(), script.status("completed", 3, 31, duration=42)],
        )
        # Let the handlers hit the outage and back off a few times.
        await asyncio.sleep(1.5)
        standin.restart()

        call = await wait_for_completion(database, subscriber, script.call_id)
        assert [turn.seq for turn in call.turns] == [0, 1, 2, 3, 4]
        assert call.data_complete is True
        assert (call.status, call.ended_by, call.duration_s) == ("completed", "system_complete", 42)
        assert len(subscriber.of_type(CallCompleted)) == 1
    finally:
        await running.stop()
        await client.close()
        standin.stop()


async def test_saving_an_agent_through_the_rpc_bumps_its_version(
    service: PersistenceService,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    subscriber: Subscriber,
    mongo_db: AsyncDatabase[Document],
) -> None:
    client = RpcClient(await amqp_connection.channel(publisher_confirms=False))
    await client.start()
    agent = Agent(
        agent_id="support", name="Support", greeting="Hi {recipient.name}", prompt="Help."
    )
    replies = [
        await client.call(
            topology.persistence_rpc_queue,
            AgentSave(agent=agent),
            PERSISTENCE_RESPONSE_ADAPTER,
            timeout_s=10,
        )
        for _ in range(2)
    ]
    assert [(r.agent_id, r.version) for r in replies if isinstance(r, AgentSaved)] == [
        ("support", 1),
        ("support", 2),
    ]
    stored = await mongo_db[AGENTS].find_one({"_id": "support"})
    assert stored is not None
    assert stored["version"] == 2
    await wait_until(
        lambda: _true(len(subscriber.of_type(AgentUpdated)) == 2), "two agent.updated events"
    )
    assert [event.version for event in subscriber.of_type(AgentUpdated)] == [1, 2]


async def test_a_message_that_is_not_a_call_event_is_dead_lettered_not_stored(
    service: PersistenceService,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    publisher: EventPublisher,
    mongo_db: AsyncDatabase[Document],
    script: CallScript,
) -> None:
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(topology.events_exchange)
    await exchange.publish(aio_pika.Message(b'{"type": "call.turn"}'), routing_key="call.turn")
    await publisher.publish(script.turn(0))

    async def turn_stored() -> bool:
        return await stored_call(mongo_db, script.call_id) is not None

    await wait_until(turn_stored, "the valid turn after the poison message")
