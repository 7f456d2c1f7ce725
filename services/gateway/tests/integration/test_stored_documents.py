"""Reading agents and calls from MongoDB, and the API on top of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gateway_harness import api_headers, demo_agent, gateway_settings, running_gateway
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ServerSelectionTimeoutError

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.messaging import Topology
from callbot.common.mongo import AGENTS, CALLS, Document
from callbot.common.recipients import RecipientDocument
from callbot.common.settings import Settings
from callbot.gateway.stored_documents import StoredDocuments

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

CALL_DOCUMENT: Document = {
    "_id": "c1",
    "call_sid": "CA1",
    "agent_id": "survey",
    "agent_version": 3,
    "to": "+14155550100",
    "from": "+15005550006",
    "status": "completed",
    "turns": [
        {"seq": 0, "role": "assistant", "content": "Hello", "at": datetime(2026, 3, 10, tzinfo=UTC)}
    ],
    "data_collected": {"email": "ada@example.com"},
}


async def test_documents_are_read_by_id(mongo_db: AsyncDatabase[Document]) -> None:
    await mongo_db[AGENTS].insert_one(demo_agent().to_document())
    await mongo_db[CALLS].insert_one(dict(CALL_DOCUMENT))
    documents = StoredDocuments(mongo_db)
    assert await documents.agent("survey") == demo_agent()
    assert await documents.agent("nobody") is None
    call = await documents.call("c1")
    assert call is not None
    assert (call.call_id, call.from_, call.turns[0].content) == ("c1", "+15005550006", "Hello")
    assert await documents.call("nope") is None


async def test_api_reads_from_mongodb(
    settings: Settings, topology: Topology, mongo_db: AsyncDatabase[Document]
) -> None:
    await mongo_db[AGENTS].insert_one(demo_agent().to_document())
    await mongo_db[CALLS].insert_one(dict(CALL_DOCUMENT))
    async with running_gateway(gateway_settings(settings)) as (_app, client):
        call = await client.get("/v1/calls/c1", headers=api_headers())
        agent = await client.get("/v1/agents/survey", headers=api_headers())
    assert call.status_code == 200
    assert (call.json()["call_id"], call.json()["data_collected"]) == (
        "c1",
        {"email": "ada@example.com"},
    )
    assert (agent.status_code, agent.json()["name"]) == (200, "Survey bot")


class UnreachableDocuments:
    """The `DocumentReader` while MongoDB is away: PyMongo's error on every read.
    (A real client to a closed port can leak a socket when it is closed while
    its monitor connects: PyMongo does not close it on cancellation.)"""

    async def agent(self, agent_id: str) -> Agent | None:
        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")

    async def call(self, call_id: str) -> CallDocument | None:
        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")

    async def recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")


async def test_api_answers_503_while_mongodb_is_unreachable(
    settings: Settings, topology: Topology
) -> None:
    async with running_gateway(gateway_settings(settings)) as (app, client):
        app.state.resources.documents = UnreachableDocuments()
        call = await client.get("/v1/calls/c1", headers=api_headers())
        placed = await client.post(
            "/v1/calls", json={"agent_id": "survey", "to": "+14155550100"}, headers=api_headers()
        )
    for response in (call, placed):
        assert response.status_code == 503
        assert response.json() == {"detail": "MongoDB is unreachable; retry later"}
        assert response.headers["Retry-After"] == "5"
