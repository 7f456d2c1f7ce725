"""Where recipient documents are stored: the port, MongoDB, and the in-memory fake.

`MongoRecipientStore` turns a finished call into atomic conditional updates,
each idempotent and order-independent (the rules of
`callbot.persistence.domain.recipients`), so replicas and republications need
no locks. `InMemoryRecipientStore` runs the pure projection; one contract
suite holds both to the same documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from callbot.common.calls import CallDocument
from callbot.common.contracts import utcnow
from callbot.common.mongo import Document
from callbot.common.recipients import RecipientDocument, recipient_key
from callbot.persistence.domain.recipients import (
    applies_to_recipient,
    apply_call,
    apply_summary,
    blank_recipient,
    call_moment,
    collected_values,
    outcome_of,
    summary_of,
    was_answered,
)
from callbot.persistence.store import Clock, SummaryPaths, outranked_summary

LAST_SUMMARY = SummaryPaths(
    "last_summary.sources", "last_summary.summarized_at", "last_summary.summary"
)

# The read API's filters (GET /v1/recipients), each served by one of these.
RECIPIENT_INDEXES: tuple[IndexModel, ...] = (
    IndexModel([("agent_id", ASCENDING), ("last_call_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel(
        [("agent_id", ASCENDING), ("opted_out.at", ASCENDING), ("last_call_at", DESCENDING)]
    ),
    IndexModel(
        [("agent_id", ASCENDING), ("data_complete", ASCENDING), ("last_call_at", DESCENDING)]
    ),
    # Multikey: one entry per missing field name.
    IndexModel(
        [
            ("agent_id", ASCENDING),
            ("missing_fields", ASCENDING),
            ("last_call_at", DESCENDING),
            ("_id", DESCENDING),
        ]
    ),
)


class RecipientStore(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def record_call(self, call: CallDocument) -> None:
        """Count a finished call for its recipient; recording it again changes nothing.
        A call that names no agent or number (its creation event was lost) is skipped."""

    async def record_summary(self, call: CallDocument) -> None:
        """Bring the summary of a call counted already to its recipient (a
        summary stored after the call was counted); idempotent. A call not
        counted (yet) is left to `record_call`, which carries its summary."""

    async def get(self, agent_id: str, to: str) -> RecipientDocument | None: ...


def _later(at_path: str, call_id_path: str, at: datetime, call_id: str) -> Document:
    """`(at, call_id)` is after the stored pair, or none is stored: `is_later` as a condition."""
    return {
        "$or": [
            {at_path: None},
            {at_path: {"$lt": at}},
            {at_path: at, call_id_path: {"$lt": call_id}},
        ]
    }


def recipient_updates(call: CallDocument) -> list[tuple[Document, Document]]:
    """The projection's rules after the count, as (condition, update) pairs on
    an existing recipient document, to be applied in order: a collected field
    leaves `missing_fields` only after its value is held, so another call's
    "join unless a value is held" never finds it absent in between."""
    at = call_moment(call)
    assert at is not None, "applies_to_recipient was checked"
    cid = call.call_id
    outcome = outcome_of(call, at).model_dump(mode="python")
    updates: list[tuple[Document, Document]] = [
        (
            _later("last_call_at", "last_outcome.call_id", at, cid),
            {"$set": {"last_call_at": at, "last_outcome": outcome}},
        )
    ]
    collected = collected_values(call)
    for name, value in collected:
        path = f"data_collected.{name}"
        updates.append(
            (
                _later(f"{path}.at", f"{path}.call_id", at, cid),
                {"$set": {path: {"value": value, "call_id": cid, "at": at}}},
            )
        )
    if collected:
        updates.append(({}, {"$pull": {"missing_fields": {"$in": [n for n, _ in collected]}}}))
    for name in sorted(set(call.data_fields) - {name for name, _ in collected}):
        updates.append(({f"data_collected.{name}": None}, {"$addToSet": {"missing_fields": name}}))
    if call.data_complete:
        updates.append(({}, {"$set": {"data_complete": True}}))
    if call.ended_by == "opt_out":
        earlier = {
            "$or": [
                {"opted_out": None},
                {"opted_out.at": {"$gt": at}},
                {"opted_out.at": at, "opted_out.call_id": {"$gt": cid}},
            ]
        }
        updates.append((earlier, {"$set": {"opted_out": {"call_id": cid, "at": at}}}))
    if call.recipient:
        updates.append(
            (
                _later("profile_at", "profile_call_id", at, cid),
                {"$set": {"profile": call.recipient, "profile_at": at, "profile_call_id": cid}},
            )
        )
    summary_update = last_summary_update(call)
    if summary_update is not None:
        updates.append(summary_update)
    return updates


def counted_recipient_key(call: CallDocument) -> str | None:
    """The key of the recipient the call counts for; None when it counts for none."""
    if not applies_to_recipient(call) or call.agent_id is None or call.to is None:
        return None
    return recipient_key(call.agent_id, call.to)


def last_summary_update(call: CallDocument) -> tuple[Document, Document] | None:
    """`summary_supersedes` as (condition, update): the call is later than the
    one whose summary is stored, or it is that call and its summary outranks."""
    summary = summary_of(call)
    if summary is None:
        return None
    same_call_outranked = {
        "last_summary.call_id": summary.call_id,
        **outranked_summary(LAST_SUMMARY, summary.sources, summary.summarized_at, summary.summary),
    }
    condition = {
        "$or": [
            _later("last_summary.at", "last_summary.call_id", summary.at, summary.call_id),
            same_call_outranked,
        ]
    }
    return condition, {"$set": {"last_summary": summary.model_dump(mode="python")}}


class MongoRecipientStore:
    def __init__(self, recipients: AsyncCollection[Document], clock: Clock = utcnow) -> None:
        self._recipients = recipients
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self._recipients.create_indexes(list(RECIPIENT_INDEXES))

    async def record_call(self, call: CallDocument) -> None:
        key = counted_recipient_key(call)
        if key is None:
            return
        await self._count(key, call)
        operations = [
            UpdateOne({"_id": key, **condition}, self._stamped(update))
            for condition, update in recipient_updates(call)
        ]
        await self._recipients.bulk_write(operations, ordered=True)

    async def _count(self, key: str, call: CallDocument) -> None:
        assert call.agent_id is not None
        assert call.to is not None
        selector = {"_id": key, "call_ids": {"$ne": call.call_id}}
        update = self._stamped(
            {
                "$setOnInsert": {"agent_id": call.agent_id, "to": call.to},
                "$push": {"call_ids": {"$each": [call.call_id], "$sort": 1}},
                "$inc": {"total_calls": 1, "answered_calls": int(was_answered(call))},
            }
        )
        try:
            await self._recipients.update_one(selector, update, upsert=True)
        except DuplicateKeyError:
            # The document exists: it counted this call already (nothing to do),
            # or a concurrent call inserted it a moment ago (count this one now).
            del update["$setOnInsert"]
            await self._recipients.update_one(selector, update)

    async def record_summary(self, call: CallDocument) -> None:
        summary_update, key = last_summary_update(call), counted_recipient_key(call)
        if summary_update is None or key is None:
            return
        condition, update = summary_update
        selector = {"_id": key, "call_ids": call.call_id}
        await self._recipients.update_one({**selector, **condition}, self._stamped(update))

    def _stamped(self, update: Document) -> Document:
        return {**update, "$set": {**update.get("$set", {}), "updated_at": self._clock()}}

    async def get(self, agent_id: str, to: str) -> RecipientDocument | None:
        document = await self._recipients.find_one({"_id": recipient_key(agent_id, to)})
        return None if document is None else RecipientDocument.model_validate(document)


class InMemoryRecipientStore:
    """The projection itself, kept in a dict: the fake for unit tests and the
    reference the MongoDB store is held to."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self._clock = clock
        self.recipients: dict[str, RecipientDocument] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def record_call(self, call: CallDocument) -> None:
        key = counted_recipient_key(call)
        if key is None:
            return
        assert call.agent_id is not None  # counted_recipient_key checked both
        assert call.to is not None
        current = self.recipients.get(key) or blank_recipient(call.agent_id, call.to)
        self._keep(key, current, apply_call(current, call))

    async def record_summary(self, call: CallDocument) -> None:
        key = counted_recipient_key(call)
        current = self.recipients.get(key) if key is not None else None
        if key is not None and current is not None and call.call_id in current.call_ids:
            self._keep(key, current, apply_summary(current, call))

    def _keep(self, key: str, current: RecipientDocument, updated: RecipientDocument) -> None:
        if updated != current:
            self.recipients[key] = updated.model_copy(update={"updated_at": self._clock()})

    async def get(self, agent_id: str, to: str) -> RecipientDocument | None:
        return self.recipients.get(recipient_key(agent_id, to))
