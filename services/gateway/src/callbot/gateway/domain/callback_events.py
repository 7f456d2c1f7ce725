"""Twilio's status and recording callbacks → the events gateway publishes.

Every field Twilio sent is kept in `params`, so a consumer can use one gateway
does not know about; the ones callbot relies on are typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import get_args

from callbot.common.calls import CallStatus, Recording
from callbot.common.contracts import CallRecordingUpdated, CallStatusChanged
from callbot.gateway.domain.webhook_form import MalformedWebhook, optional_int, required_field

# What Twilio's CallStatus may be; persistence can store no other.
CALL_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))


def call_status_event(call_id: str, fields: Mapping[str, str]) -> CallStatusChanged:
    status = required_field(fields, "CallStatus")
    if status not in CALL_STATUSES:
        raise MalformedWebhook(
            f"CallStatus {status!r} is not a Twilio call status; expected one of "
            f"{sorted(CALL_STATUSES)}"
        )
    return CallStatusChanged(
        call_id=call_id,
        call_sid=required_field(fields, "CallSid"),
        status=status,
        sequence_number=optional_int(fields, "SequenceNumber"),
        call_duration=optional_int(fields, "CallDuration"),
        timestamp=fields.get("Timestamp") or None,
        answered_by=fields.get("AnsweredBy") or None,
        error_code=fields.get("ErrorCode") or None,
        params=dict(fields),
    )


def rfc2822_time(value: str | None) -> datetime | None:
    """A Twilio time (`Tue, 02 Dec 2026 12:00:00 +0000`); None when absent or
    not one (an unreadable start only costs the transcript's alignment)."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def recording_event(call_id: str, fields: Mapping[str, str]) -> CallRecordingUpdated:
    return CallRecordingUpdated(
        call_id=call_id,
        call_sid=fields.get("CallSid") or None,
        recording=Recording(
            sid=required_field(fields, "RecordingSid"),
            url=fields.get("RecordingUrl") or None,
            duration_s=optional_int(fields, "RecordingDuration"),
            status=fields.get("RecordingStatus") or None,
            started_at=rfc2822_time(fields.get("RecordingStartTime")),
        ),
        params=dict(fields),
    )
