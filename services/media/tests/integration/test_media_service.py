"""The media worker in-process against real neighbours: RabbitMQ, an S3 server
process (moto), and the Twilio emulator serving the recording's audio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import SecretStr

from callbot.common.calls import Recording
from callbot.common.contracts import (
    CallRecordingArchived,
    CallRecordingUpdated,
    decode_event,
)
from callbot.common.messaging import EventPublisher, Topology
from callbot.common.messaging.topology import DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER
from callbot.common.object_storage import ObjectLocation, S3ObjectStore, sha256_hex
from callbot.common.settings import Settings
from callbot.emulator import TwilioEmulator
from callbot.media.service import MediaService
from callbot.testkit.s3_server import S3ServerProcess

pytestmark = [pytest.mark.rabbit]

ACCOUNT_SID = "AC" + "0" * 31 + "7"
AUTH_TOKEN = "media-test-token"


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN) as emulator:
        emulator.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi."}]})
        yield emulator


@pytest.fixture
async def http(twilio: TwilioEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=twilio.base_url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        yield http


@pytest.fixture
def media_settings(
    settings: Settings, s3_server: S3ServerProcess, twilio: TwilioEmulator
) -> Settings:
    return settings.model_copy(
        update={
            "s3_endpoint_url": s3_server.endpoint_url,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": SecretStr(AUTH_TOKEN),
            "twilio_api_base_url": twilio.base_url,
            "media_download_attempts": 3,
            "media_retry_backoff_s": 0.05,
            "twilio_delete_recordings_after_archive": True,
        }
    )


class Observed:
    def __init__(self) -> None:
        self.archived: list[CallRecordingArchived] = []
        self.dead: list[AbstractIncomingMessage] = []

    async def on_event(self, message: AbstractIncomingMessage) -> None:
        event = decode_event(message.body)
        if isinstance(event, CallRecordingArchived):
            self.archived.append(event)

    async def on_dead(self, message: AbstractIncomingMessage) -> None:
        self.dead.append(message)


@pytest.fixture
async def observed(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[Observed]:
    channel = await amqp_connection.channel()
    seen = Observed()
    events = await channel.declare_queue(exclusive=True, auto_delete=True)
    await events.bind(topology.events_exchange, routing_key="call.recording_archived")
    await events.consume(seen.on_event, no_ack=True)
    dead = await channel.get_queue(topology.dead_letter_queue)
    await dead.consume(seen.on_dead, no_ack=True)
    yield seen
    await channel.close()


@pytest.fixture
async def media(
    media_settings: Settings, topology: Topology, object_store: S3ObjectStore
) -> AsyncIterator[MediaService]:
    service = MediaService(media_settings)
    await service.start()
    yield service
    await service.stop()


async def _recorded_call(twilio: TwilioEmulator, http: httpx.AsyncClient) -> tuple[str, str]:
    response = await http.post(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
        data={
            "To": "+15005550006",
            "From": "+15005550001",
            "Twiml": "<Response><Say>Hello there, just checking in.</Say><Hangup/></Response>",
            "Record": "true",
        },
    )
    call = await twilio.wait_for_call(response.json()["sid"])
    assert call.recording_sid is not None
    return call.sid, call.recording_sid


async def _announce(
    amqp_connection: AbstractRobustConnection, topology: Topology, call_sid: str, sid: str
) -> CallRecordingUpdated:
    channel = await amqp_connection.channel(publisher_confirms=True)
    publisher = EventPublisher(await channel.get_exchange(topology.events_exchange), app_id="test")
    event = CallRecordingUpdated(
        call_id=f"call-{sid}", call_sid=call_sid, recording=Recording(sid=sid, status="completed")
    )
    await publisher.publish(event)
    await channel.close()
    return event


async def _until(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


async def _recordings(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {item["sid"]: item for item in (await http.get("/_control/recordings")).json()}


async def test_failing_twice_then_succeeding_archives_once_and_deletes_after(
    media: MediaService,
    observed: Observed,
    twilio: TwilioEmulator,
    http: httpx.AsyncClient,
    object_store: S3ObjectStore,
    media_settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
) -> None:
    call_sid, sid = await _recorded_call(twilio, http)
    audio = (await http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}.wav")).content
    await http.post("/_control/recording-faults", json={"fetch": [503, 500]})

    event = await _announce(amqp_connection, topology, call_sid, sid)
    await _until(lambda: observed.archived, "call.recording_archived")

    [archived] = observed.archived
    key = f"calls/{event.call_id}/{sid}.wav"
    assert archived.archive.key == key
    assert (archived.archive.size_bytes, archived.archive.sha256) == (len(audio), sha256_hex(audio))
    assert archived.archive.deleted_at_twilio is True
    bucket = media_settings.s3_recordings_bucket
    assert await object_store.get(ObjectLocation(bucket, key)) == audio
    assert await object_store.keys(bucket) == [key]  # one object, no duplicate
    state = (await _recordings(http))[sid]
    assert (state["fetches"], state["deleted"]) == (1 + 3, True)  # ours, then 2 failures + 1
    assert observed.dead == []


async def test_failing_for_good_is_dead_lettered_with_the_reason_and_kept_at_twilio(
    media: MediaService,
    observed: Observed,
    twilio: TwilioEmulator,
    http: httpx.AsyncClient,
    object_store: S3ObjectStore,
    media_settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
) -> None:
    call_sid, sid = await _recorded_call(twilio, http)
    await http.post("/_control/recording-faults", json={"fetch": [503] * 3})

    event = await _announce(amqp_connection, topology, call_sid, sid)
    await _until(lambda: observed.dead, "the dead-lettered event")

    [dead] = observed.dead
    headers = dead.headers or {}
    assert headers[DEAD_LETTER_QUEUE_HEADER] == topology.media_queue.name
    reason = str(headers[DEAD_LETTER_REASON_HEADER])
    assert f"recording {sid} could not be fetched from Twilio" in reason
    assert "503" in reason
    assert decode_event(dead.body) == event
    state = (await _recordings(http))[sid]
    assert (state["fetches"], state["deleted"]) == (3, False)
    assert await object_store.keys(media_settings.s3_recordings_bucket) == []
    assert observed.archived == []
