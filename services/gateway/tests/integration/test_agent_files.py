"""An agent's files at gateway: checked when the agent is saved (422 naming
each, 503 when object storage is away), and its recorded lines answered with
`<Play>` of a presigned URL, or spoken when no URL can be made. Object storage
is the in-memory fake (the S3 server process runs in tests/e2e)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI
from gateway_harness import (
    api_headers,
    demo_agent,
    gateway_settings,
    post_webhook,
    reply_for,
    running_gateway,
    scripted_dialog,
)

from callbot.common.contracts import AgentSave, DialogRequest, Message
from callbot.common.messaging import Topology
from callbot.common.object_storage import InMemoryObjectStore, ObjectLocation
from callbot.common.settings import Settings
from callbot.gateway.agent_audio import AgentAudioUrls

pytestmark = pytest.mark.rabbit

BUCKET = "acme-agent-files"
VOICEMAIL = f"s3://{BUCKET}/acme/voicemail.wav"


@pytest.fixture
def objects() -> InMemoryObjectStore:
    store = InMemoryObjectStore()
    store.objects[ObjectLocation(BUCKET, "acme/voicemail.wav")] = (b"RIFF....WAVE", "audio/wav")
    store.objects[ObjectLocation(BUCKET, "acme/hours.md")] = (b"# Hours\nOpen at 9.", "text/md")
    return store


@pytest.fixture
async def gateway(
    settings: Settings, topology: Topology, objects: InMemoryObjectStore
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    configured = gateway_settings(settings, s3_agent_files_bucket=BUCKET)
    async with running_gateway(configured) as (app, client):
        app.state.resources.objects = objects
        app.state.resources.agent_audio = AgentAudioUrls(objects, expires_s=900)
        yield app, client


def _definition(**files: Any) -> dict[str, Any]:
    agent = demo_agent().model_dump(mode="json", exclude={"agent_id", "version"})
    return {**agent, **files}


async def test_an_agent_whose_files_can_be_used_is_saved_with_them(
    gateway: tuple[FastAPI, httpx.AsyncClient], saved_agents: list[AgentSave]
) -> None:
    _app, client = gateway
    body = _definition(
        knowledge=[f"s3://{BUCKET}/acme/hours.md"], audio={"voicemail_message": VOICEMAIL}
    )
    response = await client.put("/v1/agents/acme", json=body, headers=api_headers())
    assert response.status_code == 200, response.text
    [saved] = saved_agents
    assert saved.agent.knowledge == (f"s3://{BUCKET}/acme/hours.md",)
    assert saved.agent.audio.voicemail_message == VOICEMAIL


async def test_unusable_audio_files_are_a_422_naming_each_line(
    gateway: tuple[FastAPI, httpx.AsyncClient], saved_agents: list[AgentSave]
) -> None:
    _app, client = gateway
    audio = {
        "greeting": f"s3://{BUCKET}/acme/missing.wav",
        "voicemail_message": f"s3://{BUCKET}/acme/hours.md",
        "goodbye_message": "s3://callbot-recordings/calls/c1/RE1.wav",
    }
    response = await client.put(
        "/v1/agents/acme", json=_definition(audio=audio), headers=api_headers()
    )
    assert response.status_code == 422, response.text
    errors = {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}
    assert "no such object; upload it first" in errors[("body", "audio", "greeting")]
    assert "Twilio plays" in errors[("body", "audio", "voicemail_message")]
    assert "not in the agent files bucket" in errors[("body", "audio", "goodbye_message")]
    unknown = await client.put(
        "/v1/agents/acme",
        json=_definition(audio={"hold_music": VOICEMAIL}),
        headers=api_headers(),
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "audio", "hold_music"]
    assert saved_agents == []


async def test_object_storage_away_at_save_time_is_a_503_and_nothing_is_saved(
    gateway: tuple[FastAPI, httpx.AsyncClient],
    objects: InMemoryObjectStore,
    saved_agents: list[AgentSave],
) -> None:
    _app, client = gateway
    objects.unavailable = True
    body = _definition(knowledge=[f"s3://{BUCKET}/acme/hours.md"])
    response = await client.put("/v1/agents/acme", json=body, headers=api_headers())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "nothing was saved: retry" in response.json()["detail"]
    assert saved_agents == []


async def test_a_recorded_line_is_played_or_spoken_when_no_url_can_be_made(
    gateway: tuple[FastAPI, httpx.AsyncClient],
    objects: InMemoryObjectStore,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
) -> None:
    _app, client = gateway

    async def voicemail(request: DialogRequest) -> Message:
        reply = reply_for(request, "Hello, this is Acme.", action="hangup")
        return reply.model_copy(update={"play": VOICEMAIL, "ended_by": "voicemail"})

    fields = {"CallSid": "CA1", "AccountSid": "AC1", "AnsweredBy": "machine_end_beep"}
    async with scripted_dialog(amqp_connection, topology, voicemail):
        played = await post_webhook(client, "/voice/outbound?call_id=c1&agent_id=acme", fields)
        objects.unavailable = True
        spoken = await post_webhook(client, "/voice/outbound?call_id=c2&agent_id=acme", fields)

    play, hangup = list(ET.fromstring(played.text))
    assert (play.tag, play.text, hangup.tag) == (
        "Play",
        f"memory://{BUCKET}/acme/voicemail.wav?expires=900",
        "Hangup",
    )
    say, _ = list(ET.fromstring(spoken.text))
    assert (say.tag, say.text) == ("Say", "Hello, this is Acme.")
