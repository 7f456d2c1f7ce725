"""Webhook form parsing, callback URLs and the events built from callbacks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callbot.gateway.domain.callback_events import call_status_event, recording_event
from callbot.gateway.domain.callback_urls import CallbackUrls
from callbot.gateway.domain.webhook_form import MalformedWebhook, parse_webhook_form

FORM = "application/x-www-form-urlencoded"


def test_form_fields_are_decoded_and_blank_values_kept() -> None:
    body = b"CallSid=CA1&SpeechResult=caf%C3%A9+au+lait&Confidence="
    assert parse_webhook_form(body, f"{FORM}; charset=utf-8") == {
        "CallSid": "CA1",
        "SpeechResult": "café au lait",
        "Confidence": "",
    }


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"a=1", "application/json", "expected a application/x-www-form-urlencoded body"),
        (b"a=1", None, "got no Content-Type"),
        (b"a=\xff\xfe", FORM, "not UTF-8"),
        (b"a=1&&b", FORM, "not URL-encoded fields"),
    ],
)
def test_malformed_bodies_say_what_was_expected(
    body: bytes, content_type: str | None, expected: str
) -> None:
    with pytest.raises(MalformedWebhook, match=expected):
        parse_webhook_form(body, content_type)


def test_callback_urls_carry_the_call_id() -> None:
    urls = CallbackUrls("https://gw.test/base")
    assert urls.answer("c1", "a1") == "https://gw.test/base/voice/outbound?call_id=c1&agent_id=a1"
    assert urls.process_speech("c1", 4) == (
        "https://gw.test/base/voice/process-speech?call_id=c1&seq=4"
    )
    assert urls.call_status("c1") == "https://gw.test/base/call-status?call_id=c1"
    assert urls.signed_url("/call-status", "call_id=c1") == urls.call_status("c1")
    assert urls.signed_url("/healthz", "") == "https://gw.test/base/healthz"


def test_status_event_types_twilio_fields_and_keeps_them_all() -> None:
    fields = {
        "CallSid": "CA1",
        "CallStatus": "completed",
        "SequenceNumber": "3",
        "CallDuration": "42",
        "Timestamp": "Tue, 10 Mar 2026 10:00:00 +0000",
        "AnsweredBy": "human",
        "ErrorCode": "",
        "Extra": "x",
    }
    event = call_status_event("c1", fields)
    assert (event.call_sid, event.status, event.sequence_number, event.call_duration) == (
        "CA1",
        "completed",
        3,
        42,
    )
    assert event.timestamp == fields["Timestamp"]
    assert (event.answered_by, event.error_code) == ("human", None)
    assert event.params == fields


def test_status_event_rejects_a_non_integer_sequence_number() -> None:
    with pytest.raises(MalformedWebhook, match="SequenceNumber must be an integer"):
        call_status_event("c1", {"CallSid": "CA1", "CallStatus": "ringing", "SequenceNumber": "x"})
    with pytest.raises(MalformedWebhook, match="no CallStatus"):
        call_status_event("c1", {"CallSid": "CA1"})


@pytest.mark.parametrize("value", ["-1", str(2**63), "1e3", "x"])
def test_counts_must_be_integers_mongodb_can_store(value: str) -> None:
    fields = {"CallSid": "CA1", "CallStatus": "ringing", "SequenceNumber": value}
    with pytest.raises(MalformedWebhook, match="SequenceNumber must be an integer from 0"):
        call_status_event("c1", fields)
    recording = {"RecordingSid": "RE1", "RecordingDuration": value}
    with pytest.raises(MalformedWebhook, match="RecordingDuration must be an integer"):
        recording_event("c1", recording)


def test_status_event_rejects_a_status_twilio_never_sends() -> None:
    with pytest.raises(MalformedWebhook, match="CallStatus 'exploded' is not a Twilio call status"):
        call_status_event("c1", {"CallSid": "CA1", "CallStatus": "exploded"})
    assert call_status_event("c1", {"CallSid": "CA1", "CallStatus": "no-answer"}).status == (
        "no-answer"
    )


def test_recording_event() -> None:
    fields = {
        "CallSid": "CA1",
        "RecordingSid": "RE1",
        "RecordingUrl": "https://api.twilio.com/rec/RE1",
        "RecordingDuration": "17",
        "RecordingStatus": "completed",
        "RecordingStartTime": "Wed, 02 Dec 2026 12:00:03 +0000",
    }
    event = recording_event("c1", fields)
    assert event.recording.model_dump() == {
        "sid": "RE1",
        "url": "https://api.twilio.com/rec/RE1",
        "duration_s": 17,
        "status": "completed",
        "started_at": datetime(2026, 12, 2, 12, 0, 3, tzinfo=UTC),
        "archive": None,  # the media worker's, later
    }
    assert (event.call_sid, event.params) == ("CA1", fields)
    unreadable = recording_event("c1", {**fields, "RecordingStartTime": "soon"})
    assert unreadable.recording.started_at is None  # costs the alignment only
