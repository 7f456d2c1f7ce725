"""Create/update parameters, Call resources, signatures and the call clock (no HTTP)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from twilio.request_validator import RequestValidator

from callbot.emulator.player import CallClock, detected_answerer
from callbot.emulator.records import CallRecord
from callbot.emulator.resources import (
    TwilioApiError,
    call_resource,
    parse_call_request,
    parse_call_update,
    rfc2822,
)
from callbot.emulator.webhooks import request_target, twilio_signature

VALID = {"To": ["+15005550006"], "From": ["+15005550001"], "Url": ["https://app.example/v"]}


def test_create_parameters_with_defaults() -> None:
    request = parse_call_request(VALID)

    assert (request.to, request.from_, request.url, request.method) == (
        "+15005550006",
        "+15005550001",
        "https://app.example/v",
        "POST",
    )
    assert request.status_callback is None
    # Without StatusCallbackEvent Twilio reports only the end of the call.
    assert request.status_callback_events == frozenset({"completed"})
    assert (request.machine_detection, request.async_amd, request.record) == (None, False, False)
    assert (request.timeout_s, request.time_limit_s) == (60, 14400)


def test_events_may_repeat_or_be_space_separated() -> None:
    request = parse_call_request(
        {**VALID, "StatusCallbackEvent": ["initiated ringing", "answered"], "Record": ["true"]}
    )

    assert request.status_callback_events == {"initiated", "ringing", "answered"}
    assert request.record is True


def test_url_wins_over_twiml_and_twiml_alone_is_enough() -> None:
    assert parse_call_request({**VALID, "Twiml": ["<Response/>"]}).twiml is None
    inline = parse_call_request({**VALID, "Url": [], "Twiml": ["<Response/>"]})
    assert (inline.url, inline.twiml) == (None, "<Response/>")


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"To": []}, 21201, "No 'To' number is specified"),
        ({"From": []}, 21213, "No 'From' number is specified"),
        ({"To": ["5551234"]}, 21211, "The 'To' number 5551234 is not a valid phone number."),
        ({"From": ["nobody"]}, 21212, "The 'From' number nobody is not a valid phone number"),
        ({"Url": []}, 21205, "Url parameter is required"),
        ({"Url": ["ftp://x.example/v"]}, 21205, "Url is not a valid URL"),
        ({"StatusCallback": ["/relative"]}, 21205, "StatusCallback is not a valid URL"),
        ({"MachineDetection": ["Maybe"]}, 20001, "MachineDetection must be one of"),
        ({"Method": ["PUT"]}, 20001, "Method must be GET or POST"),
        ({"StatusCallbackEvent": ["hung-up"]}, 20001, "unknown events ['hung-up']"),
        ({"Timeout": ["601"]}, 20001, "Timeout must be 1 to 600 seconds"),
        ({"TimeLimit": ["soon"]}, 20001, "TimeLimit must be a whole number"),
        ({"ApplicationSid": ["AP123"]}, 21205, "does not host Applications"),
    ],
)
def test_invalid_create_parameters_get_twilios_errors(
    change: dict[str, list[str]], code: int, message: str
) -> None:
    with pytest.raises(TwilioApiError) as raised:
        parse_call_request({**VALID, **change})

    assert (raised.value.status, raised.value.code) == (400, code)
    assert message in raised.value.message
    assert raised.value.body()["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


def test_update_needs_something_to_do() -> None:
    assert parse_call_update({"Status": ["completed"]}).status == "completed"
    assert parse_call_update({"Twiml": ["<Response/>"]}).twiml == "<Response/>"
    with pytest.raises(TwilioApiError, match="Nothing to update"):
        parse_call_update({})
    with pytest.raises(TwilioApiError, match="Status must be one of"):
        parse_call_update({"Status": ["paused"]})


def test_call_resource_has_twilios_fields() -> None:
    created = datetime(2025, 11, 25, 1, 35, 14, tzinfo=UTC)
    record = CallRecord(
        sid="CA" + "1" * 32,
        account_sid="AC" + "2" * 32,
        to="+15005550006",
        from_="+15005550001",
        scenario="demo",
        created_at=created,
        updated_at=created,
        request={},
    )

    resource = call_resource(record)

    assert resource["date_created"] == "Tue, 25 Nov 2025 01:35:14 +0000"
    assert (resource["status"], resource["direction"], resource["duration"]) == (
        "queued",
        "outbound-api",
        None,
    )
    assert resource["from"] == "+15005550001"
    assert resource["subresource_uris"]["recordings"] == (
        f"/2010-04-01/Accounts/{record.account_sid}/Calls/{record.sid}/Recordings.json"
    )
    assert rfc2822(created) == resource["date_created"]


def test_signatures_validate_with_twilios_validator() -> None:
    validator = RequestValidator("secret")
    params = {"CallSid": "CA1", "SpeechResult": "ada@example.com", "Confidence": "0.9"}
    url = "https://gateway.example/voice/process-speech?call_id=c-1&seq=3"

    assert validator.validate(url, params, twilio_signature("secret", url, params))
    assert not validator.validate(url, params, twilio_signature("other", url, params))

    target, form = request_target(url, "GET", params)
    assert form == {}
    assert target.startswith(url + "&CallSid=CA1&SpeechResult=ada%40example.com")
    assert validator.validate(target, {}, twilio_signature("secret", target, form))


def test_machine_detection_enable_reports_machines_at_the_start() -> None:
    assert detected_answerer("Enable", "machine_end_beep") == "machine_start"
    assert detected_answerer("DetectMessageEnd", "machine_end_beep") == "machine_end_beep"
    assert detected_answerer("Enable", "human") == "human"


async def test_clock_counts_emulated_seconds_and_partial_advances() -> None:
    clock = CallClock(speed=1000)
    await clock.advance(2.0)
    await clock.advance(3.0)
    assert clock.now() == 5.0

    slow = CallClock(speed=1)
    advancing = asyncio.create_task(slow.advance(100))
    await asyncio.sleep(0.05)
    advancing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await advancing
    assert 0.0 < slow.now() < 5.0
