"""Twilio's REST shapes: create-call parameters in, Call resources and errors out.

Pure: no I/O. Field names, error codes and messages follow Twilio's API 2010-04-01.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from callbot.emulator.records import CallRecord

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_HTTP_METHODS = ("GET", "POST")
_MACHINE_DETECTION_MODES = ("Enable", "DetectMessageEnd")
_STATUS_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
_RECORDING_EVENTS = frozenset({"in-progress", "completed", "absent"})
# Twilio's limits on ringing time and call length.
_MAX_TIMEOUT_S = 600
_DEFAULT_TIMEOUT_S = 60
_DEFAULT_TIME_LIMIT_S = 4 * 60 * 60

FormFields = Mapping[str, Sequence[str]]


class TwilioApiError(Exception):
    """An error answered in Twilio's JSON error shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def authentication_error() -> TwilioApiError:
    return TwilioApiError(401, 20003, "Authenticate")


def not_found(path: str) -> TwilioApiError:
    return TwilioApiError(404, 20404, f"The requested resource {path} was not found")


def new_sid(prefix: str) -> str:
    """A Twilio SID: two-letter prefix and 32 hex digits, e.g. ``CA`` for calls."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime) -> str:
    """Twilio's date format: ``Tue, 25 Nov 2025 01:35:14 +0000``."""
    return format_datetime(moment)


@dataclass(frozen=True)
class CallRequest:
    """What ``calls.create`` asked for, checked the way Twilio checks it."""

    to: str
    from_: str
    url: str | None
    twiml: str | None
    method: str
    status_callback: str | None
    status_callback_events: frozenset[str]
    status_callback_method: str
    machine_detection: str | None
    async_amd: bool
    async_amd_status_callback: str | None
    async_amd_status_callback_method: str
    record: bool
    recording_status_callback: str | None
    recording_status_callback_events: frozenset[str]
    recording_status_callback_method: str
    timeout_s: int
    time_limit_s: int


def parse_call_request(form: FormFields) -> CallRequest:
    """The create parameters as the twilio library sends them (form fields, repeated events)."""
    to = _single(form, "To")
    from_ = _single(form, "From")
    if not to:
        raise TwilioApiError(400, 21201, "No 'To' number is specified")
    if not from_:
        raise TwilioApiError(400, 21213, "No 'From' number is specified")
    if not _E164.match(to):
        raise TwilioApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not _E164.match(from_):
        raise TwilioApiError(
            400,
            21212,
            f"The 'From' number {from_} is not a valid phone number, shortcode, "
            "or alphanumeric sender ID.",
        )
    if _single(form, "ApplicationSid"):
        raise TwilioApiError(
            400, 21205, "The emulator does not host Applications: pass 'Url' or 'Twiml' instead"
        )
    url = _url(form, "Url")
    twiml = _single(form, "Twiml")
    if url is None and not twiml:
        raise TwilioApiError(400, 21205, "Url parameter is required: pass 'Url' or 'Twiml'")
    status_callback = _url(form, "StatusCallback")
    return CallRequest(
        to=to,
        from_=from_,
        url=url,
        # Twilio ignores Twiml when Url is given too.
        twiml=None if url else twiml,
        method=_method(form, "Method"),
        status_callback=status_callback,
        status_callback_events=_events(form, "StatusCallbackEvent", _STATUS_EVENTS),
        status_callback_method=_method(form, "StatusCallbackMethod"),
        machine_detection=_choice(form, "MachineDetection", _MACHINE_DETECTION_MODES),
        async_amd=(_single(form, "AsyncAmd") or "false").lower() == "true",
        async_amd_status_callback=_url(form, "AsyncAmdStatusCallback"),
        async_amd_status_callback_method=_method(form, "AsyncAmdStatusCallbackMethod"),
        record=(_single(form, "Record") or "false").lower() == "true",
        recording_status_callback=_url(form, "RecordingStatusCallback"),
        recording_status_callback_events=_events(
            form, "RecordingStatusCallbackEvent", _RECORDING_EVENTS
        ),
        recording_status_callback_method=_method(form, "RecordingStatusCallbackMethod"),
        timeout_s=_seconds(form, "Timeout", _DEFAULT_TIMEOUT_S, maximum=_MAX_TIMEOUT_S),
        time_limit_s=_seconds(form, "TimeLimit", _DEFAULT_TIME_LIMIT_S, maximum=None),
    )


@dataclass(frozen=True)
class CallUpdate:
    """What ``calls(sid).update`` asked for: new instructions, or a hang-up."""

    url: str | None
    twiml: str | None
    method: str
    status: str | None


def parse_call_update(form: FormFields) -> CallUpdate:
    status = _choice(form, "Status", ("completed", "canceled"))
    url = _url(form, "Url")
    twiml = _single(form, "Twiml")
    if status is None and url is None and not twiml:
        raise TwilioApiError(
            400, 20001, "Nothing to update: pass 'Twiml', 'Url' or 'Status' (completed/canceled)"
        )
    return CallUpdate(
        url=url, twiml=None if url else twiml, method=_method(form, "Method"), status=status
    )


def call_resource(call: CallRecord) -> dict[str, Any]:
    """The Call resource JSON, as ``GET /2010-04-01/Accounts/{AC}/Calls/{CA}.json`` shows it."""
    base = f"/{API_VERSION}/Accounts/{call.account_sid}/Calls/{call.sid}"
    return {
        "account_sid": call.account_sid,
        "annotation": None,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.created_at),
        "date_updated": rfc2822(call.updated_at),
        "direction": "outbound-api",
        "duration": None if call.duration_s is None else str(call.duration_s),
        "end_time": None if call.ended_at is None else rfc2822(call.ended_at),
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": call.from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": None if call.answered_at is None else rfc2822(call.answered_at),
        "status": call.status,
        "subresource_uris": {
            name: f"{base}/{resource}.json"
            for name, resource in (
                ("feedback", "Feedback"),
                ("user_defined_messages", "UserDefinedMessages"),
                ("notifications", "Notifications"),
                ("recordings", "Recordings"),
                ("streams", "Streams"),
                ("payments", "Payments"),
                ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                ("siprec", "Siprec"),
                ("events", "Events"),
                ("feedback_summaries", "FeedbackSummaries"),
            )
        },
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def _single(form: FormFields, name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def _url(form: FormFields, name: str) -> str | None:
    value = _single(form, name)
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise TwilioApiError(
            400, 21205, f"{name} is not a valid URL: {value!r} (expected an absolute http(s) URL)"
        )
    return value


def _method(form: FormFields, name: str) -> str:
    method = (_single(form, name) or "POST").upper()
    if method not in _HTTP_METHODS:
        raise TwilioApiError(400, 20001, f"{name} must be GET or POST, got {method!r}")
    return method


def _choice(form: FormFields, name: str, allowed: Sequence[str]) -> str | None:
    value = _single(form, name)
    if value is None:
        return None
    if value not in allowed:
        raise TwilioApiError(
            400, 20001, f"{name} must be one of {', '.join(allowed)}; got {value!r}"
        )
    return value


def _events(form: FormFields, name: str, allowed: frozenset[str]) -> frozenset[str]:
    # The library repeats the field per event; curl users often send one space-separated value.
    events = frozenset(event for value in form.get(name, ()) for event in value.split())
    if not events:
        return frozenset({"completed"})
    unknown = events - allowed
    if unknown:
        raise TwilioApiError(
            400,
            20001,
            f"{name} has unknown events {sorted(unknown)}; allowed: {sorted(allowed)}",
        )
    return events


def _seconds(form: FormFields, name: str, default: int, *, maximum: int | None) -> int:
    raw = _single(form, name)
    if raw is None:
        return default
    try:
        seconds = int(raw)
    except ValueError:
        raise TwilioApiError(400, 20001, f"{name} must be a whole number of seconds") from None
    if seconds < 1 or (maximum is not None and seconds > maximum):
        limit = f"1 to {maximum}" if maximum is not None else "at least 1"
        raise TwilioApiError(400, 20001, f"{name} must be {limit} seconds, got {seconds}")
    return seconds
