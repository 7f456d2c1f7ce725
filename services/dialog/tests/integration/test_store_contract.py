"""One contract for dialog's store: the in-memory fake and MongoDB answer alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from dialog_doubles import T0, make_agent, make_call
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.mongo import AGENTS, CALLS, Document
from callbot.dialog.store import DialogStore, InMemoryDialogStore, MongoDialogStore

Seed = Callable[[Agent, list[CallDocument]], Awaitable[None]]


def _as_mongo(call: CallDocument) -> Document:
    document = call.model_dump(mode="python", by_alias=True, exclude={"call_id"})
    return {"_id": call.call_id, **document}


@pytest.fixture
def memory_store() -> tuple[DialogStore, Seed]:
    memory = InMemoryDialogStore()

    async def seed_memory(agent: Agent, calls: list[CallDocument]) -> None:
        memory.agents[agent.agent_id] = agent
        memory.calls.update({call.call_id: call for call in calls})

    return memory, seed_memory


@pytest.fixture
def mongo_store(mongo_db: AsyncDatabase[Document]) -> tuple[DialogStore, Seed]:
    async def seed_mongo(agent: Agent, calls: list[CallDocument]) -> None:
        await mongo_db[AGENTS].insert_one(agent.to_document())
        if calls:
            await mongo_db[CALLS].insert_many([_as_mongo(call) for call in calls])

    return MongoDialogStore(mongo_db), seed_mongo


@pytest.fixture(params=["memory_store", pytest.param("mongo_store", marks=pytest.mark.mongo)])
def seeded_store(request: pytest.FixtureRequest) -> tuple[DialogStore, Seed]:
    store: tuple[DialogStore, Seed] = request.getfixturevalue(request.param)
    return store


def _call(call_id: str, minutes: int, **fields: Any) -> CallDocument:
    return make_call(call_id, created_at=T0 + timedelta(minutes=minutes), **fields)


async def test_agent_and_call_round_trip(seeded_store: tuple[DialogStore, Seed]) -> None:
    store, seed = seeded_store
    await seed(make_agent(), [_call("call-1", 0)])
    agent = await store.load_agent("acme")
    assert agent is not None
    assert agent.data_to_fill == make_agent().data_to_fill
    call = await store.load_call("call-1")
    assert call is not None
    assert (call.agent_id, call.recipient) == ("acme", {"name": "Ada"})
    assert await store.load_agent("nope") is None
    assert await store.load_call("nope") is None


async def test_past_calls_are_finished_calls_of_this_agent_and_number_newest_first(
    seeded_store: tuple[DialogStore, Seed],
) -> None:
    store, seed = seeded_store
    await seed(
        make_agent(),
        [
            _call("oldest", 0, status="completed"),
            _call("older", 10, status="no-answer"),
            _call("newest", 20, status="completed", summary="Asked for Tuesday."),
            _call("live", 30, status="in-progress"),
            _call("other-number", 40, status="completed", to="+14155550111"),
            _call("other-agent", 50, status="completed", agent_id="someone-else"),
            _call("current", 60, status="completed"),
        ],
    )
    past = await store.load_past_calls("acme", "+14155550100", "current", limit=2)
    assert [call.call_id for call in past] == ["newest", "older"]
    assert past[0].summary == "Asked for Tuesday."
    assert await store.load_past_calls("acme", "+14155550100", "current", limit=0) == []
