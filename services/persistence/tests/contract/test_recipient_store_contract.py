"""One contract for every recipient store: the in-memory fake and MongoDB must
give the document the recipient projection specifies, for any order of the
finished calls, with repeats."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from recipient_calls import AGENT, START, TO, finished_call, history

from callbot.common.mongo import RECIPIENTS, Document
from callbot.common.recipients import RecipientDocument
from callbot.persistence.domain.recipients import project_recipient
from callbot.persistence.recipient_store import (
    InMemoryRecipientStore,
    MongoRecipientStore,
    RecipientStore,
)


def _content(recipient: RecipientDocument | None) -> RecipientDocument:
    assert recipient is not None, "the recipient document was not written"
    return recipient.model_copy(update={"updated_at": None})


class RecipientStoreContract:
    @pytest.fixture
    def store(self) -> RecipientStore:
        raise NotImplementedError("each store's test class provides it")

    async def test_calls_in_order_give_the_projected_document(self, store: RecipientStore) -> None:
        calls = history()
        for call in calls:
            await store.record_call(call)
        stored = await store.get(AGENT, TO)
        expected = project_recipient(calls, AGENT, TO)
        assert _content(stored) == expected
        assert stored is not None
        assert stored.updated_at is not None
        # What the rules say, spelled out once for this history.
        assert (expected.total_calls, expected.answered_calls) == (6, 5)
        assert expected.known_data() == {"name": "A. Lovelace", "email": "ada@example.com"}
        assert expected.data_collected["name"].call_id == "call-005"
        assert expected.last_outcome is not None
        assert (expected.last_outcome.call_id, expected.last_outcome.ended_by) == (
            "call-006",
            "opt_out",
        )
        assert expected.last_outcome.callback_request is not None
        assert expected.last_outcome.callback_request.said == "call me next week"
        assert expected.opted_out is not None
        assert expected.opted_out.call_id == "call-005"
        assert expected.profile == {"tier": "silver"}
        assert expected.data_complete
        assert expected.missing_fields == ("phone",)  # email was missing until call 3
        assert expected.last_summary is not None
        assert (expected.last_summary.call_id, expected.last_summary.summary) == (
            "call-005",
            "Ada opted out; the recording confirms it.",
        )

    @pytest.mark.parametrize("seed", range(4))
    async def test_shuffled_and_repeated_calls_give_the_same_document(
        self, store: RecipientStore, seed: int
    ) -> None:
        calls = history()
        rng = random.Random(seed)
        delivered = calls + rng.sample(calls, 3)
        rng.shuffle(delivered)
        for call in delivered:
            await store.record_call(call)
        assert _content(await store.get(AGENT, TO)) == project_recipient(calls, AGENT, TO)

    async def test_concurrent_calls_are_each_counted_once(self, store: RecipientStore) -> None:
        calls = history()
        await asyncio.gather(*(store.record_call(call) for call in calls + calls))
        assert _content(await store.get(AGENT, TO)) == project_recipient(calls, AGENT, TO)

    async def test_another_agent_has_its_own_recipient(self, store: RecipientStore) -> None:
        await store.record_call(finished_call(1, data={"name": "Ada"}))
        await store.record_call(finished_call(2, agent_id="other"))
        mine, theirs = await store.get(AGENT, TO), await store.get("other", TO)
        assert mine is not None
        assert theirs is not None
        assert (mine.total_calls, theirs.total_calls) == (1, 1)
        assert theirs.known_data() == {}

    async def test_a_missing_field_leaves_when_a_later_call_collects_it(
        self, store: RecipientStore
    ) -> None:
        await store.record_call(finished_call(1, data={"name": "Ada"}, fields=("name", "email")))
        first = await store.get(AGENT, TO)
        assert first is not None
        assert first.missing_fields == ("email",)
        await store.record_call(finished_call(2, data={"email": "ada@example.com"}))
        second = await store.get(AGENT, TO)
        assert second is not None
        assert second.missing_fields == ()
        # A later call that asks again and hears nothing does not bring it back.
        await store.record_call(finished_call(3, answered=False))
        assert _content(await store.get(AGENT, TO)).missing_fields == ()

    async def test_a_call_without_its_creation_is_skipped(self, store: RecipientStore) -> None:
        orphan = finished_call(1).model_copy(update={"agent_id": None, "to": None})
        await store.record_call(orphan)
        assert await store.get(AGENT, TO) is None

    async def test_a_summary_stored_after_the_count_reaches_the_recipient_by_its_rank(
        self, store: RecipientStore
    ) -> None:
        live = finished_call(2, summary="Ada gave her email.")
        await store.record_call(finished_call(2))  # counted before any summary was stored
        await store.record_call(finished_call(1, summary="An older call."))
        await store.record_summary(live)
        remade = finished_call(2, summary="Remade with the recording.", from_recording=True)
        await store.record_summary(remade)
        # A live summary stored later (the model was slow) does not replace it.
        late = live.model_copy(update={"summarized_at": START + timedelta(hours=1)})
        await store.record_summary(late)
        await store.record_summary(remade)
        stored = _content(await store.get(AGENT, TO))
        assert stored.last_summary is not None
        assert (stored.last_summary.call_id, stored.last_summary.summary) == (
            "call-002",
            "Remade with the recording.",
        )
        assert stored.last_summary.sources == ("live_turns", "recording_transcript")
        assert stored == project_recipient(
            [finished_call(1, summary="An older call."), remade], AGENT, TO
        )

    async def test_a_summary_of_a_call_not_counted_waits_for_its_count(
        self, store: RecipientStore
    ) -> None:
        await store.record_call(finished_call(1))
        await store.record_summary(finished_call(2, summary="Not counted yet."))
        stored = _content(await store.get(AGENT, TO))
        assert stored.last_summary is None


class TestInMemoryRecipientStore(RecipientStoreContract):
    @pytest.fixture
    def store(self) -> RecipientStore:
        return InMemoryRecipientStore()


@pytest.mark.mongo
class TestMongoRecipientStore(RecipientStoreContract):
    @pytest.fixture
    async def store(self, mongo_db: AsyncDatabase[Document]) -> RecipientStore:
        store = MongoRecipientStore(mongo_db[RECIPIENTS])
        await store.ensure_indexes()
        return store
