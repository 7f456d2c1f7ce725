"""The campaigns service's MongoDB collections: `campaigns`, `attempts` and
`suppressions` (it is their only writer), and the reads of `recipients`
(persistence's) for opt-outs.

Every step a replica takes on shared work is one atomic `find_one_and_update`
whose filter states what must still be true, so two replicas never take the
same pacing slot, never claim the same attempt, and a repeated event never
applies twice:

- pacing: `take_slot` moves the campaign's `next_dial_at` forward only when
  it has passed;
- claiming: `claim_due` moves one due attempt from `pending`/`retry` to
  `dialing` with a lease; `claim_stale` takes a `dialing` attempt whose lease
  ran out (its replica died between claiming and recording the placement)
  and places it again under the same idempotency key;
- one number at a time, across campaigns: while an attempt is `dialing` or
  `in_call` it holds `line` (its number) under a unique sparse index;
- erasing a number (`erase_number`, on persistence's `recipient.erased`):
  its rows in the agent's campaigns lose the number and the row's fields and
  are marked `erased`; a row still waiting to be called ends `canceled`; a
  row whose call is in flight keeps the number until the outcome lands
  (`finish_erasure`). States and tries stay, so the counters stay true.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from callbot.common.campaigns import (
    ACTIVE_ATTEMPT_STATES,
    WAITING_ATTEMPT_STATES,
    counters_from_groups,
    counters_pipeline,
)
from callbot.common.contracts import CampaignCounters
from callbot.common.mongo import Document

CAMPAIGNS = "campaigns"
ATTEMPTS = "attempts"
SUPPRESSIONS = "suppressions"
RECIPIENTS = "recipients"  # persistence's; read for opt-outs
CALLS = "calls"  # persistence's; read when a claim is taken over
_DUPLICATE_KEY = 11000
# What an erased row no longer holds: the number and everything given with it.
ERASED_ROW_FIELDS = dict.fromkeys(("to", "timezone", "fields", "zones", "dedupe", "line"), "")
ERASED_PROBLEM = "the recipient was erased on request; not called"


def attempt_id(campaign_id: str, row: int) -> str:
    return f"{campaign_id}:{row:08d}"


def idempotency_key(attempt: Document, try_number: int) -> str:
    """The key of one placement: the same for a re-placement after a crash."""
    return f"campaign-attempt:{attempt['_id']}:{try_number}"


class CampaignStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._db = database
        self.campaigns: AsyncCollection[Document] = database[CAMPAIGNS]
        self.attempts: AsyncCollection[Document] = database[ATTEMPTS]
        self.suppressions: AsyncCollection[Document] = database[SUPPRESSIONS]
        self._recipients: AsyncCollection[Document] = database[RECIPIENTS]
        self._calls: AsyncCollection[Document] = database[CALLS]

    async def ensure_indexes(self) -> None:
        await self.attempts.create_index(
            [("campaign_id", ASCENDING), ("state", ASCENDING), ("due_at", ASCENDING)]
        )
        await self.attempts.create_index([("campaign_id", ASCENDING), ("row", ASCENDING)])
        await self.attempts.create_index("dedupe", unique=True, sparse=True)
        await self.attempts.create_index("line", unique=True, sparse=True)
        await self.attempts.create_index([("state", ASCENDING), ("lease_until", ASCENDING)])
        await self.attempts.create_index([("state", ASCENDING), ("placed_at", ASCENDING)])
        await self.campaigns.create_index("state")

    # --- campaigns -------------------------------------------------------

    async def insert_campaign(self, document: Document) -> bool:
        """False when a campaign with that id exists already."""
        try:
            await self.campaigns.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def campaign(self, campaign_id: str) -> Document | None:
        return await self.campaigns.find_one({"_id": campaign_id})

    async def set_campaign_state(
        self, campaign_id: str, from_states: Sequence[str], to_state: str, now: datetime
    ) -> Document | None:
        """Move a campaign between states; None when it was in none of `from_states`."""
        return await self.campaigns.find_one_and_update(
            {"_id": campaign_id, "state": {"$in": list(from_states)}},
            {"$set": {"state": to_state, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def delete_campaign(self, campaign_id: str) -> None:
        await self.attempts.delete_many({"campaign_id": campaign_id})
        await self.campaigns.delete_one({"_id": campaign_id})

    async def running_campaigns(self) -> list[Document]:
        return await self.campaigns.find({"state": "running"}).to_list(None)

    async def unannounced_campaigns(self) -> list[Document]:
        """Campaigns that ended but whose `campaign.completed` is not confirmed."""
        return await self.campaigns.find(
            {"state": {"$in": ["completed", "canceled"]}, "completed_published_at": None}
        ).to_list(None)

    async def take_slot(self, campaign_id: str, now: datetime, next_at: datetime) -> bool:
        """The campaign's next placement slot, if it is due and nothing asked
        the campaign to back off: the pacing shared by every replica."""
        taken = await self.campaigns.find_one_and_update(
            {
                "_id": campaign_id,
                "state": "running",
                "next_dial_at": {"$lte": now},
                "backoff_until": {"$lte": now},
            },
            {"$set": {"next_dial_at": next_at}},
            projection={"_id": 1},
        )
        return taken is not None

    async def back_off(self, campaign_id: str, until: datetime, backoff_s: float) -> None:
        await self.campaigns.update_one(
            {"_id": campaign_id},
            {"$max": {"backoff_until": until}, "$set": {"backoff_s": backoff_s}},
        )

    async def clear_backoff(self, campaign_id: str) -> None:
        await self.campaigns.update_one(
            {"_id": campaign_id, "backoff_s": {"$gt": 0}}, {"$set": {"backoff_s": 0.0}}
        )

    async def claim_progress_turn(self, campaign_id: str, now: datetime, due: datetime) -> bool:
        """One replica publishes a campaign's progress per interval."""
        taken = await self.campaigns.find_one_and_update(
            {"_id": campaign_id, "progress_published_at": {"$lte": due}},
            {"$set": {"progress_published_at": now}},
            projection={"_id": 1},
        )
        return taken is not None

    async def finish_if_done(self, campaign_id: str, now: datetime) -> Document | None:
        """Mark a running campaign `completed` when no recipient is left to
        call or waiting for an outcome; the one caller that did it gets the
        document (and publishes `campaign.completed`)."""
        open_states = [*WAITING_ATTEMPT_STATES, *ACTIVE_ATTEMPT_STATES]
        if await self.attempts.find_one(
            {"campaign_id": campaign_id, "state": {"$in": open_states}}, projection={"_id": 1}
        ):
            return None
        return await self.set_campaign_state(campaign_id, ["running"], "completed", now)

    async def mark_announced(self, campaign_id: str, now: datetime) -> None:
        await self.campaigns.update_one(
            {"_id": campaign_id}, {"$set": {"completed_published_at": now}}
        )

    # --- attempts --------------------------------------------------------

    async def known_numbers(self, campaign_id: str, numbers: Iterable[str]) -> set[str]:
        keys = [f"{campaign_id}|{number}" for number in numbers]
        found = self.attempts.find({"dedupe": {"$in": keys}}, projection={"to": 1})
        return {document["to"] async for document in found}

    async def insert_attempts(self, documents: list[Document]) -> int:
        """Insert rows; rows already there (a chunk sent again) are left as
        they are. Returns how many were new."""
        if not documents:
            return 0
        try:
            result = await self.attempts.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            return len(documents) - len(errors)
        return len(result.inserted_ids)

    async def attempts_by_id(self, attempt_ids: list[str]) -> list[Document]:
        """The stored rows of these ids (what counters read of them)."""
        return await self.attempts.find(
            {"_id": {"$in": attempt_ids}}, projection={"state": 1, "skip_reason": 1, "tries": 1}
        ).to_list(None)

    async def count_active(self, campaign_id: str) -> int:
        return await self.attempts.count_documents(
            {"campaign_id": campaign_id, "state": {"$in": list(ACTIVE_ATTEMPT_STATES)}}
        )

    async def claim_due(
        self, campaign_id: str, now: datetime, owner: str, lease_until: datetime
    ) -> Document | None:
        return await self.attempts.find_one_and_update(
            {
                "campaign_id": campaign_id,
                "state": {"$in": list(WAITING_ATTEMPT_STATES)},
                "due_at": {"$lte": now},
            },
            {
                "$set": {"state": "dialing", "owner": owner, "lease_until": lease_until},
                "$inc": {"tries_started": 1},
            },
            sort=[("due_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def claim_stale(
        self, now: datetime, owner: str, lease_until: datetime
    ) -> Document | None:
        """A `dialing` attempt whose replica stopped renewing it."""
        return await self.attempts.find_one_and_update(
            {"state": "dialing", "lease_until": {"$lt": now}},
            {"$set": {"owner": owner, "lease_until": lease_until}},
            return_document=ReturnDocument.AFTER,
        )

    async def overdue_call(self, placed_before: datetime) -> Document | None:
        """An attempt still waiting for the outcome of a call placed before
        `placed_before` (its `call.completed` never came)."""
        return await self.attempts.find_one(
            {"state": "in_call", "placed_at": {"$lt": placed_before}}
        )

    async def call_document(self, call_id: str) -> Document | None:
        return await self._calls.find_one({"_id": call_id})

    async def placed_call(self, attempt_id_: str, try_number: int) -> str | None:
        """The call a try placed, when persistence has stored it (the call's
        variables name the attempt and the try). Read before a taken-over
        claim is placed again; rare, so no index on `calls` for it."""
        found = await self._calls.find_one(
            {
                "variables.campaign_attempt_id": attempt_id_,
                "variables.campaign_try": try_number,
            },
            projection={"_id": 1},
        )
        return None if found is None else str(found["_id"])

    async def hold_line(self, attempt: Document) -> bool:
        """Take the attempt's number for the length of the call; False when a
        call to that number (any campaign) is already in progress."""
        try:
            await self.attempts.update_one(
                {"_id": attempt["_id"]}, {"$set": {"line": attempt["to"]}}
            )
        except DuplicateKeyError:
            return False
        return True

    async def release(
        self, attempt: Document, state: str, due_at: datetime | None, **fields: Any
    ) -> bool:
        """Put a claimed attempt back (`pending`/`retry` at `due_at`) or end it,
        without counting a placement."""
        result = await self.attempts.update_one(
            {"_id": attempt["_id"], "state": "dialing", "owner": attempt["owner"]},
            {
                "$set": {"state": state, "due_at": due_at, **fields},
                "$unset": {"line": "", "lease_until": "", "owner": ""},
                "$inc": {"tries_started": -1},
            },
        )
        return result.modified_count == 1

    async def mark_placed(
        self, attempt: Document, try_number: int, call_id: str, now: datetime
    ) -> bool:
        result = await self.attempts.update_one(
            {"_id": attempt["_id"], "state": "dialing", "tries_started": try_number},
            {
                "$set": {"state": "in_call", "call_id": call_id, "placed_at": now},
                "$push": {"tries": {"n": try_number, "call_id": call_id, "placed_at": now}},
                "$unset": {"lease_until": "", "owner": ""},
            },
        )
        return result.modified_count == 1

    async def record_outcome(
        self,
        attempt_id_: str,
        try_number: int,
        call_id: str,
        set_fields: Document,
    ) -> Document | None:
        """Apply a call's outcome once: only while the attempt still waits for
        exactly that call. A late or repeated `call.completed` changes nothing."""
        return await self.attempts.find_one_and_update(
            {
                "_id": attempt_id_,
                "state": {"$in": list(ACTIVE_ATTEMPT_STATES)},
                "tries_started": try_number,
            },
            {
                "$set": {**set_fields, "call_id": call_id},
                "$unset": {"line": "", "lease_until": "", "owner": ""},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def add_try(self, attempt_id_: str, entry: Document) -> None:
        await self.attempts.update_one(
            {"_id": attempt_id_, "tries.n": {"$ne": entry["n"]}}, {"$push": {"tries": entry}}
        )

    async def set_try_outcome(self, attempt_id_: str, try_number: int, fields: Document) -> None:
        await self.attempts.update_one(
            {"_id": attempt_id_, "tries.n": try_number},
            {"$set": {f"tries.$.{key}": value for key, value in fields.items()}},
        )

    async def cancel_waiting(self, campaign_id: str, now: datetime) -> int:
        result = await self.attempts.update_many(
            {"campaign_id": campaign_id, "state": {"$in": list(WAITING_ATTEMPT_STATES)}},
            {"$set": {"state": "canceled", "updated_at": now}},
        )
        return result.modified_count

    async def counters(self, campaign_id: str) -> CampaignCounters:
        cursor = await self.attempts.aggregate(counters_pipeline(campaign_id))
        return counters_from_groups(await cursor.to_list(None))

    # --- erasure ----------------------------------------------------------

    async def campaign_ids_of_agent(self, agent_id: str) -> list[str]:
        found = self.campaigns.find({"settings.agent_id": agent_id}, projection={"_id": 1})
        return [str(document["_id"]) async for document in found]

    async def erase_number(
        self, campaign_ids: list[str], to: str, audit_id: str, now: datetime
    ) -> int:
        """Erase the number's rows in these campaigns; how many rows bear this erasure."""
        rows: Document = {"campaign_id": {"$in": campaign_ids}, "to": to}
        erased = {"audit_id": audit_id, "at": now}
        await self.attempts.update_many(
            {**rows, "state": {"$in": list(WAITING_ATTEMPT_STATES)}},
            {"$set": {"state": "canceled", "due_at": None, "problem": ERASED_PROBLEM}},
        )
        # A call in flight keeps its number (and `line`) until its outcome lands.
        await self.attempts.update_many(
            {**rows, "state": {"$in": list(ACTIVE_ATTEMPT_STATES)}},
            {"$set": {"fields": {}, "erased": erased, "updated_at": now}},
        )
        await self.attempts.update_many(
            {**rows, "state": {"$nin": list(ACTIVE_ATTEMPT_STATES)}},
            {"$set": {"erased": erased, "updated_at": now}, "$unset": ERASED_ROW_FIELDS},
        )
        return await self.attempts.count_documents(
            {"campaign_id": {"$in": campaign_ids}, "erased.audit_id": audit_id}
        )

    async def finish_erasure(self, attempt_id_: str) -> None:
        """A row erased while its call was in flight loses the number once the
        outcome has landed."""
        await self.attempts.update_one(
            {
                "_id": attempt_id_,
                "erased": {"$ne": None},
                "state": {"$nin": list(ACTIVE_ATTEMPT_STATES)},
            },
            {"$unset": ERASED_ROW_FIELDS},
        )

    # --- suppressions and opt-outs ---------------------------------------

    async def suppressed(self, numbers: Iterable[str]) -> set[str]:
        found = self.suppressions.find({"_id": {"$in": list(numbers)}}, projection={"_id": 1})
        return {document["_id"] async for document in found}

    async def opted_out(self, agent_id: str, numbers: Iterable[str]) -> set[str]:
        """Numbers whose recipient asked this agent's calls to stop
        (persistence's `recipients`: `_id` "{agent_id}:{to}", `opted_out`)."""
        keys = [f"{agent_id}:{number}" for number in numbers]
        found = self._recipients.find(
            {"_id": {"$in": keys}, "opted_out": {"$ne": None}}, projection={"_id": 1}
        )
        prefix = len(agent_id) + 1
        return {str(document["_id"])[prefix:] async for document in found}

    async def add_suppressions(self, numbers: Iterable[str], reason: str, now: datetime) -> None:
        for number in numbers:
            await self.suppressions.update_one(
                {"_id": number},
                {"$setOnInsert": {"reason": reason, "added_at": now}},
                upsert=True,
            )
