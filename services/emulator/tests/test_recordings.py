"""Recordings as Twilio serves them: real WAV audio behind basic auth, scripted
fetch failures, and deletion."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import httpx
import pytest

from callbot.emulator import TwilioEmulator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "emulator-test-auth-token"
RECORDINGS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings"


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN) as emulator:
        emulator.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi."}]})
        yield emulator


@pytest.fixture
async def http(twilio: TwilioEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=twilio.base_url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        yield http


async def _recorded_call(twilio: TwilioEmulator, http: httpx.AsyncClient) -> str:
    response = await http.post(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
        data={
            "To": "+15005550006",
            "From": "+15005550001",
            "Twiml": "<Response><Say>Hello there, just checking in.</Say><Hangup/></Response>",
            "Record": "true",
        },
    )
    assert response.status_code == 201, response.text
    call = await twilio.wait_for_call(response.json()["sid"])
    assert call.recording_sid is not None
    return call.recording_sid


async def test_a_recording_is_real_wav_audio_behind_basic_auth(
    twilio: TwilioEmulator, http: httpx.AsyncClient
) -> None:
    sid = await _recorded_call(twilio, http)

    media = await http.get(f"{RECORDINGS}/{sid}.wav")
    again = await http.get(f"{RECORDINGS}/{sid}")
    anonymous = await http.get(f"{RECORDINGS}/{sid}.wav", auth=None)
    wrong = await http.get(f"{RECORDINGS}/{sid}.wav", auth=(ACCOUNT_SID, "not-the-token"))

    assert (media.status_code, media.headers["content-type"]) == (200, "audio/x-wav")
    with wave.open(io.BytesIO(media.content)) as audio:
        assert (audio.getnchannels(), audio.getframerate()) == (1, 8000)
        assert audio.getnframes() == 2 * 8000  # the call lasted two seconds
    assert again.content == media.content
    assert (anonymous.status_code, wrong.status_code) == (401, 401)


async def test_scripted_fetch_failures_come_first_then_the_audio(
    twilio: TwilioEmulator, http: httpx.AsyncClient
) -> None:
    sid = await _recorded_call(twilio, http)
    scripted = await http.post("/_control/recording-faults", json={"fetch": [503, 500]})

    statuses = [(await http.get(f"{RECORDINGS}/{sid}.wav")).status_code for _ in range(3)]

    assert scripted.status_code == 204
    assert statuses == [503, 500, 200]
    listing = (await http.get("/_control/recordings")).json()
    assert listing == [
        {"sid": sid, "call_sid": listing[0]["call_sid"], "deleted": False, "fetches": 3}
    ]


async def test_a_deleted_recording_is_gone(twilio: TwilioEmulator, http: httpx.AsyncClient) -> None:
    sid = await _recorded_call(twilio, http)

    deleted = await http.delete(f"{RECORDINGS}/{sid}.json")
    media = await http.get(f"{RECORDINGS}/{sid}.wav")
    second_delete = await http.delete(f"{RECORDINGS}/{sid}.json")

    assert (deleted.status_code, media.status_code, second_delete.status_code) == (204, 404, 404)
    assert (await http.get("/_control/recordings")).json()[0]["deleted"] is True
