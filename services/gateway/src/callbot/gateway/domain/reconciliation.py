"""Reconciling calls with Twilio: which calls are overdue, and what Twilio's
view of one becomes as events. Pure: no I/O.

A status callback that never arrived (the broker was down longer than gateway
retries, Twilio does not retry) leaves a call non-final forever. Twilio's REST
API still knows the truth: the reconciler asks it, and this module turns the
answer into the SAME events a status, answer or recording callback would have
published, so persistence stays the only writer and a late real callback
converges on the same document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from callbot.common.calls import TERMINAL_STATUSES, CallDocument, CallStatus, Recording
from callbot.common.contracts import (
    CallAnswered,
    CallEvent,
    CallRecordingUpdated,
    CallStatusChanged,
)

# Statuses in which Twilio has not yet connected the call.
NOT_CONNECTED_STATUSES: frozenset[str] = frozenset({"created", "queued", "initiated", "ringing"})
NON_FINAL_STATUSES: tuple[str, ...] = tuple(sorted(set(get_args(CallStatus)) - TERMINAL_STATUSES))
# What `params` says about where a reconciled event came from.
RECONCILER_SOURCE = "reconciler"
# Twilio's longest call (`time_limit` of 4 hours): the bound of a call whose agent is gone.
LONGEST_CALL_S = 4 * 60 * 60

Outcome = Literal["finalized", "still_active", "not_found", "failed"]


@dataclass(frozen=True)
class TwilioCallState:
    """What `GET /Calls/{sid}` says about a call."""

    sid: str
    status: str
    duration_s: int | None
    start_time: datetime | None  # when the callee answered
    end_time: datetime | None
    answered_by: str | None


@dataclass(frozen=True)
class TwilioRecording:
    """One entry of the call's recordings list (`GET /Calls/{sid}/Recordings`)."""

    sid: str
    status: str | None
    duration_s: int | None
    url: str | None
    started_at: datetime | None = None  # Twilio's `start_time`


def overdue_at(
    call: CallDocument, *, ring_timeout_s: float, max_duration_s: float, margin_s: float
) -> datetime | None:
    """When a non-final call has been non-final longer than Twilio would allow:
    not connected past the ring timeout, or connected past the agent's
    `max_duration_s` (Twilio's `time_limit`), plus a margin for callbacks in
    flight. None when the document says too little to tell (no creation time)."""
    if call.created_at is None:
        return None
    margin = timedelta(seconds=margin_s)
    connected_by = call.created_at + timedelta(seconds=ring_timeout_s)
    if call.status in NOT_CONNECTED_STATUSES and call.answered_at is None:
        return connected_by + margin
    started = call.answered_at or connected_by
    return started + timedelta(seconds=max_duration_s) + margin


def is_overdue(
    call: CallDocument,
    now: datetime,
    *,
    ring_timeout_s: float,
    max_duration_s: float,
    margin_s: float,
) -> bool:
    if call.is_final or call.call_sid is None:
        return False
    due = overdue_at(
        call, ring_timeout_s=ring_timeout_s, max_duration_s=max_duration_s, margin_s=margin_s
    )
    return due is not None and now >= due


def reconciling_events(
    call: CallDocument, twilio: TwilioCallState, recordings: Sequence[TwilioRecording]
) -> list[CallEvent]:
    """The events that bring the document to what Twilio says, in the order a
    callback sequence would: answer, recordings, final status last. Nothing
    when Twilio says the call is still going (a later sweep looks again)."""
    if twilio.status not in TERMINAL_STATUSES:
        return []
    events: list[CallEvent] = []
    if call.answered_at is None and twilio.start_time is not None and twilio.duration_s:
        events.append(
            CallAnswered(
                call_id=call.call_id,
                call_sid=twilio.sid,
                answered_by=twilio.answered_by,
                occurred_at=twilio.start_time,
            )
        )
    stored = call.recording
    for recording in recordings:
        if stored is not None and stored.sid == recording.sid and stored.status == recording.status:
            continue
        events.append(
            CallRecordingUpdated(
                call_id=call.call_id,
                call_sid=twilio.sid,
                recording=Recording(
                    sid=recording.sid,
                    url=recording.url,
                    duration_s=recording.duration_s,
                    status=recording.status,
                    started_at=recording.started_at,
                ),
                params={"CallbackSource": RECONCILER_SOURCE, "RecordingSid": recording.sid},
            )
        )
    events.append(
        CallStatusChanged(
            call_id=call.call_id,
            call_sid=twilio.sid,
            status=twilio.status,
            # Twilio's REST API has no sequence number; one past the stored one
            # makes the final status supersede what is stored, as Twilio's own
            # last callback would. A late real callback (a higher number, the
            # same final status) changes nothing that matters.
            sequence_number=None if call.status_seq is None else call.status_seq + 1,
            call_duration=twilio.duration_s,
            answered_by=twilio.answered_by,
            occurred_at=twilio.end_time or _last_heard_of(call),
            params={"CallbackSource": RECONCILER_SOURCE, "CallStatus": twilio.status},
        )
    )
    return events


def _last_heard_of(call: CallDocument) -> datetime:
    """When Twilio gives no end time: the last time callbot heard of the call."""
    moment = call.updated_at or call.created_at
    if moment is None:
        raise ValueError(f"call {call.call_id} has neither updated_at nor created_at")
    return moment
