"""Twilio's Recordings resource: real audio behind the account's basic auth, and deletion.

A recording exists once its call ended with ``Record=true``: its audio is a
short WAV (a 440 Hz tone, as long as the call, at most ``MAX_AUDIO_S``)
generated with the standard library, the same bytes on every fetch. With
``RecordingChannels=dual`` it has two channels, as Twilio's: the callee (what
Twilio heard) on the first at 440 Hz, the agent (what Twilio played) on the
second at 660 Hz.
``GET .../Recordings/{RE}.wav`` (or without extension) serves it,
``GET .../Recordings/{RE}.json`` describes it, ``DELETE .../Recordings/{RE}.json``
deletes it (then every request answers 404, as at Twilio).

``POST /_control/recording-faults`` scripts the answers of the next media
fetches (``{"fetch": [503, 503]}``: two failures, then the audio again);
``GET /_control/recordings`` lists every recording with its fetches and
whether it was deleted.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from callbot.emulator.records import CallRecord
from callbot.emulator.resources import API_VERSION, TwilioApiError, not_found, rfc2822
from callbot.emulator.switchboard import Switchboard

SAMPLE_RATE = 8000
MAX_AUDIO_S = 3
_TONE_HZ = 440.0
_AGENT_TONE_HZ = 660.0

Authenticate = Callable[[Request, str], None]


def tone_wav(seconds: int, *, channels: int = 1) -> bytes:
    """A 16-bit 8 kHz WAV of a tone per channel (440 Hz, then 660 Hz): what a
    call recording sounds like here. Samples of the channels are interleaved."""
    frames = SAMPLE_RATE * seconds
    tones = (_TONE_HZ, _AGENT_TONE_HZ)[:channels]
    samples = [
        int(8000 * math.sin(2 * math.pi * tone * index / SAMPLE_RATE))
        for index in range(frames)
        for tone in tones
    ]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(2)
        audio.setframerate(SAMPLE_RATE)
        audio.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return buffer.getvalue()


class RecordingFaults(BaseModel):
    """``POST /_control/recording-faults``: HTTP statuses the next media fetches answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fetch: list[int] = Field(default_factory=list)


@dataclass
class RecordingLibrary:
    switchboard: Switchboard
    deleted: set[str] = field(default_factory=set)
    fetches: dict[str, int] = field(default_factory=dict)
    fetch_faults: deque[int] = field(default_factory=deque)

    def call_of(self, recording_sid: str) -> CallRecord | None:
        if recording_sid in self.deleted:
            return None
        return next(
            (
                player.record
                for player in self.switchboard.players.values()
                if player.record.recording_sid == recording_sid
            ),
            None,
        )

    def audio(self, call: CallRecord) -> bytes:
        seconds = min(max(call.duration_s or 1, 1), MAX_AUDIO_S)
        return tone_wav(seconds, channels=call.recording_channels)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {
                "sid": player.record.recording_sid,
                "call_sid": player.record.sid,
                "deleted": player.record.recording_sid in self.deleted,
                "fetches": self.fetches.get(player.record.recording_sid or "", 0),
            }
            for player in self.switchboard.players.values()
            if player.record.recording_sid is not None
        ]


def recordings_router(switchboard: Switchboard, authenticate: Authenticate) -> APIRouter:
    """The routes; include them before the app's catch-all for unknown resources."""
    library = RecordingLibrary(switchboard)
    router = APIRouter()
    path = f"/{API_VERSION}/Accounts/{{account_sid}}/Recordings/{{recording_sid}}"

    def find(request: Request, account_sid: str, recording_sid: str) -> CallRecord:
        authenticate(request, account_sid)
        call = library.call_of(recording_sid)
        if call is None:
            raise not_found(request.url.path)
        return call

    @router.get(path + ".json")
    async def describe(request: Request, account_sid: str, recording_sid: str) -> dict[str, Any]:
        call = find(request, account_sid, recording_sid)
        return {
            "account_sid": call.account_sid,
            "call_sid": call.sid,
            "sid": recording_sid,
            "duration": str(call.duration_s or 0),
            "status": "completed",
            "date_created": rfc2822(call.answered_at or call.created_at),
            "uri": f"/{API_VERSION}/Accounts/{call.account_sid}/Recordings/{recording_sid}.json",
        }

    @router.delete(path + ".json", status_code=204)
    async def delete(request: Request, account_sid: str, recording_sid: str) -> Response:
        find(request, account_sid, recording_sid)
        library.deleted.add(recording_sid)
        return Response(status_code=204)

    async def media(request: Request, account_sid: str, recording_sid: str) -> Response:
        call = find(request, account_sid, recording_sid)
        library.fetches[recording_sid] = library.fetches.get(recording_sid, 0) + 1
        if library.fetch_faults:
            status = library.fetch_faults.popleft()
            raise TwilioApiError(status, 20500, f"scripted recording fetch failure ({status})")
        return Response(library.audio(call), media_type="audio/x-wav")

    router.add_api_route(path + ".wav", media, methods=["GET"])
    router.add_api_route(path, media, methods=["GET"])

    @router.post("/_control/recording-faults", status_code=204)
    async def script_faults(faults: RecordingFaults) -> None:
        library.fetch_faults.extend(faults.fetch)

    @router.get("/_control/recordings")
    async def list_recordings() -> list[dict[str, Any]]:
        return library.listing()

    return router
