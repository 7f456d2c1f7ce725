"""What the integration tests run dialog with: real RabbitMQ, the MongoDB fixture,
the scripted OpenAI-compatible server, and a small stand-in for persistence."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    DIALOG_RESPONSE_ADAPTER,
    AnyEvent,
    CallEnding,
    CallTurnRecorded,
    DialogReply,
    DialogStart,
    DialogTurn,
    RpcFailure,
    utcnow,
)
from callbot.common.messaging import EventConsumer, RpcClient, Topology
from callbot.common.mongo import AGENTS, CALLS, Document
from callbot.common.recipients import RecipientDocument
from callbot.dialog.store import DialogStore

TO = "+14155550100"


class CountingStore:
    """Wraps the real store and counts its reads (the code under test is not mocked)."""

    def __init__(self, inner: DialogStore) -> None:
        self._inner = inner
        self.reads: Counter[str] = Counter()

    async def load_agent(self, agent_id: str) -> Agent | None:
        self.reads["agent"] += 1
        return await self._inner.load_agent(agent_id)

    async def load_call(self, call_id: str) -> CallDocument | None:
        self.reads["call"] += 1
        return await self._inner.load_call(call_id)

    async def load_past_calls(
        self, agent_id: str, to: str, exclude_call_id: str, limit: int
    ) -> list[CallDocument]:
        self.reads["past_calls"] += 1
        return await self._inner.load_past_calls(agent_id, to, exclude_call_id, limit)

    async def load_recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        self.reads["recipient"] += 1
        return await self._inner.load_recipient(agent_id, to)


async def seed_agent(database: AsyncDatabase[Document], agent: Agent) -> None:
    await database[AGENTS].replace_one({"_id": agent.agent_id}, agent.to_document(), upsert=True)


async def seed_call(database: AsyncDatabase[Document], call_id: str, **fields: Any) -> None:
    """A call document as persistence writes it from `call.created`."""
    document: Document = {
        "_id": call_id,
        "call_sid": f"CA{call_id}",
        "agent_id": "acme",
        "to": TO,
        "from": "+14155550199",
        "recipient": {"name": "Ada"},
        "variables": {"topic": "your account"},
        "status": "in-progress",
        "created_at": fields.pop("created_at", None) or utcnow(),
        "turns": [],
        "data_collected": {},
        **fields,
    }
    await database[CALLS].insert_one(document)


class TurnWriter:
    """Stands in for persistence: writes each `call.turn` into the call document."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._calls = database[CALLS]
        self.events: list[AnyEvent] = []
        self._consumer: EventConsumer | None = None

    async def start(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.persistence_queue.name)
        self._consumer = EventConsumer(queue, self._write)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _write(self, event: AnyEvent) -> None:
        await self._store(event)
        self.events.append(event)  # after the write: waiting for an event waits for it stored

    async def _store(self, event: AnyEvent) -> None:
        if isinstance(event, CallTurnRecorded):
            # Atomic updates, as persistence makes them: one per turn of the
            # exchange, then the data collected after it.
            for turn in event.turns:
                await self._calls.update_one(
                    {"_id": event.call_id, "turns.seq": {"$ne": turn.seq}},
                    {
                        "$push": {
                            "turns": {
                                "$each": [turn.model_dump(mode="python")],
                                "$sort": {"seq": 1},
                            }
                        }
                    },
                )
            await self._calls.update_one(
                {"_id": event.call_id, "turns.seq": {"$not": {"$gt": event.last_seq}}},
                {
                    "$set": {
                        "data_collected": event.data_collected,
                        "data_complete": event.data_complete,
                    }
                },
            )
        elif isinstance(event, CallEnding):
            await self._calls.update_one(
                {"_id": event.call_id}, {"$set": {"ended_by": event.ended_by}}
            )

    async def wait_for_turns(self, call_id: str, count: int, timeout_s: float = 5.0) -> None:
        await wait_until(
            lambda: (
                sum(
                    len(event.turns)
                    for event in self.events
                    if isinstance(event, CallTurnRecorded) and event.call_id == call_id
                )
                >= count
            ),
            timeout_s,
        )


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    give_up_at = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up_at:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


class Caller:
    """The gateway's side of the RPC."""

    def __init__(self, client: RpcClient, topology: Topology) -> None:
        self._client = client
        self._queue = topology.dialog_rpc_queue

    async def start(self, call_id: str, answered_by: str | None = None) -> DialogReply:
        request = DialogStart(
            call_id=call_id,
            agent_id="acme",
            call_sid=f"CA{call_id}",
            to=TO,
            answered_by=answered_by,
        )
        return await self._call(request)

    async def turn(self, call_id: str, seq: int, speech: str) -> DialogReply:
        return await self._call(DialogTurn(call_id=call_id, seq=seq, speech=speech))

    async def start_response(self, call_id: str, agent_id: str) -> DialogReply | RpcFailure:
        """dialog's answer to a start as it comes, a failure included."""
        request = DialogStart(call_id=call_id, agent_id=agent_id, call_sid=f"CA{call_id}")
        return await self._client.call(self._queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=4)

    async def turn_response(self, call_id: str, seq: int, speech: str) -> DialogReply | RpcFailure:
        """dialog's answer to a turn as it comes, a failure included."""
        request = DialogTurn(call_id=call_id, seq=seq, speech=speech)
        return await self._client.call(self._queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=4)

    async def _call(self, request: DialogStart | DialogTurn) -> DialogReply:
        reply = await self._client.call(self._queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=4)
        if isinstance(reply, RpcFailure):
            raise AssertionError(f"dialog answered with a failure: {reply.message}")
        return reply
