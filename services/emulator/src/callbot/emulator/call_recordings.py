"""A call's list of Twilio Recording resources, as `GET /Calls/{sid}/Recordings.json`
shows it (one recording is served by `recordings`). Pure: no I/O.

The emulator makes one recording per recorded call that was answered; it
exists once the call has ended (when Twilio would send its recording callback).
"""

from __future__ import annotations

from typing import Any

from callbot.emulator.records import CallRecord
from callbot.emulator.resources import API_VERSION, rfc2822


def recording_resources(call: CallRecord) -> list[dict[str, Any]]:
    """The call's recordings: none, or the one made while it was answered."""
    if call.recording_sid is None or call.answered_at is None:
        return []
    uri = f"/{API_VERSION}/Accounts/{call.account_sid}/Recordings/{call.recording_sid}.json"
    return [
        {
            "account_sid": call.account_sid,
            "api_version": API_VERSION,
            "call_sid": call.sid,
            "channels": 1,
            "conference_sid": None,
            "date_created": rfc2822(call.ended_at or call.updated_at),
            "date_updated": rfc2822(call.ended_at or call.updated_at),
            "duration": str(call.duration_s or 0),
            "encryption_details": None,
            "error_code": None,
            "media_url": f"https://api.twilio.com{uri.removesuffix('.json')}",
            "price": None,
            "price_unit": "USD",
            "sid": call.recording_sid,
            "source": "OutboundAPI",
            "start_time": rfc2822(call.answered_at),
            "status": "completed",
            "subresource_uris": {},
            "uri": uri,
        }
    ]


def recordings_page(call: CallRecord, path: str) -> dict[str, Any]:
    """One page holding every recording of the call, in Twilio's list shape."""
    recordings = recording_resources(call)
    return {
        "end": max(len(recordings) - 1, 0),
        "first_page_uri": f"{path}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "recordings": recordings,
        "start": 0,
        "uri": f"{path}?PageSize=50&Page=0",
    }
