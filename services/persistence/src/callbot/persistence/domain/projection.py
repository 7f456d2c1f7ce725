"""The call-document projection: `(CallDocument, event) -> CallDocument`. Pure.

This is the specification of what every call event does to the stored call.
The in-memory store runs it as is; the MongoDB store encodes each rule as
atomic conditional updates, and one contract test suite checks that both give
the same documents for the same events in any order, with duplicates.

Every rule is idempotent and commutes with the others, because events reach
persistence through several publishers, retries and replicas:
- a turn is added once (by `seq`) and turns stay sorted by `seq`;
  `data_collected` is the one sent with the highest turn seen (an exchange's
  data goes with its last turn);
- an interrupted line (`call.turn_interrupted`) replaces the turn at its seq,
  or takes the seq if it comes first; once there, no `call.turn` replaces it;
- a status applies only when `status_supersedes` says so;
- `ended_by`: dialog's `call.ending` wins; on a terminal status persistence
  infers it (voicemail for a machine, else the status for busy, no-answer,
  failed and canceled, else `callee_hangup`); the `callee_hangup` guess is
  corrected by a later `call.ending` or machine `answered_by` until the
  publication of `call.completed` has been claimed, so the event and the
  document never disagree;
- a finished recording is never replaced by an unfinished one, and its
  `archive` (the media worker's copy) is kept whichever event lands first;
- `call.summarized`: a summary made with the recording's transcript outranks
  one made from the live turns alone (a slow live summary never replaces
  it); among equals the latest (by `summarized_at`, then text) holds the
  summary; a summary from the recording never creates a call document;
- the latest `call.recording_transcribed` (by `transcribed_at`) holds the
  recording's transcript and its `data_review`, and clears a failure mark; a
  `call.recording_transcription_failed` marks only a call with no transcript;
  neither creates a call document (an erased call stays erased);
- `expires_at` is the creation time plus the call's `retention_days`;
- `answered_at` is the earliest answer (gateway publishes one per answer
  webhook, and Twilio may repeat the webhook); `answered_by` is the first one
  known (the answer webhook, asynchronous machine detection, a status callback);
- the stored transcript is what the callee heard: gateway's fallback line
  (`call.fallback`) holds its seq whatever dialog's late reply put there, and
  an ending whose closing line (`call.ending`'s `seq`) the callee never heard
  is void: a late `call.ending` at a fallback seq does not apply, and a
  fallback clears an ending stored at its seq (until `call.completed` is
  claimed; a terminal status then infers `ended_by` as if none was given).

`updated_at` and the publication bookkeeping (`completed_claimed_at`,
`completed_published_at`) are the store's, not the events'.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import singledispatch
from typing import Any

from callbot.common.calls import (
    RECORDING_TRANSCRIPT,
    CallDocument,
    Recording,
    SummarySource,
    TranscriptionFailure,
    is_machine,
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
)
from callbot.persistence.domain.status import (
    INFERRED_HANGUP,
    ended_by_for_terminal_status,
    is_terminal,
    parse_call_status,
    recording_update_applies,
    status_supersedes,
)

PROJECTED_EVENTS: tuple[type[CallEvent], ...] = (
    CallCreated,
    CallAnswered,
    CallAnsweredBy,
    CallTurnRecorded,
    CallFallbackSpoken,
    CallTurnInterrupted,
    CallEnding,
    CallStatusChanged,
    CallRecordingUpdated,
    CallSummarized,
    CallRecordingArchived,
    CallRecordingTranscribed,
    CallRecordingTranscriptionFailed,
)


def blank_call(call_id: str) -> CallDocument:
    """The document an event finds when it is the first to arrive for its call."""
    return CallDocument(call_id=call_id)


def project(events: list[CallEvent], call_id: str) -> CallDocument:
    """The document these events give, applied in the order listed."""
    call = blank_call(call_id)
    for event in events:
        call = apply_event(call, event)
    return call


def apply_event(call: CallDocument, event: CallEvent) -> CallDocument:
    """The document after `event`."""
    return _apply(event, call)


# singledispatch picks the implementation by its first argument: the event.
@singledispatch
def _apply(event: CallEvent, call: CallDocument) -> CallDocument:
    raise TypeError(
        f"persistence does not store {type(event).__name__} events; "
        f"expected one of {[kind.__name__ for kind in PROJECTED_EVENTS]}"
    )


def _changed(call: CallDocument, **changes: Any) -> CallDocument:
    return call.model_copy(update=changes)


@_apply.register
def _created(event: CallCreated, call: CallDocument) -> CallDocument:
    call = _changed(
        call,
        call_sid=event.call_sid,
        agent_id=event.agent_id,
        agent_version=event.agent_version,
        data_fields=event.data_fields,
        to=event.to,
        from_=event.from_,
        recipient=event.recipient,
        variables=event.variables,
        override_opt_out=event.override_opt_out,
        created_at=event.occurred_at,
        expires_at=expiry(event),
    )
    if call.status is None:  # status callbacks that came first know better
        call = _changed(call, status=parse_call_status(event.status))
    return call


@_apply.register
def _answered(event: CallAnswered, call: CallDocument) -> CallDocument:
    # The first answer counts: a repeated answer webhook makes a later event.
    answered_at = min(filter(None, (call.answered_at, event.occurred_at)))
    changes: dict[str, Any] = {"call_sid": event.call_sid, "answered_at": answered_at}
    if event.answered_by is not None:
        changes["answered_by"] = event.answered_by
    return settle_ended_by(_changed(call, **changes))


@_apply.register
def _answered_by(event: CallAnsweredBy, call: CallDocument) -> CallDocument:
    changes: dict[str, Any] = {"call_sid": event.call_sid}
    if call.answered_by is None:
        changes["answered_by"] = event.answered_by
    return settle_ended_by(_changed(call, **changes))


@_apply.register
def _interrupted(event: CallTurnInterrupted, call: CallDocument) -> CallDocument:
    heard = event.turn
    if any(existing.seq == heard.seq and existing.interrupted for existing in call.turns):
        return call
    others = [existing for existing in call.turns if existing.seq != heard.seq]
    return _changed(call, turns=tuple(sorted((*others, heard), key=lambda t: t.seq)))


@_apply.register
def _turn(event: CallTurnRecorded, call: CallDocument) -> CallDocument:
    stored = {existing.seq for existing in call.turns}
    added = [turn for turn in event.turns if turn.seq not in stored]
    if added:
        call = _changed(call, turns=tuple(sorted((*call.turns, *added), key=lambda t: t.seq)))
    if all(existing.seq <= event.last_seq for existing in call.turns):
        call = _changed(
            call, data_collected=event.data_collected, data_complete=event.data_complete
        )
    return call


@_apply.register
def _fallback(event: CallFallbackSpoken, call: CallDocument) -> CallDocument:
    line = event.line
    by_seq = {existing.seq: existing for existing in call.turns}
    for heard in event.turns[:-1]:
        by_seq.setdefault(heard.seq, heard)
    if not is_fallback_at(call, line.seq):
        by_seq[line.seq] = line  # over dialog's late reply, if it came first
    call = _changed(call, turns=tuple(by_seq[seq] for seq in sorted(by_seq)))
    if call.ending_seq == line.seq and call.completed_claimed_at is None:
        call = settle_ended_by(
            _changed(
                call, ended_by=None, ending_reason=None, callback_request=None, ending_seq=None
            )
        )
    return call


def is_fallback_at(call: CallDocument, seq: int) -> bool:
    """The callee heard gateway's fallback line at `seq`."""
    return any(turn.seq == seq and turn.fallback for turn in call.turns)


@_apply.register
def _ending(event: CallEnding, call: CallDocument) -> CallDocument:
    if event.seq is not None and is_fallback_at(call, event.seq):
        return call  # its closing line was never heard: the call went on
    if ending_applies(call.ended_by, call.completed_claimed_at is not None):
        call = _changed(
            call, ended_by=event.ended_by, ending_reason=event.reason, ending_seq=event.seq
        )
        if event.callback_request is not None:
            call = _changed(call, callback_request=event.callback_request)
    return call


@_apply.register
def _status(event: CallStatusChanged, call: CallDocument) -> CallDocument:
    status = parse_call_status(event.status)
    changes: dict[str, Any] = {"call_sid": event.call_sid}
    if event.answered_by is not None and call.answered_by is None:
        changes["answered_by"] = event.answered_by
    if status_supersedes(call.status, call.status_seq, status, event.sequence_number):
        changes.update(status_changes(event))
    return settle_ended_by(_changed(call, **changes))


@_apply.register
def _recording(event: CallRecordingUpdated, call: CallDocument) -> CallDocument:
    stored_status = call.recording.status if call.recording else None
    if not recording_update_applies(stored_status, event.recording.status):
        return call
    # The archive is the media worker's (`call.recording_archived`), which may land first.
    archive = call.recording.archive if call.recording else None
    changes: dict[str, Any] = {"recording": event.recording.model_copy(update={"archive": archive})}
    if event.call_sid is not None:
        changes["call_sid"] = event.call_sid
    return _changed(call, **changes)


@_apply.register
def _summarized(event: CallSummarized, call: CallDocument) -> CallDocument:
    if event.uses_recording and call == blank_call(call.call_id):
        return call  # the transcript never creates a call: neither does its summary
    if summary_applies(call, event):
        call = _changed(
            call,
            summary=event.summary,
            summary_model=event.model,
            summarized_at=event.summarized_at,
            summary_sources=event.sources,
        )
    return call


SummaryRank = tuple[bool, datetime, str]


def summary_rank(
    sources: tuple[SummarySource, ...], summarized_at: datetime, summary: str
) -> SummaryRank:
    """The summary made with the recording's transcript outranks the live
    turns' alone; among equals the latest wins (ties: the greater text), so
    replicas that both summarized a call converge on one, in any order."""
    return (RECORDING_TRANSCRIPT in sources, summarized_at, summary)


def summary_applies(call: CallDocument, event: CallSummarized) -> bool:
    if call.summarized_at is None:
        return True
    stored = summary_rank(call.summary_sources, call.summarized_at, call.summary or "")
    return summary_rank(event.sources, event.summarized_at, event.summary) > stored


@_apply.register
def _recording_archived(event: CallRecordingArchived, call: CallDocument) -> CallDocument:
    """`recording.archive` for the call's recording; an archive of another
    recording than the one stored is ignored."""
    recording = call.recording or Recording(sid=event.recording_sid)
    if recording.sid != event.recording_sid:
        return call
    return _changed(call, recording=recording.model_copy(update={"archive": event.archive}))


def expiry(event: CallCreated) -> datetime | None:
    """When the call is erased: its creation plus its retention (None: kept)."""
    if event.retention_days is None:
        return None
    return event.occurred_at + timedelta(days=event.retention_days)


@_apply.register
def _transcribed(event: CallRecordingTranscribed, call: CallDocument) -> CallDocument:
    stored = call.recording_transcript
    if call == blank_call(call.call_id) or (
        stored is not None and stored.transcribed_at >= event.transcript.transcribed_at
    ):
        return call
    changes: dict[str, Any] = {
        "recording_transcript": event.transcript,
        "recording_transcript_failure": None,
    }
    if event.data_review is not None:
        changes["data_review"] = event.data_review
    return _changed(call, **changes)


@_apply.register
def _transcription_failed(
    event: CallRecordingTranscriptionFailed, call: CallDocument
) -> CallDocument:
    if call == blank_call(call.call_id) or call.recording_transcript is not None:
        return call
    return _changed(call, recording_transcript_failure=transcription_failure(event))


def transcription_failure(event: CallRecordingTranscriptionFailed) -> TranscriptionFailure:
    return TranscriptionFailure(
        recording_sid=event.recording_sid,
        reason=event.reason,
        attempts=event.attempts,
        failed_at=event.occurred_at,
    )


def status_changes(event: CallStatusChanged) -> dict[str, Any]:
    """The fields a superseding status callback sets (the finalization ones too
    when it is terminal). `ended_at` is when gateway received the callback."""
    status = parse_call_status(event.status)
    changes: dict[str, Any] = {"status": status}
    if event.sequence_number is not None:
        changes["status_seq"] = event.sequence_number
    if event.error_code is not None:
        changes["error_code"] = event.error_code
    if is_terminal(status):
        changes["ended_at"] = event.occurred_at
        changes["duration_s"] = event.call_duration
    return changes


def ending_applies(stored_ended_by: str | None, completion_claimed: bool) -> bool:
    """dialog's `call.ending` sets `ended_by` unless one is stored already; it
    corrects persistence's `callee_hangup` guess until `call.completed` is claimed."""
    return stored_ended_by is None or (
        stored_ended_by == INFERRED_HANGUP and not completion_claimed
    )


def settle_ended_by(call: CallDocument) -> CallDocument:
    """Infer `ended_by` for a finalized call nobody explained, and upgrade the
    `callee_hangup` guess to `voicemail` once a machine answer is known."""
    if call.status is None or not is_terminal(call.status) or call.completed_claimed_at is not None:
        return call
    if is_machine(call.answered_by) and call.ended_by in (None, INFERRED_HANGUP):
        return _changed(call, ended_by="voicemail")
    if call.ended_by is None:
        return _changed(call, ended_by=ended_by_for_terminal_status(call.status))
    return call
