"""Status and recording callbacks become events, answered 204 once confirmed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import EventTap, gateway_settings, post_webhook, running_gateway
from pymongo.errors import PyMongoError

from callbot.common.contracts import CallRecordingUpdated, CallStatusChanged
from callbot.common.messaging import Topology
from callbot.common.settings import Settings

pytestmark = pytest.mark.rabbit
# Callbacks for the calls `placed_calls` stores (any other call id is an orphan).
placed = pytest.mark.usefixtures("placed_calls")


@pytest.fixture
async def client(settings: Settings, topology: Topology) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(gateway_settings(settings)) as (_app, client):
        yield client


@pytest.mark.mongo
@placed
async def test_call_status_publishes_every_field(client: httpx.AsyncClient, tap: EventTap) -> None:
    fields = {
        "CallSid": "CA1",
        "AccountSid": "AC1",
        "CallStatus": "completed",
        "SequenceNumber": "4",
        "CallDuration": "63",
        "Timestamp": "Tue, 10 Mar 2026 10:01:03 +0000",
        "AnsweredBy": "human",
        "ErrorCode": "",
        "CallbackSource": "call-progress-events",
    }
    response = await post_webhook(client, "/call-status?call_id=c1", fields)
    assert response.status_code == 204
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallStatusChanged)
    assert (event.call_id, event.call_sid, event.status) == ("c1", "CA1", "completed")
    assert (event.sequence_number, event.call_duration) == (4, 63)
    assert (event.timestamp, event.answered_by, event.error_code) == (
        fields["Timestamp"],
        "human",
        None,
    )
    assert event.params == fields


@pytest.mark.mongo
@placed
async def test_failed_call_status_carries_the_error_code(
    client: httpx.AsyncClient, tap: EventTap
) -> None:
    fields = {"CallSid": "CA2", "CallStatus": "failed", "SequenceNumber": "1", "ErrorCode": "32009"}
    assert (await post_webhook(client, "/call-status?call_id=c2", fields)).status_code == 204
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallStatusChanged)
    assert (event.status, event.error_code) == ("failed", "32009")


@pytest.mark.mongo
@placed
async def test_recording_status_publishes_the_recording(
    client: httpx.AsyncClient, tap: EventTap
) -> None:
    fields = {
        "CallSid": "CA1",
        "RecordingSid": "RE1",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "RecordingDuration": "61",
        "RecordingStatus": "completed",
        "RecordingChannels": "1",
    }
    response = await post_webhook(client, "/recording-status?call_id=c1", fields)
    assert response.status_code == 204
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallRecordingUpdated)
    assert (event.call_id, event.call_sid) == ("c1", "CA1")
    assert (event.recording.sid, event.recording.duration_s) == ("RE1", 61)
    assert (event.recording.url, event.recording.status) == (fields["RecordingUrl"], "completed")
    assert event.params == fields


async def test_health_readiness_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json()["status"] == "ready"
    await post_webhook(client, "/call-status?call_id=c1", {"CallSid": "CA1"})
    metrics = (await client.get("/metrics")).text
    assert (
        'callbot_gateway_requests_total{endpoint="/call-status",method="POST",status="400"}'
        in metrics
    )
    assert 'callbot_gateway_request_seconds_count{endpoint="/readyz"}' in metrics
    assert "callbot_rpc_seconds" in metrics


async def test_readiness_names_mongodb_once_a_read_failed(settings: Settings) -> None:
    # The fixture's MongoDB is 127.0.0.1:1, where nothing answers.
    configured = gateway_settings(settings, mongodb_timeout_ms=200)
    async with running_gateway(configured) as (app, client):
        with pytest.raises(PyMongoError):
            await app.state.resources.mongo.admin.command("ping")
        answer = (await client.get("/readyz")).json()
    # Webhooks need only the broker: still ready, but the missing database is named.
    assert answer == {"status": "ready", "mongodb": "unreachable at 127.0.0.1:1: /v1 answers 503"}
