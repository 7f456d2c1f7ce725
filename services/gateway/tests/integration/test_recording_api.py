"""`GET /v1/calls/{call_id}/recording`: the archived audio, and why not when it cannot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gateway_harness import api_headers, gateway_settings, running_gateway

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument, Recording, RecordingArchive
from callbot.common.messaging import Topology
from callbot.common.object_storage import InMemoryObjectStore, ObjectLocation, sha256_hex
from callbot.common.settings import Settings

pytestmark = [pytest.mark.rabbit]

AUDIO = b"RIFF$\x00\x00\x00WAVEfmt " + bytes(64)
ARCHIVE = RecordingArchive(
    bucket="callbot-recordings",
    key="calls/c1/RE1.wav",
    size_bytes=len(AUDIO),
    sha256=sha256_hex(AUDIO),
    archived_at=datetime(2026, 12, 2, tzinfo=UTC),
)


class Documents:
    def __init__(self, *calls: CallDocument) -> None:
        self.calls = {call.call_id: call for call in calls}

    async def agent(self, agent_id: str) -> Agent | None:
        return None

    async def call(self, call_id: str) -> CallDocument | None:
        return self.calls.get(call_id)


def _call(call_id: str, archive: RecordingArchive | None) -> CallDocument:
    recording = Recording(sid="RE1", status="completed", archive=archive)
    return CallDocument(call_id=call_id, status="completed", recording=recording)


async def test_the_archived_recording_is_served_or_redirected_to(
    settings: Settings, topology: Topology
) -> None:
    objects = InMemoryObjectStore()
    await objects.put(ObjectLocation(ARCHIVE.bucket, ARCHIVE.key), AUDIO, content_type="audio/wav")
    async with running_gateway(gateway_settings(settings)) as (app, client):
        app.state.resources.documents = Documents(_call("c1", ARCHIVE))
        app.state.resources.objects = objects
        served = await client.get("/v1/calls/c1/recording", headers=api_headers())
        redirected = await client.get(
            "/v1/calls/c1/recording", params={"redirect": "true"}, headers=api_headers()
        )
        anonymous = await client.get("/v1/calls/c1/recording")
    assert (served.status_code, served.content) == (200, AUDIO)
    assert served.headers["content-type"] == "audio/wav"
    assert served.headers["x-checksum-sha256"] == ARCHIVE.sha256
    assert redirected.status_code == 307
    assert redirected.headers["location"].startswith("memory://callbot-recordings/calls/c1/")
    assert anonymous.status_code == 401


async def test_no_call_no_archive_gone_and_storage_away_each_say_why(
    settings: Settings, topology: Topology
) -> None:
    objects = InMemoryObjectStore()
    async with running_gateway(gateway_settings(settings)) as (app, client):
        app.state.resources.documents = Documents(_call("c1", ARCHIVE), _call("c2", None))
        app.state.resources.objects = objects

        async def get(call_id: str) -> tuple[int, str]:
            response = await client.get(f"/v1/calls/{call_id}/recording", headers=api_headers())
            return response.status_code, response.json()["detail"]

        unknown = await get("nope")
        not_archived = await get("c2")
        gone = await get("c1")
        objects.unavailable = True
        away = await get("c1")
    assert unknown == (404, "call 'nope' not found")
    assert not_archived[0] == 404
    assert "no archived recording yet" in not_archived[1]
    assert gone == (404, f"the archived recording {ARCHIVE.uri} is gone from object storage")
    assert away == (503, "object storage is unreachable; retry later")
