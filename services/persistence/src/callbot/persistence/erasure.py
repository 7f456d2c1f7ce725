"""Erasing calls everywhere: retention's sweeper and a recipient's erasure request.

A call is erased object storage first, then MongoDB: its archived recording
(and anything else under `calls/<call_id>/` in its bucket), then its document,
which holds the live turns, the recording's transcript, the summary and the
data collected. Interrupted, it is simply run again: deleting what is gone
already is not an error, and a document is deleted only after its objects.

- `RetentionSweeper` erases calls whose `expires_at` has passed, by an
  injectable clock. MongoDB's TTL index on `expires_at` (with a grace period)
  is the backstop when the sweeper is not running; the recordings bucket's
  lifecycle rule (set by the media worker) is the bucket's own.
- `erase_recipient` erases every call of one agent to one number, reduces
  the recipient document to its opt-out (so the number is not called again),
  writes an audit record (`audit` collection) and announces it
  (`recipient.erased`): the campaigns service erases the number from its
  `attempts` (its own collection) and answers `recipient.attempts_erased`,
  which `record_attempts_erased` adds to the audit record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    Event,
    RecipientAttemptsErased,
    RecipientDataErased,
    RecipientErase,
    RecipientErased,
    new_id,
    utcnow,
)
from callbot.common.mongo import Document
from callbot.common.object_storage import ObjectLocation, ObjectStore
from callbot.common.recipients import RecipientDocument, recipient_key

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Publish = Callable[[Event], Awaitable[None]]
SWEEP_BATCH = 200
# What the erasure reads of a call.
_ERASURE_FIELDS = {"recording": 1, "ended_by": 1, "created_at": 1, "agent_id": 1, "to": 1}


def expiry_index(grace_days: int) -> IndexModel:
    """MongoDB removes a call this long after `expires_at` by itself, should the
    sweeper (which erases the recording first) not have run."""
    return IndexModel(
        [("expires_at", ASCENDING)],
        expireAfterSeconds=int(timedelta(days=grace_days).total_seconds()),
        name="expires_at_ttl",
    )


class CallEraser:
    def __init__(self, calls: AsyncCollection[Document], objects: ObjectStore) -> None:
        self._calls = calls
        self._objects = objects

    async def erase(self, documents: list[Document]) -> tuple[int, int]:
        """Erase these calls (as read with `_ERASURE_FIELDS`); (calls, objects) erased."""
        objects = 0
        for document in documents:
            objects += await self._erase_objects(CallDocument.model_validate(document))
        ids = [document["_id"] for document in documents]
        if not ids:
            return 0, objects
        result = await self._calls.delete_many({"_id": {"$in": ids}})
        return result.deleted_count, objects

    async def _erase_objects(self, call: CallDocument) -> int:
        """The call's archived recording and whatever else is under its prefix.
        A call never archived has nothing in object storage."""
        archive = call.recording.archive if call.recording else None
        if archive is None:
            return 0
        prefix = f"{archive.key.rsplit('/', 1)[0]}/"
        keys = {archive.key, *await self._objects.keys(archive.bucket, prefix)}
        for key in sorted(keys):
            await self._objects.delete(ObjectLocation(archive.bucket, key))
        return len(keys)


class RetentionSweeper:
    def __init__(
        self, calls: AsyncCollection[Document], eraser: CallEraser, clock: Clock = utcnow
    ) -> None:
        self._calls = calls
        self._eraser = eraser
        self._clock = clock

    async def sweep(self) -> int:
        """Erase every call expired by now; the number erased."""
        erased = 0
        while True:
            now = self._clock()
            cursor = self._calls.find({"expires_at": {"$lte": now}}, _ERASURE_FIELDS)
            batch = await cursor.limit(SWEEP_BATCH).to_list()
            if not batch:
                return erased
            calls, objects = await self._eraser.erase(batch)
            erased += calls
            log.info(
                "expired calls erased",
                extra={"calls": calls, "objects": objects, "now": now.isoformat()},
            )
            if len(batch) < SWEEP_BATCH:
                return erased

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the next sweep tries again; never stop the service
                log.exception("retention sweep failed; trying again next interval")
            await asyncio.sleep(interval_s)


async def erase_recipient(
    request: RecipientErase,
    *,
    calls: AsyncCollection[Document],
    recipients: AsyncCollection[Document],
    audit: AsyncCollection[Document],
    eraser: CallEraser,
    publish: Publish,
    clock: Clock = utcnow,
) -> RecipientErased:
    """Everything of `(agent_id, to)` erased but the opt-out; an audit record
    written, then announced so the campaigns service erases its rows. A failed
    announcement fails the request: sending it again repeats it all harmlessly."""
    selector = {"agent_id": request.agent_id, "to": request.to}
    documents = await calls.find(selector, _ERASURE_FIELDS).to_list()
    key = recipient_key(request.agent_id, request.to)
    stored = await recipients.find_one({"_id": key})
    opt_out = _kept_opt_out(stored, documents)
    calls_erased, objects_erased = await eraser.erase(documents)
    now = clock()
    if opt_out is None:
        await recipients.delete_one({"_id": key})
    else:
        kept = {"agent_id": request.agent_id, "to": request.to, "opted_out": opt_out}
        await recipients.replace_one({"_id": key}, {**kept, "updated_at": now}, upsert=True)
    audit_id = new_id()
    await audit.insert_one(
        {
            "_id": audit_id,
            "action": "recipient.erase",
            "agent_id": request.agent_id,
            "to": request.to,
            "requested_by": request.requested_by,
            "reason": request.reason,
            "at": now,
            "call_ids": sorted(str(document["_id"]) for document in documents),
            "calls_erased": calls_erased,
            "objects_erased": objects_erased,
            "opt_out_kept": opt_out is not None,
            "attempts_erased": None,  # the campaigns service's count, once it answers
        }
    )
    await publish(RecipientDataErased(audit_id=audit_id, agent_id=request.agent_id, to=request.to))
    log.warning(
        "recipient erased on request",
        extra={
            "audit_id": audit_id,
            "agent_id": request.agent_id,
            "calls": calls_erased,
            "objects": objects_erased,
        },
    )
    return RecipientErased(
        audit_id=audit_id,
        calls_erased=calls_erased,
        objects_erased=objects_erased,
        opted_out=opt_out is not None,
    )


async def record_attempts_erased(
    event: RecipientAttemptsErased, *, audit: AsyncCollection[Document]
) -> None:
    """The campaigns service's part of an erasure, on its audit record. The
    count is of every row bearing that erasure, so a repeated answer sets the same."""
    await audit.update_one(
        {"_id": event.audit_id},
        {
            "$set": {
                "attempts_erased": event.attempts_erased,
                "attempts_erased_at": event.occurred_at,
            }
        },
    )
    log.info(
        "campaign attempts erasure recorded",
        extra={"audit_id": event.audit_id, "attempts": event.attempts_erased},
    )


def _kept_opt_out(stored: Document | None, calls: list[Document]) -> dict[str, Any] | None:
    """The recipient's opt-out, or one of the calls being erased that ended in one
    (the recipient document learns it only when `call.completed` goes out)."""
    if stored is not None:
        recipient = RecipientDocument.model_validate(stored)
        if recipient.opted_out is not None:
            return recipient.opted_out.model_dump(mode="python")
    opted = sorted(
        (document["created_at"], str(document["_id"]))
        for document in calls
        if document.get("ended_by") == "opt_out" and document.get("created_at") is not None
    )
    if not opted:
        return None
    at, call_id = opted[0]
    return {"call_id": call_id, "at": at}
