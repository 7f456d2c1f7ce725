"""The MongoDB-wire stand-in, driven by the real PyMongo async driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from callbot.common.mongo import Document
from callbot.testkit.mongo_standin import MongoStandinProcess, start_standin_process


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoStandinProcess]:
    process = start_standin_process(log_dir=tmp_path_factory.mktemp("standin"))
    yield process
    process.stop()


def client_for(url: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=3000)


@pytest.fixture
async def database(
    standin: MongoStandinProcess, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncDatabase[Document]]:
    client = client_for(standin.url)
    name = f"t_{request.node.name}"[:60]
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def test_writes_and_reads_round_trip_with_types(database: AsyncDatabase[Document]) -> None:
    now = datetime(2026, 11, 25, 10, 0, 0, 123000, tzinfo=UTC)
    await database.calls.insert_one({"_id": "c1", "at": now, "n": 3, "tags": ["a"], "x": None})

    stored = await database.calls.find_one({"_id": "c1"})

    assert stored == {"_id": "c1", "at": now, "n": 3, "tags": ["a"], "x": None}


async def test_a_cursor_pages_through_get_more(database: AsyncDatabase[Document]) -> None:
    await database.items.insert_many([{"_id": i, "n": i} for i in range(350)])

    cursor = database.items.find({"n": {"$gte": 10}}, {"_id": 1}).sort("n", -1).batch_size(50)
    ids = [document["_id"] async for document in cursor]

    assert ids == list(range(349, 9, -1))
    assert await database.items.count_documents({"n": {"$lt": 10}}) == 10
    assert sorted(await database.items.distinct("n", {"n": {"$lt": 3}})) == [0, 1, 2]


async def test_conditional_upserts_and_array_updates(database: AsyncDatabase[Document]) -> None:
    def push_turn(seq: int) -> tuple[Document, Document]:
        return (
            {"_id": "c1", "turns.seq": {"$ne": seq}},
            {"$push": {"turns": {"$each": [{"seq": seq}], "$sort": {"seq": 1}}}},
        )

    first = await database.calls.update_one(*push_turn(2), upsert=True)
    await database.calls.update_one(*push_turn(1), upsert=True)
    # The condition excludes the existing document, so the upsert collides on _id.
    with pytest.raises(DuplicateKeyError):
        await database.calls.update_one(*push_turn(2), upsert=True)

    stored = await database.calls.find_one({"_id": "c1"})
    assert first.upserted_id == "c1"
    assert stored is not None
    assert [turn["seq"] for turn in stored["turns"]] == [1, 2]


async def test_find_one_and_update_returns_the_new_version(
    database: AsyncDatabase[Document],
) -> None:
    async def save() -> Document | None:
        return await database.agents.find_one_and_update(
            {"_id": "support"},
            {"$inc": {"version": 1}, "$setOnInsert": {"created": True}},
            projection={"version": 1},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )

    assert await save() == {"_id": "support", "version": 1}
    assert await save() == {"_id": "support", "version": 2}
    missing = await database.agents.find_one_and_update({"_id": "nobody"}, {"$set": {"a": 1}})
    assert missing is None


async def test_a_sparse_unique_index_is_enforced(database: AsyncDatabase[Document]) -> None:
    await database.calls.create_indexes(
        [IndexModel([("call_sid", ASCENDING)], unique=True, sparse=True)]
    )
    await database.calls.insert_many([{"_id": "a"}, {"_id": "b"}, {"_id": "c", "call_sid": "CA1"}])

    with pytest.raises(DuplicateKeyError):
        await database.calls.insert_one({"_id": "d", "call_sid": "CA1"})

    names = [index["name"] async for index in await database.calls.list_indexes()]
    assert names == ["_id_", "call_sid_1"]


async def test_what_it_cannot_do_is_refused_by_name(database: AsyncDatabase[Document]) -> None:
    with pytest.raises(OperationFailure, match="no such command: 'fsync'") as unknown:
        await database.command("fsync")
    with pytest.raises(OperationFailure, match="stand-in does not support update pipelines"):
        await database.calls.update_one({"_id": "a"}, [{"$set": {"a": 1}}], upsert=True)

    assert unknown.value.code == 59


async def test_data_survives_a_clean_restart_with_a_state_file(tmp_path: Path) -> None:
    standin = start_standin_process(state_file=tmp_path / "state.bson", log_dir=tmp_path)
    client = client_for(standin.url)
    try:
        await client.db.calls.create_indexes([IndexModel([("call_sid", ASCENDING)], unique=True)])
        await client.db.calls.insert_one({"_id": "c1", "call_sid": "CA1"})

        standin.restart()

        # The same client reconnects to the same port and finds data and index.
        assert await client.db.calls.find_one({"_id": "c1"}) == {"_id": "c1", "call_sid": "CA1"}
        with pytest.raises(DuplicateKeyError):
            await client.db.calls.insert_one({"_id": "c2", "call_sid": "CA1"})
    finally:
        await client.close()
        standin.stop()
