"""The campaigns store's guarantees, over the MongoDB fixture (a real server
when MONGODB_URL is set or Docker answers, else the wire stand-in): the same
suite holds for both, so what the stand-in lets pass is what MongoDB does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from callbot.campaigns.store import CampaignStore, attempt_id
from callbot.common.mongo import Document

pytestmark = pytest.mark.mongo

NOW = datetime(2026, 1, 14, 18, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(mongo_db: AsyncDatabase[Document]) -> CampaignStore:
    store = CampaignStore(mongo_db)
    await store.ensure_indexes()
    await store.insert_campaign(
        {
            "_id": "c1",
            "state": "running",
            "settings": {},
            "next_dial_at": EPOCH,
            "backoff_until": EPOCH,
            "progress_published_at": EPOCH,
        }
    )
    return store


def attempt(row: int, to: str, **fields: object) -> Document:
    """A dialable row; a skipped one (state="skipped") has no `dedupe` key."""
    document: Document = {
        "_id": attempt_id("c1", row),
        "campaign_id": "c1",
        "row": row,
        "to": to,
        "state": "pending",
        "due_at": NOW,
        "tries": [],
        "tries_started": 0,
        "dedupe": f"c1|{to}",
        **fields,
    }
    if document["state"] == "skipped":
        del document["dedupe"]
    return document


async def test_a_pacing_slot_goes_to_one_caller(store: CampaignStore) -> None:
    taken = await asyncio.gather(
        *(store.take_slot("c1", NOW, NOW + timedelta(seconds=1)) for _ in range(10))
    )
    assert taken.count(True) == 1
    assert not await store.take_slot("c1", NOW + timedelta(seconds=0.5), NOW)
    assert await store.take_slot("c1", NOW + timedelta(seconds=1), NOW)


async def test_concurrent_claims_take_distinct_attempts(store: CampaignStore) -> None:
    await store.insert_attempts([attempt(row, f"+1212555{row:04d}") for row in range(5)])
    claims = await asyncio.gather(
        *(store.claim_due("c1", NOW, f"r{index}", NOW) for index in range(12))
    )
    ids = [claim["_id"] for claim in claims if claim is not None]
    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert await store.count_active("c1") == 5


async def test_rows_sent_twice_are_stored_once(store: CampaignStore) -> None:
    rows = [attempt(row, f"+1212555{row:04d}") for row in range(3)]
    assert await store.insert_attempts(rows) == 3
    assert await store.insert_attempts(rows) == 0
    assert await store.known_numbers("c1", ["+12125550001", "+12125559999"]) == {"+12125550001"}
    counters = await store.counters("c1")
    assert (counters.total, counters.pending) == (3, 3)


async def test_a_number_is_held_by_one_attempt_at_a_time(store: CampaignStore) -> None:
    first = attempt(1, "+12125550001")
    second = attempt(2, "+12125550001", dedupe="c2|+12125550001", campaign_id="c2")
    await store.insert_attempts([first, second])
    one = await store.claim_due("c1", NOW, "r", NOW)
    two = await store.claim_due("c2", NOW, "r", NOW)
    assert one is not None
    assert two is not None
    assert await store.hold_line(one)
    assert not await store.hold_line(two)
    assert await store.release(one, "pending", NOW)
    assert await store.hold_line(two)


async def test_an_outcome_applies_only_to_the_try_awaited(store: CampaignStore) -> None:
    await store.insert_attempts([attempt(1, "+12125550001")])
    claimed = await store.claim_due("c1", NOW, "r", NOW)
    assert claimed is not None
    assert await store.mark_placed(claimed, 1, "call-1", NOW)
    assert await store.record_outcome(claimed["_id"], 2, "call-x", {"state": "failed"}) is None
    applied = await store.record_outcome(claimed["_id"], 1, "call-1", {"state": "completed"})
    assert applied is not None
    assert applied["state"] == "completed"
    assert await store.record_outcome(claimed["_id"], 1, "call-1", {"state": "failed"}) is None


async def test_a_stale_claim_is_taken_only_after_its_lease(store: CampaignStore) -> None:
    await store.insert_attempts([attempt(1, "+12125550001")])
    claimed = await store.claim_due("c1", NOW, "dies", NOW + timedelta(seconds=30))
    assert claimed is not None
    assert await store.claim_stale(NOW + timedelta(seconds=29), "other", NOW) is None
    taken = await store.claim_stale(NOW + timedelta(seconds=31), "other", NOW)
    assert taken is not None
    assert (taken["_id"], taken["owner"], taken["tries_started"]) == (claimed["_id"], "other", 1)


async def test_counters_count_every_state_and_skip_reason(store: CampaignStore) -> None:
    await store.insert_attempts(
        [
            attempt(1, "+12125550001"),
            attempt(2, "+12125550002", state="retry"),
            attempt(3, "+12125550003", state="in_call", tries=[{"n": 1}]),
            attempt(4, "+12125550004", state="completed", tries=[{"n": 1}, {"n": 2}]),
            attempt(5, "+12125550005", state="failed", tries=[{"n": 1}]),
            attempt(6, "x", state="skipped", skip_reason="invalid_number"),
            attempt(7, "+12125550007", state="skipped", skip_reason="duplicate"),
            attempt(8, "+12125550008", state="canceled"),
        ]
    )
    counters = await store.counters("c1")
    assert counters.model_dump() == {
        "total": 8,
        "pending": 1,
        "in_progress": 1,
        "retry_scheduled": 1,
        "completed": 1,
        "failed": 1,
        "canceled": 1,
        "skipped": 2,
        "skipped_by_reason": {"invalid_number": 1, "duplicate": 1},
        "calls_placed": 4,
    }
