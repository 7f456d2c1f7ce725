"""The campaigns handlers over the MongoDB fixture (the wire stand-in, or a
real server), with a recording call placer and a fake clock: claims, crashes
between claiming and placing, throttling, refusals, outcomes applied once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from campaigns_doubles import Harness, call_document, harness
from pymongo.asynchronous.database import AsyncDatabase

from callbot.campaigns.handlers import (
    claim_next,
    claim_stale,
    handle_call_completed,
    handle_recipient_erased,
    handle_request,
    maybe_finish,
    place,
    settle_overdue_call,
)
from callbot.campaigns.placement import Refused, Throttled, Unsure
from callbot.common.calls import CallDocument
from callbot.common.campaigns import (
    CampaignAck,
    CampaignAddRecipients,
    CampaignControl,
    CampaignCreate,
    CampaignSettings,
    CampaignStart,
    RecipientRow,
    SuppressionsAdd,
    added,
)
from callbot.common.contracts import (
    CampaignCompleted,
    CampaignCounters,
    RecipientAttemptsErased,
    RecipientDataErased,
)
from callbot.common.mongo import Document

pytestmark = pytest.mark.mongo

EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NUMBER = "+12125550199"


@pytest.fixture
async def h(mongo_db: AsyncDatabase[Document]) -> Harness:
    return await harness(mongo_db)


async def start_campaign(
    h: Harness, numbers: list[str], campaign_id: str | None = None, **settings: Any
) -> str:
    campaign_id = campaign_id or f"c{len(h.events)}{len(numbers)}"
    spec = CampaignSettings.model_validate(
        {
            "agent_id": "agent",
            "schedule": {"days": EVERY_DAY},
            "pacing": {"calls_per_second": 10, "max_concurrent": 5},
            **settings,
        }
    )
    for request in (
        CampaignCreate(campaign_id=campaign_id, settings=spec),
        CampaignAddRecipients(
            campaign_id=campaign_id,
            recipients=tuple(
                RecipientRow(row=index + 2, to=to, fields={"n": index})
                for index, to in enumerate(numbers)
            ),
        ),
        CampaignStart(campaign_id=campaign_id),
    ):
        reply = await handle_request(request, h.ports)
        assert isinstance(reply, CampaignAck), reply
    return campaign_id


async def campaign(h: Harness, campaign_id: str) -> Document:
    found = await h.ports.store.campaign(campaign_id)
    assert found is not None
    return found


async def complete(h: Harness, attempt_id: str, try_number: int, **fields: Any) -> None:
    document = CallDocument.model_validate(call_document(attempt_id, try_number, **fields))
    await handle_call_completed(document, h.ports)


async def test_rows_are_checked_and_skips_recorded(h: Harness) -> None:
    await handle_request(SuppressionsAdd(numbers=("+12125550102",)), h.ports)
    await h.db["recipients"].insert_one(
        {"_id": "agent:+12125550103", "opted_out": {"call_id": "c0", "at": h.clock.now}}
    )
    await h.db["recipients"].insert_one({"_id": "agent:+12125550101", "opted_out": None})
    campaign_id = await start_campaign(
        h,
        ["+12125550101", "+12125550102", "+12125550103", "555", "+12125550101"],
    )
    # Rows go only into a draft: a chunk sent after the start is refused.
    again = CampaignAddRecipients(
        campaign_id=campaign_id, recipients=(RecipientRow(row=2, to="+12125550101"),)
    )
    assert (await handle_request(again, h.ports)).type == "rpc.error"  # not a draft any more
    counters = await h.ports.store.counters(campaign_id)
    assert counters.total == 5
    assert counters.pending == 1
    assert counters.skipped_by_reason == {
        "suppressed": 1,
        "opted_out": 1,
        "invalid_number": 1,
        "duplicate": 1,
    }


async def test_each_chunk_counts_its_rows_and_the_start_counts_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway adds up the chunks' counters; the start is one update, so a list
    of a million rows cannot make it outlast its deadline (a start cut short
    after going `running` would dial a campaign the caller was told failed)."""
    await handle_request(SuppressionsAdd(numbers=(NUMBER,)), h.ports)
    spec = CampaignSettings.model_validate({"agent_id": "agent", "schedule": {"days": EVERY_DAY}})
    chunks = [
        (RecipientRow(row=2, to="+12125550101"), RecipientRow(row=3, to=NUMBER)),
        (RecipientRow(row=4, to="+12125550101"), RecipientRow(row=5, to="555")),
    ]
    assert isinstance(
        await handle_request(CampaignCreate(campaign_id="big", settings=spec), h.ports), CampaignAck
    )
    counted = CampaignCounters()
    for rows in chunks:
        ack = await handle_request(
            CampaignAddRecipients(campaign_id="big", recipients=rows), h.ports
        )
        assert isinstance(ack, CampaignAck)
        assert ack.counters is not None
        counted = added(counted, ack.counters)
    stored = await h.ports.store.counters("big")
    assert counted == stored
    assert (stored.total, stored.pending, stored.skipped_by_reason) == (
        4,
        1,
        {"suppressed": 1, "duplicate": 1, "invalid_number": 1},
    )
    # A chunk delivered again (a replica died before acking it) counts its
    # rows as first stored, not as duplicates of themselves.
    again = await handle_request(
        CampaignAddRecipients(campaign_id="big", recipients=chunks[0]), h.ports
    )
    assert isinstance(again, CampaignAck)
    assert again.counters == CampaignCounters(
        total=2, pending=1, skipped=1, skipped_by_reason={"suppressed": 1}
    )

    async def never_counted(campaign_id: str) -> None:
        raise AssertionError("the start counted the list")

    monkeypatch.setattr(h.ports.store, "counters", never_counted)
    started = await handle_request(CampaignStart(campaign_id="big"), h.ports)
    assert isinstance(started, CampaignAck)
    assert (started.state, started.counters) == ("running", None)


async def test_two_replicas_never_claim_the_same_attempt(h: Harness) -> None:
    numbers = [f"+1212555{index:04d}" for index in range(100, 140)]
    campaign_id = await start_campaign(
        h, numbers, pacing={"calls_per_second": 100, "max_concurrent": 1000}
    )
    doc = await campaign(h, campaign_id)
    replicas = [h.replica(f"replica-{index}") for index in range(4)]
    claimed = []
    for _ in range(20):
        h.clock.advance(1)
        results = await asyncio.gather(*(claim_next(doc, ports) for ports in replicas))
        # One pacing slot per moment, whoever asks.
        assert sum(result is not None for result in results) <= 1
        claimed += [result.attempt["_id"] for result in results if result is not None]
    assert len(claimed) == 20
    assert len(set(claimed)) == 20


async def test_a_claim_left_by_a_dead_replica_is_placed_once_under_the_same_key(
    h: Harness,
) -> None:
    campaign_id = await start_campaign(h, ["+12125550101", "+12125550102"])
    doc = await campaign(h, campaign_id)
    first = await claim_next(doc, h.replica("dies"))
    assert first is not None
    # The replica dies here: claimed, maybe placed, nothing recorded.
    assert await claim_stale(h.ports) is None  # the lease still holds
    h.clock.advance(11)
    taken = await claim_stale(h.ports)
    assert taken is not None
    assert taken.attempt["_id"] == first.attempt["_id"]
    await place(taken, h.ports)
    assert [order.idempotency_key for order in h.placer.orders] == [
        f"campaign-attempt:{first.attempt['_id']}:1"
    ]
    stored = await h.ports.store.attempts.find_one({"_id": first.attempt["_id"]})
    assert stored is not None
    assert stored["state"] == "in_call"
    assert [entry["n"] for entry in stored["tries"]] == [1]


async def test_a_taken_over_claim_whose_call_exists_is_not_placed_again(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101"])
    doc = await campaign(h, campaign_id)
    first = await claim_next(doc, h.replica("dies"))
    assert first is not None
    # The dead replica's placement reached gateway; persistence stored the call.
    await h.db["calls"].insert_one(call_document(first.attempt["_id"], 1, status="ringing"))
    h.clock.advance(11)
    taken = await claim_stale(h.ports)
    assert taken is not None
    await place(taken, h.ports)
    assert h.placer.orders == []
    stored = await h.ports.store.attempts.find_one({"_id": first.attempt["_id"]})
    assert stored is not None
    assert (stored["state"], stored["call_id"]) == ("in_call", f"call-of-{stored['_id']}-1")


async def test_throttling_backs_off_without_counting_an_attempt(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101"])
    h.placer.answer = lambda order: Throttled(5.0, "Twilio is rate limiting calls")
    claimed = await claim_next(await campaign(h, campaign_id), h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    doc = await campaign(h, campaign_id)
    assert (doc["backoff_until"] - h.clock.now).total_seconds() == 5.0
    attempt = await h.ports.store.attempts.find_one({"campaign_id": campaign_id})
    assert attempt is not None
    assert (attempt["state"], attempt["tries_started"], attempt["tries"]) == ("pending", 0, [])
    h.clock.advance(1)
    assert await claim_next(doc, h.ports) is None  # backing off
    h.clock.advance(5)
    h.placer.answer = None
    again = await claim_next(doc, h.ports)
    assert again is not None
    await place(again, h.ports)
    assert h.placer.orders[-1].idempotency_key == h.placer.orders[0].idempotency_key


async def test_unsure_placement_keeps_the_claim_and_repeats_the_key(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101"])
    h.placer.answer = lambda order: Unsure("gateway answered 502")
    claimed = await claim_next(await campaign(h, campaign_id), h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    h.placer.answer = None
    h.clock.advance(11)
    taken = await claim_stale(h.ports)
    assert taken is not None
    await place(taken, h.ports)
    keys = [order.idempotency_key for order in h.placer.orders]
    assert len(keys) == 2
    assert keys[0] == keys[1]


async def test_an_opt_out_refusal_skips_the_recipient(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101"])
    h.placer.answer = lambda order: Refused("opted_out", "recipient opted out")
    claimed = await claim_next(await campaign(h, campaign_id), h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    counters = await h.ports.store.counters(campaign_id)
    assert counters.skipped_by_reason == {"opted_out": 1}
    await maybe_finish(campaign_id, h.ports)
    assert [type(event) for event in h.events] == [CampaignCompleted]


async def test_outcomes_follow_the_retry_policy_and_apply_once(h: Harness) -> None:
    campaign_id = await start_campaign(
        h,
        ["+12125550101"],
        retry={"busy": {"max_attempts": 2, "delay_s": 60}},
    )
    doc = await campaign(h, campaign_id)
    claimed = await claim_next(doc, h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    attempt_id = claimed.attempt["_id"]
    await complete(h, attempt_id, 1, status="busy")
    await complete(h, attempt_id, 1, status="busy")  # delivered twice
    stored = await h.ports.store.attempts.find_one({"_id": attempt_id})
    assert stored is not None
    assert stored["state"] == "retry"
    assert (stored["due_at"] - h.clock.now).total_seconds() == 60
    assert await claim_next(doc, h.ports) is None  # not due yet
    h.clock.advance(61)
    second = await claim_next(doc, h.ports)
    assert second is not None
    await place(second, h.ports)
    await complete(h, attempt_id, 2, status="busy")
    stored = await h.ports.store.attempts.find_one({"_id": attempt_id})
    assert stored is not None
    assert (stored["state"], stored["outcome"]) == ("failed", "busy")
    assert [(entry["n"], entry["outcome"]) for entry in stored["tries"]] == [
        (1, "busy"),
        (2, "busy"),
    ]
    completed = [event for event in h.events if isinstance(event, CampaignCompleted)]
    assert len(completed) == 1
    assert completed[0].counters.failed == 1
    assert completed[0].counters.calls_placed == 2


async def test_an_opt_out_during_the_call_ends_the_recipient(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101"])
    claimed = await claim_next(await campaign(h, campaign_id), h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    await complete(h, claimed.attempt["_id"], 1, ended_by="opt_out")
    counters = await h.ports.store.counters(campaign_id)
    assert counters.skipped_by_reason == {"opted_out": 1}


async def test_one_number_is_never_in_two_calls_at_once(h: Harness) -> None:
    first = await start_campaign(h, ["+12125550101"])
    second = await start_campaign(h, ["+12125550101", "+12125550109"])
    a = await claim_next(await campaign(h, first), h.ports)
    assert a is not None
    await place(a, h.ports)
    b = await claim_next(await campaign(h, second), h.ports)
    assert b is not None
    assert b.attempt["to"] == "+12125550101"
    await place(b, h.ports)
    assert [order.to for order in h.placer.orders] == ["+12125550101"]
    waiting = await h.ports.store.attempts.find_one({"_id": b.attempt["_id"]})
    assert waiting is not None
    assert waiting["state"] == "pending"
    assert waiting["due_at"] > h.clock.now


async def test_the_calling_window_is_checked_again_at_the_claim(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101"])
    doc = await campaign(h, campaign_id)
    h.clock.advance(8 * 3600)  # 21:00 in New York
    claimed = await claim_next(doc, h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    assert h.placer.orders == []
    attempt = await h.ports.store.attempts.find_one({"_id": claimed.attempt["_id"]})
    assert attempt is not None
    assert attempt["state"] == "pending"
    assert attempt["due_at"].hour == 14  # 09:00 in New York, the next morning


async def test_cancel_cancels_the_waiting_and_lets_calls_in_progress_end(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101", "+12125550102", "+12125550103"])
    claimed = await claim_next(await campaign(h, campaign_id), h.ports)
    assert claimed is not None
    await place(claimed, h.ports)
    reply = await handle_request(CampaignControl(campaign_id=campaign_id, action="cancel"), h.ports)
    assert isinstance(reply, CampaignAck)
    assert reply.counters is not None
    assert (reply.counters.canceled, reply.counters.in_progress) == (2, 1)
    await complete(h, claimed.attempt["_id"], 1, status="no-answer")
    counters = await h.ports.store.counters(campaign_id)
    assert (counters.canceled, counters.failed, counters.retry_scheduled) == (3, 0, 0)


async def test_a_call_whose_outcome_never_came_is_settled(h: Harness) -> None:
    campaign_id = await start_campaign(h, ["+12125550101", "+12125550102"])
    doc = await campaign(h, campaign_id)
    settled = []
    for _ in range(2):
        h.clock.advance(1)
        claimed = await claim_next(doc, h.ports)
        assert claimed is not None
        await place(claimed, h.ports)
        settled.append(claimed.attempt["_id"])
    # The first call's document is final (only call.completed was lost); the
    # second never got its last status.
    await h.db["calls"].insert_one(
        {
            "_id": "call-1",
            "status": "busy",
            "variables": {"campaign_attempt_id": settled[0], "campaign_try": 1},
        }
    )
    await h.db["calls"].insert_one({"_id": "call-2", "status": "in-progress"})
    assert not await settle_overdue_call(h.ports)  # not overdue yet
    h.clock.advance(3601)
    assert await settle_overdue_call(h.ports)
    assert await settle_overdue_call(h.ports)
    assert not await settle_overdue_call(h.ports)
    first = await h.ports.store.attempts.find_one({"_id": settled[0]})
    second = await h.ports.store.attempts.find_one({"_id": settled[1]})
    assert first is not None
    assert second is not None
    assert (first["state"], first["outcome"]) == ("retry", "busy")
    assert (second["state"], second["outcome"]) == ("failed", "failed")
    assert "no outcome for call call-2" in second["problem"]


async def test_erasing_a_recipient_erases_their_rows_in_the_agents_campaigns_only(
    h: Harness,
) -> None:
    ada, other_numbers = "+12125550101", ["+12125550102", "+12125550103"]
    called = await start_campaign(h, [ada, other_numbers[0]], "called")  # both called
    for _ in range(2):
        h.clock.advance(1)  # the next pacing slot
        claimed = await claim_next(await campaign(h, called), h.ports)
        assert claimed is not None
        await place(claimed, h.ports)
        await complete(h, claimed.attempt["_id"], 1)
    waiting = await start_campaign(h, [ada, other_numbers[1]], "waiting")  # none called yet
    in_call = await start_campaign(h, [ada], "in-call")  # Ada's call still in flight
    flying = await claim_next(await campaign(h, in_call), h.ports)
    assert flying is not None
    await place(flying, h.ports)
    another_agent = await start_campaign(h, [ada], "another", agent_id="another-agent")
    rows = h.ports.store.attempts
    untouched = await rows.find({"to": {"$ne": ada}}).to_list(None)
    untouched += await rows.find({"campaign_id": another_agent}).to_list(None)
    counters_before = await h.ports.store.counters(called)

    erasure = RecipientDataErased(audit_id="audit-1", agent_id="agent", to=ada)
    await handle_recipient_erased(erasure, h.ports)

    [answer] = [event for event in h.events if isinstance(event, RecipientAttemptsErased)]
    assert (answer.audit_id, answer.attempts_erased) == ("audit-1", 3)
    # Everyone else's rows (other numbers, another agent's campaign) are as they were.
    for document in untouched:
        assert await rows.find_one({"_id": document["_id"]}) == document
    # A called row keeps its state and tries, so the counters stay true; the number goes.
    [done] = await rows.find({"campaign_id": called, "erased": {"$ne": None}}).to_list(None)
    assert not {"to", "fields", "timezone", "zones", "dedupe"} & done.keys()
    assert (done["state"], len(done["tries"])) == ("completed", 1)
    assert await h.ports.store.counters(called) == counters_before
    # A row waiting to be called is not called: canceled, and counted so.
    [never] = await rows.find({"campaign_id": waiting, "erased": {"$ne": None}}).to_list(None)
    assert (never["state"], "to" in never) == ("canceled", False)
    counters = await h.ports.store.counters(waiting)
    assert (counters.canceled, counters.pending, counters.total) == (1, 1, 2)
    # The call in flight keeps the number until its outcome, then ends without a retry.
    held = await rows.find_one({"_id": flying.attempt["_id"]})
    assert held is not None
    assert (held["state"], held["to"], held["fields"]) == ("in_call", ada, {})
    await complete(h, flying.attempt["_id"], 1, status="busy")
    ended = await rows.find_one({"_id": flying.attempt["_id"]})
    assert ended is not None
    assert (ended["state"], "to" in ended, "line" in ended) == ("canceled", False, False)
    assert await claim_next(await campaign(h, in_call), h.ports) is None
    assert (await campaign(h, in_call))["state"] == "completed"

    # Delivered again: nothing more is erased, the same count is reported.
    await handle_recipient_erased(erasure, h.ports)
    answers = [event for event in h.events if isinstance(event, RecipientAttemptsErased)]
    assert [a.attempts_erased for a in answers] == [3, 3]
