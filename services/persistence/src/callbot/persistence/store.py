"""Where call documents and agents are stored: the ports, MongoDB, and in-memory fakes.

`MongoCallStore` turns each event into a short list of atomic conditional
updates (`mongo_updates`), each idempotent, so concurrent handlers, replicas
and redeliveries need no locks and no read-modify-write. `InMemoryCallStore`
runs the pure projection; the contract suite holds both to the same results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatch
from typing import Any, Protocol, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from callbot.common.agents import Agent
from callbot.common.calls import (
    MACHINE_ANSWERS,
    RECORDING_TRANSCRIPT,
    TERMINAL_STATUSES,
    CallDocument,
    SummarySource,
    Turn,
)
from callbot.common.contracts import (
    CallAnswered,
    CallAnsweredBy,
    CallCreated,
    CallEnding,
    CallEvent,
    CallFallbackSpoken,
    CallRecordingArchived,
    CallRecordingTranscribed,
    CallRecordingTranscriptionFailed,
    CallRecordingUpdated,
    CallStatusChanged,
    CallSummarized,
    CallTurnInterrupted,
    CallTurnRecorded,
    utcnow,
)
from callbot.common.mongo import Document
from callbot.persistence.domain.projection import (
    apply_event,
    blank_call,
    expiry,
    status_changes,
    transcription_failure,
)
from callbot.persistence.domain.status import (
    FINAL_RECORDING_STATUSES,
    INFERRED_HANGUP,
    ended_by_for_terminal_status,
    is_terminal,
    parse_call_status,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]


class CallStore(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def apply(self, event: CallEvent) -> None:
        """Make the event's effect durable; applying it again changes nothing."""

    async def get(self, call_id: str) -> CallDocument | None: ...

    async def claim_completion(
        self, call_id: str, *, now: datetime, stale_before: datetime
    ) -> CallDocument | None:
        """Take the job of publishing `call.completed`: the finalized document as
        of the claim, or None when it is published or someone holds a claim made
        at or after `stale_before`."""

    async def mark_completion_published(self, call_id: str, *, now: datetime) -> None: ...

    async def completions_due(
        self, *, quiet_since: datetime, stale_before: datetime, limit: int
    ) -> list[str]:
        """Finalized calls not written since `quiet_since` whose `call.completed`
        is unpublished and unclaimed (or claimed before `stale_before`)."""


class AgentStore(Protocol):
    async def save(self, agent: Agent, *, now: datetime) -> int:
        """Create or replace the agent; returns its new version (1 when new)."""


# --- Waiting out a MongoDB outage ----------------------------------------

# ConnectionFailure is the parent of AutoReconnect, NetworkTimeout and
# ServerSelectionTimeoutError: everything PyMongo raises while the server is away.
STORE_UNREACHABLE: tuple[type[Exception], ...] = (ConnectionFailure,)
MAX_BACKOFF_S = 3.0


class RetryWhileUnreachable:
    """Runs a store operation until MongoDB answers, backing off exponentially
    (capped at `MAX_BACKOFF_S`), with no overall limit: a message whose write
    waits is neither acked nor counted against its delivery limit. Once
    `stopping` is set, the last error is raised so the message is requeued.
    Other errors (bugs, bad data) are raised at once.

    One instance serves every handler of a service: the first operation that
    succeeds wakes all the others from their back-off, so when MongoDB returns
    every waiting write lands at once, well inside the completion grace,
    rather than some seconds later, after `call.completed` went out without it."""

    def __init__(
        self,
        stopping: asyncio.Event,
        *,
        first_backoff_s: float = 0.05,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self._stopping = stopping
        self._reachable_again = asyncio.Event()
        self._backoff = wait_exponential(multiplier=first_backoff_s, max=max_backoff_s)

    async def __call__(self, operation: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(STORE_UNREACHABLE),
            wait=self._backoff,
            stop=self._stop_requested,
            sleep=self._sleep_until_retry,
            before_sleep=_log_unreachable,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result = await operation()
                self._wake_sleepers()
                return result
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _wake_sleepers(self) -> None:
        woken, self._reachable_again = self._reachable_again, asyncio.Event()
        woken.set()

    def _stop_requested(self, _state: RetryCallState) -> bool:
        return self._stopping.is_set()

    async def _sleep_until_retry(self, seconds: float) -> None:
        """Sleep `seconds`, or less when stopping or when another write succeeded."""
        waits = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._reachable_again.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


def _log_unreachable(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "MongoDB unreachable; write retried, message stays unacknowledged",
        extra={
            "attempt": state.attempt_number,
            "retry_in_s": round(state.upcoming_sleep, 2),
            "error": repr(error),
        },
    )


# --- MongoDB --------------------------------------------------------------

CALL_INDEXES: tuple[IndexModel, ...] = (
    IndexModel([("call_sid", ASCENDING)], unique=True, sparse=True),
    IndexModel([("agent_id", ASCENDING), ("to", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("agent_id", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("status", ASCENDING), ("updated_at", ASCENDING)]),
    # The read API (GET /v1/calls): newest first by (created_at, _id), per filter.
    IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("ended_by", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("agent_id", ASCENDING), ("data_complete", ASCENDING), ("created_at", DESCENDING)]),
)


@dataclass(frozen=True)
class ConditionalUpdate:
    """One atomic update of the call document, applied when `condition` holds.
    `upsert` creates the document when the event is the first of its call."""

    condition: Document
    update: Document
    upsert: bool = False


_UNCLAIMED = {"completed_claimed_at": None}
# The codes MongoDB answers a unique index collision with (as pymongo's DuplicateKeyError).
_DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})

# settle_ended_by: the `callee_hangup` guess becomes `voicemail` once a machine answer is known.
_VOICEMAIL_WHEN_MACHINE = ConditionalUpdate(
    condition={
        "status": {"$in": sorted(TERMINAL_STATUSES)},
        "answered_by": {"$in": sorted(MACHINE_ANSWERS)},
        "ended_by": {"$in": [None, INFERRED_HANGUP]},
        **_UNCLAIMED,
    },
    update={"$set": {"ended_by": "voicemail"}},
)

# settle_ended_by: a finalized call nobody explained gets the ending its status implies.
_INFERRED_ENDING = {
    status: ConditionalUpdate(
        {"status": status, "ended_by": None, **_UNCLAIMED},
        {"$set": {"ended_by": ended_by_for_terminal_status(parse_call_status(status))}},
    )
    for status in TERMINAL_STATUSES
}


@singledispatch
def mongo_updates(event: CallEvent) -> list[ConditionalUpdate]:
    """The projection rule for `event`, as MongoDB updates applied in order.
    Every one is idempotent, so a redelivered event re-runs them all safely
    (and completes whatever a crash interrupted)."""
    raise TypeError(f"persistence does not store {type(event).__name__} events")


@mongo_updates.register
def _created(event: CallCreated) -> list[ConditionalUpdate]:
    creation = {
        "call_sid": event.call_sid,
        "agent_id": event.agent_id,
        "agent_version": event.agent_version,
        "data_fields": list(event.data_fields),
        "to": event.to,
        "from": event.from_,
        "recipient": event.recipient,
        "variables": event.variables,
        "override_opt_out": event.override_opt_out,
        "created_at": event.occurred_at,
        "expires_at": expiry(event),
    }
    return [
        ConditionalUpdate({}, {"$set": creation}, upsert=True),
        ConditionalUpdate({"status": None}, {"$set": {"status": parse_call_status(event.status)}}),
    ]


@mongo_updates.register
def _answered(event: CallAnswered) -> list[ConditionalUpdate]:
    answer: Document = {"call_sid": event.call_sid}
    if event.answered_by is not None:
        answer["answered_by"] = event.answered_by
    # $min: the earliest answer counts (a repeated answer webhook makes a later event).
    update = {"$set": answer, "$min": {"answered_at": event.occurred_at}}
    return [ConditionalUpdate({}, update, upsert=True), _VOICEMAIL_WHEN_MACHINE]


@mongo_updates.register
def _answered_by(event: CallAnsweredBy) -> list[ConditionalUpdate]:
    return [
        ConditionalUpdate({}, {"$set": {"call_sid": event.call_sid}}, upsert=True),
        ConditionalUpdate({"answered_by": None}, {"$set": {"answered_by": event.answered_by}}),
        _VOICEMAIL_WHEN_MACHINE,
    ]


@mongo_updates.register
def _interrupted(event: CallTurnInterrupted) -> list[ConditionalUpdate]:
    # Replace the line stored at that seq (unless already interrupted), else push it.
    heard = event.turn
    stored = heard.model_dump(mode="python")
    replace = ConditionalUpdate(
        {"turns": {"$elemMatch": {"seq": heard.seq, "interrupted": {"$ne": True}}}},
        {"$set": {"turns.$": stored}},
    )
    return [replace, _push_once(heard)]


def _push_once(turn: Turn) -> ConditionalUpdate:
    """Add the turn unless its seq is stored: a turn stored by an earlier
    exchange (a redelivered request answered anew) is not pushed twice."""
    return ConditionalUpdate(
        {"turns.seq": {"$ne": turn.seq}},
        {"$push": {"turns": {"$each": [turn.model_dump(mode="python")], "$sort": {"seq": 1}}}},
        upsert=True,
    )


@mongo_updates.register
def _turn(event: CallTurnRecorded) -> list[ConditionalUpdate]:
    # One push per turn, each conditional on its own seq.
    pushes = [_push_once(turn) for turn in event.turns]
    # Only the newest exchange's data counts; a separate update (not folded into
    # the pushes) so a redelivery after a crash between them still sets it.
    data = ConditionalUpdate(
        {"turns.seq": {"$not": {"$gt": event.last_seq}}},
        {"$set": {"data_collected": event.data_collected, "data_complete": event.data_complete}},
    )
    return [*pushes, data]


@mongo_updates.register
def _fallback(event: CallFallbackSpoken) -> list[ConditionalUpdate]:
    line = event.line
    void_ending = {"ended_by": None, "ending_reason": None, "callback_request": None}
    return [
        *(_push_once(heard) for heard in event.turns[:-1]),
        # dialog's late reply at the line's seq gives way to the line.
        ConditionalUpdate(
            {}, {"$pull": {"turns": {"seq": line.seq, "fallback": {"$ne": True}}}}, upsert=True
        ),
        _push_once(line),
        ConditionalUpdate(
            {"ending_seq": line.seq, **_UNCLAIMED}, {"$set": {**void_ending, "ending_seq": None}}
        ),
        # settle_ended_by, for a finalized call whose ending was just voided.
        _VOICEMAIL_WHEN_MACHINE,
        *(_INFERRED_ENDING[status] for status in sorted(TERMINAL_STATUSES)),
    ]


@mongo_updates.register
def _ending(event: CallEnding) -> list[ConditionalUpdate]:
    # ending_applies: nothing stored yet, or the unclaimed callee_hangup guess;
    # and never for a closing line the callee did not hear (a fallback holds its seq).
    condition: Document = {"$or": [{"ended_by": None}, {"ended_by": INFERRED_HANGUP, **_UNCLAIMED}]}
    if event.seq is not None:
        condition["turns"] = {"$not": {"$elemMatch": {"seq": event.seq, "fallback": True}}}
    update: dict[str, Any] = {
        "$set": {"ended_by": event.ended_by, "ending_reason": event.reason, "ending_seq": event.seq}
    }
    if event.callback_request is not None:
        update["$set"]["callback_request"] = event.callback_request.model_dump(mode="json")
    return [ConditionalUpdate(condition, update, upsert=True)]


@mongo_updates.register
def _status(event: CallStatusChanged) -> list[ConditionalUpdate]:
    status = parse_call_status(event.status)
    updates = [
        ConditionalUpdate(
            _supersedes(status, event.sequence_number),
            {"$set": {"call_sid": event.call_sid, **status_changes(event)}},
            upsert=True,
        )
    ]
    if event.answered_by is not None:
        updates.append(
            ConditionalUpdate({"answered_by": None}, {"$set": {"answered_by": event.answered_by}})
        )
    updates.append(_VOICEMAIL_WHEN_MACHINE)
    if is_terminal(status):
        updates.append(_INFERRED_ENDING[status])
    return updates


def _supersedes(status: str, seq: int | None) -> Document:
    """status_supersedes as a MongoDB condition."""
    newer = (
        {"status_seq": None}
        if seq is None
        else {"$or": [{"status_seq": None}, {"status_seq": {"$lt": seq}}]}
    )
    if is_terminal(status):
        return newer
    return {"$and": [newer, {"status": {"$nin": sorted(TERMINAL_STATUSES)}}]}


@mongo_updates.register
def _recording(event: CallRecordingUpdated) -> list[ConditionalUpdate]:
    # recording_update_applies: never move a finished recording back.
    condition = (
        {}
        if event.recording.status in FINAL_RECORDING_STATUSES
        else {"recording.status": {"$nin": sorted(FINAL_RECORDING_STATUSES)}}
    )
    # Field by field, so the media worker's `recording.archive` stays.
    recording = event.recording.model_dump(mode="python", exclude={"archive"})
    fields: Document = {f"recording.{name}": value for name, value in recording.items()}
    if event.call_sid is not None:
        fields["call_sid"] = event.call_sid
    return [ConditionalUpdate(condition, {"$set": fields}, upsert=True)]


@dataclass(frozen=True)
class SummaryPaths:
    """Where a stored summary's ranked fields are in a document."""

    sources: str
    summarized_at: str
    summary: str


CALL_SUMMARY = SummaryPaths("summary_sources", "summarized_at", "summary")


def outranked_summary(
    paths: SummaryPaths, sources: tuple[SummarySource, ...], at: datetime, text: str
) -> Document:
    """`summary_rank` as a condition: no summary stored at `paths`, or one
    ranking below (`sources`, `at`, `text`)."""
    live_only = {paths.sources: {"$ne": RECORDING_TRANSCRIPT}}  # matches none stored too
    earlier: Document = {
        "$or": [
            {paths.summarized_at: None},
            {paths.summarized_at: {"$lt": at}},
            {paths.summarized_at: at, paths.summary: {"$lt": text}},
        ]
    }
    if RECORDING_TRANSCRIPT in sources:
        return {"$or": [live_only, earlier]}
    return {**live_only, **earlier}


@mongo_updates.register
def _summarized(event: CallSummarized) -> list[ConditionalUpdate]:
    condition = outranked_summary(CALL_SUMMARY, event.sources, event.summarized_at, event.summary)
    fields = {
        "summary": event.summary,
        "summary_model": event.model,
        "summarized_at": event.summarized_at,
        "summary_sources": list(event.sources),
    }
    # Never an upsert from the recording: like its transcript, it does not
    # bring an erased call back.
    return [ConditionalUpdate(condition, {"$set": fields}, upsert=not event.uses_recording)]


@mongo_updates.register
def _recording_archived(event: CallRecordingArchived) -> list[ConditionalUpdate]:
    # Only onto the same recording (or none stored yet).
    condition = {"$or": [{"recording.sid": None}, {"recording.sid": event.recording_sid}]}
    fields = {
        "recording.sid": event.recording_sid,
        "recording.archive": event.archive.model_dump(mode="python"),
    }
    return [ConditionalUpdate(condition, {"$set": fields}, upsert=True)]


@mongo_updates.register
def _transcribed(event: CallRecordingTranscribed) -> list[ConditionalUpdate]:
    # Never an upsert: a transcript does not bring an erased call back.
    at = event.transcript.transcribed_at
    condition = {
        "$or": [
            {"recording_transcript": None},
            {"recording_transcript.transcribed_at": {"$lt": at}},
        ]
    }
    fields: Document = {
        "recording_transcript": event.transcript.model_dump(mode="python"),
        "recording_transcript_failure": None,
    }
    if event.data_review is not None:
        fields["data_review"] = [item.model_dump(mode="python") for item in event.data_review]
    return [ConditionalUpdate(condition, {"$set": fields})]


@mongo_updates.register
def _transcription_failed(event: CallRecordingTranscriptionFailed) -> list[ConditionalUpdate]:
    failure = transcription_failure(event).model_dump(mode="python")
    return [
        ConditionalUpdate(
            {"recording_transcript": None},
            {"$set": {"recording_transcript_failure": failure}},
        )
    ]


def _published_or_fresh_claim_excluded(stale_before: datetime) -> Document:
    return {
        "status": {"$in": sorted(TERMINAL_STATUSES)},
        "completed_published_at": None,
        "$or": [{"completed_claimed_at": None}, {"completed_claimed_at": {"$lt": stale_before}}],
    }


class MongoCallStore:
    def __init__(self, calls: AsyncCollection[Document], clock: Clock = utcnow) -> None:
        self._calls = calls
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self._calls.create_indexes(list(CALL_INDEXES))

    async def apply(self, event: CallEvent) -> None:
        steps = mongo_updates(event)
        # One round trip for all of an event's updates (an exchange has three): an
        # ordered batch applies them in turn and stops at the first error.
        operations = [
            UpdateOne(*self._selector_and_update(event.call_id, s), upsert=s.upsert) for s in steps
        ]
        try:
            await self._calls.bulk_write(operations, ordered=True)
        except BulkWriteError as exc:
            failed = exc.details["writeErrors"][0]
            if failed["code"] not in _DUPLICATE_KEY_CODES or not steps[failed["index"]].upsert:
                raise
            # An upsert collided: settle it as a lone update does, then the rest,
            # which the ordered batch left unapplied.
            for step in steps[failed["index"] :]:
                await self._update(event.call_id, step)

    def _selector_and_update(
        self, call_id: str, step: ConditionalUpdate
    ) -> tuple[Document, Document]:
        selector = {"_id": call_id, **step.condition}
        update = {
            **step.update,
            "$set": {**step.update.get("$set", {}), "updated_at": self._clock()},
        }
        return selector, update

    async def _update(self, call_id: str, step: ConditionalUpdate) -> None:
        selector, update = self._selector_and_update(call_id, step)
        if not step.upsert:
            await self._calls.update_one(selector, update)
            return
        try:
            await self._calls.update_one(selector, update, upsert=True)
        except DuplicateKeyError:
            # The insert collided with the call's own document: it exists (maybe
            # inserted a moment ago by a concurrent event) and the condition
            # excluded it or did not see it. Update it where the condition holds.
            result = await self._calls.update_one(selector, update)
            if result.matched_count == 0 and not await self._exists(call_id):
                raise  # another unique key (call_sid) collided: a real conflict

    async def _exists(self, call_id: str) -> bool:
        return await self._calls.find_one({"_id": call_id}, {"_id": 1}) is not None

    async def get(self, call_id: str) -> CallDocument | None:
        document = await self._calls.find_one({"_id": call_id})
        return None if document is None else CallDocument.model_validate(document)

    async def claim_completion(
        self, call_id: str, *, now: datetime, stale_before: datetime
    ) -> CallDocument | None:
        document = await self._calls.find_one_and_update(
            {"_id": call_id, **_published_or_fresh_claim_excluded(stale_before)},
            {"$set": {"completed_claimed_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else CallDocument.model_validate(document)

    async def mark_completion_published(self, call_id: str, *, now: datetime) -> None:
        await self._calls.update_one(
            {"_id": call_id, "completed_published_at": None},
            {"$set": {"completed_published_at": now}},
        )

    async def completions_due(
        self, *, quiet_since: datetime, stale_before: datetime, limit: int
    ) -> list[str]:
        cursor = (
            self._calls.find(
                {
                    **_published_or_fresh_claim_excluded(stale_before),
                    "updated_at": {"$lt": quiet_since},
                },
                {"_id": 1},
            )
            .sort("updated_at", ASCENDING)
            .limit(limit)
        )
        return [str(document["_id"]) async for document in cursor]


class MongoAgentStore:
    def __init__(self, agents: AsyncCollection[Document]) -> None:
        self._agents = agents

    async def save(self, agent: Agent, *, now: datetime) -> int:
        # The version is bumped by the server in the same atomic update, so two
        # concurrent saves get two different versions.
        fields = {
            key: value
            for key, value in agent.to_document().items()
            if key not in ("_id", "version", "created_at", "updated_at")
        }
        saved = await self._agents.find_one_and_update(
            {"_id": agent.agent_id},
            {
                "$set": {**fields, "updated_at": now},
                "$inc": {"version": 1},
                "$setOnInsert": {"created_at": now},
            },
            projection={"version": 1},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert saved is not None, "an upsert returning the document after always finds it"
        return int(saved["version"])


# --- In memory ------------------------------------------------------------


class InMemoryCallStore:
    """The projection itself, kept in a dict: the fake for unit tests and the
    reference the MongoDB store is held to."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self._clock = clock
        self.calls: dict[str, CallDocument] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def apply(self, event: CallEvent) -> None:
        current = self.calls.get(event.call_id) or blank_call(event.call_id)
        updated = apply_event(current, event)
        if updated != current:
            self.calls[event.call_id] = updated.model_copy(update={"updated_at": self._clock()})

    async def get(self, call_id: str) -> CallDocument | None:
        return self.calls.get(call_id)

    async def claim_completion(
        self, call_id: str, *, now: datetime, stale_before: datetime
    ) -> CallDocument | None:
        call = self.calls.get(call_id)
        if call is None or not _awaiting_publication(call, stale_before):
            return None
        claimed = call.model_copy(update={"completed_claimed_at": now})
        self.calls[call_id] = claimed
        return claimed

    async def mark_completion_published(self, call_id: str, *, now: datetime) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.completed_published_at is None:
            self.calls[call_id] = call.model_copy(update={"completed_published_at": now})

    async def completions_due(
        self, *, quiet_since: datetime, stale_before: datetime, limit: int
    ) -> list[str]:
        due = [
            call
            for call in self.calls.values()
            if _awaiting_publication(call, stale_before)
            and call.updated_at is not None
            and call.updated_at < quiet_since
        ]
        due.sort(key=lambda call: call.updated_at or quiet_since)
        return [call.call_id for call in due[:limit]]


def _awaiting_publication(call: CallDocument, stale_before: datetime) -> bool:
    claim = call.completed_claimed_at
    return (
        call.is_final
        and call.completed_published_at is None
        and (claim is None or claim < stale_before)
    )


class InMemoryAgentStore:
    def __init__(self) -> None:
        self.agents: dict[str, dict[str, Any]] = {}

    async def save(self, agent: Agent, *, now: datetime) -> int:
        previous = self.agents.get(agent.agent_id)
        version = 1 if previous is None else int(previous["version"]) + 1
        created_at = now if previous is None else previous["created_at"]
        self.agents[agent.agent_id] = {
            **agent.to_document(),
            "version": version,
            "created_at": created_at,
            "updated_at": now,
        }
        return version
