"""What `call.completed` and `call.recording_ready` carry, and when they are due. Pure."""

from __future__ import annotations

from callbot.common.calls import CallDocument
from callbot.common.contracts import CallCompleted, CallRecordingReady

# Outbox bookkeeping: how persistence got the event out, not part of the call.
_PUBLICATION_FIELDS = {"completed_claimed_at": None, "completed_published_at": None}


def call_completed_event(call: CallDocument) -> CallCompleted:
    """`call.completed` for a finalized document, as read when its publication
    was claimed. The message id derives from the call id, so a republication
    (after a crash) is recognisably the same event; `call_id` stays the
    idempotency key subscribers rely on."""
    if not call.is_final:
        raise ValueError(f"call {call.call_id} has status {call.status!r}: it has not ended")
    return CallCompleted(
        call_id=call.call_id,
        message_id=f"call.completed:{call.call_id}",
        call=call.model_copy(update=_PUBLICATION_FIELDS),
    )


def recording_missed_completion(call: CallDocument) -> bool:
    """The recording was written after `call.completed` was claimed, so that
    event did not carry it: subscribers hear of it through `call.recording_ready`."""
    return call.completed_claimed_at is not None and call.recording is not None


def recording_ready_event(call: CallDocument) -> CallRecordingReady:
    if call.recording is None:
        raise ValueError(f"call {call.call_id} has no recording to announce")
    return CallRecordingReady(call_id=call.call_id, recording=call.recording)


def awaits_summary(call: CallDocument) -> bool:
    """dialog summarizes the calls it held a conversation in (answered ones)
    and the summary is not stored yet."""
    return call.answered_at is not None and call.summary is None
