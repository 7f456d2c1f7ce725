"""Makes `gateway_harness` importable (pytest runs with --import-mode=importlib,
which leaves test directories off sys.path), and the fixtures the gateway's
test modules share: `tap` (every event published), `fake_twilio`,
`saved_agents` (persistence's side of saving an agent, scripted), and
`placed_calls` (the calls c1 to c20 stored as callbot's own: callbacks for
any other call id are orphans)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.contracts import (
    PERSISTENCE_REQUEST_ADAPTER,
    AgentSave,
    AgentSaved,
    Message,
    RpcFailure,
)
from callbot.common.messaging import Deadline, RpcServer, Topology
from callbot.common.mongo import CALLS, Document

sys.path.insert(0, str(Path(__file__).parent))

from gateway_harness import EventTap, FakeTwilio, serving_fake_twilio


@pytest.fixture
async def tap(amqp_connection: AbstractRobustConnection, topology: Topology) -> EventTap:
    tap = EventTap()
    await tap.start(amqp_connection, topology)
    return tap


PLACED_CALL_IDS = tuple(f"c{number}" for number in range(1, 21))


@pytest.fixture
async def placed_calls(mongo_db: AsyncDatabase[Document]) -> tuple[str, ...]:
    """Calls c1..c20 as persistence stores them once their call.created landed."""
    await mongo_db[CALLS].insert_many(
        [{"_id": call_id, "agent_id": "survey", "status": "queued"} for call_id in PLACED_CALL_IDS]
    )
    return PLACED_CALL_IDS


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with serving_fake_twilio() as fake:
        yield fake


@pytest.fixture
async def saved_agents(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[list[AgentSave]]:
    """persistence's side of `AgentSave`, scripted: version 4, or a refusal."""
    received: list[AgentSave] = []

    async def save(request: AgentSave, _deadline: Deadline) -> Message:
        received.append(request)
        if request.agent.name == "refused":
            return RpcFailure(code="bad_request", message="name refused")
        return AgentSaved(agent_id=request.agent.agent_id, version=4)

    channel = await amqp_connection.channel()
    queue = await channel.get_queue(topology.persistence_rpc_queue)
    server = RpcServer(channel, queue, PERSISTENCE_REQUEST_ADAPTER, save)
    await server.start()
    yield received
    await server.stop()
    await channel.close()
