"""What every Twilio webhook refuses: bad or missing signatures (403, nothing
published, dialog not asked), oversized (413) and malformed (400) bodies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from gateway_harness import (
    PUBLIC_URL,
    EventTap,
    gateway_settings,
    post_webhook,
    reply_for,
    running_gateway,
    scripted_dialog,
    sign,
)

from callbot.common.contracts import DialogRequest, Message
from callbot.common.messaging import Topology
from callbot.common.settings import Settings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo, pytest.mark.usefixtures("placed_calls")]

WEBHOOKS = [
    "/voice/outbound?call_id=c1&agent_id=survey",
    "/voice/process-speech?call_id=c1&seq=1",
    "/voice/amd-status?call_id=c1&agent_id=survey",
    "/call-status?call_id=c1",
    "/recording-status?call_id=c1",
]
FIELDS = {
    "CallSid": "CA1",
    "CallStatus": "completed",
    "AnsweredBy": "machine_end_beep",
    "RecordingSid": "RE1",
    "SpeechResult": "hello",
}


@pytest.fixture
async def client(settings: Settings, topology: Topology) -> AsyncIterator[httpx.AsyncClient]:
    configured = gateway_settings(settings, max_webhook_body_bytes=2048)
    async with running_gateway(configured) as (_app, client):
        yield client


@pytest.fixture
async def dialog_requests(
    amqp_connection: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[list[DialogRequest]]:
    async def answer(request: DialogRequest) -> Message:
        return reply_for(request, "hi")

    async with scripted_dialog(amqp_connection, topology, answer) as requests:
        yield requests


@pytest.mark.parametrize("path", WEBHOOKS)
@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "bm90IGEgc2lnbmF0dXJl",
        sign(PUBLIC_URL + "/voice/outbound?call_id=OTHER&agent_id=survey", FIELDS),
    ],
    ids=["missing", "empty", "wrong", "another-url"],
)
async def test_bad_signature_is_403_and_nothing_happens(
    client: httpx.AsyncClient,
    tap: EventTap,
    dialog_requests: list[DialogRequest],
    path: str,
    signature: str | None,
) -> None:
    response = await post_webhook(client, path, FIELDS, signature=signature)
    assert response.status_code == 403, response.text
    await tap.assert_quiet()
    assert dialog_requests == []


@pytest.mark.parametrize(
    ("fields", "signature", "status_code", "reason"),
    [
        (FIELDS, None, 403, "missing X-Twilio-Signature header"),
        (FIELDS, "bm90IGEgc2lnbmF0dXJl", 403, "X-Twilio-Signature does not match"),
        ({"CallSid": "CA1", "Junk": "x" * 4000}, "sign", 413, "larger than 2048 bytes"),
    ],
    ids=["unsigned", "bad-signature", "too-large"],
)
async def test_a_rejected_webhook_is_a_warning_with_path_reason_and_call_id(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, str],
    signature: str | None,
    status_code: int,
    reason: str,
) -> None:
    path = "/call-status?call_id=c1"
    with caplog.at_level(logging.WARNING, logger="callbot.gateway.webhook_request"):
        response = await post_webhook(client, path, fields, signature=signature)
    assert response.status_code == status_code
    [record] = [r for r in caplog.records if r.getMessage() == "webhook rejected; nothing acted on"]
    assert record.levelno == logging.WARNING
    logged = (record.path, record.status_code, record.call_id)  # type: ignore[attr-defined]
    assert logged == ("/call-status", status_code, "c1")
    assert reason in record.reason  # type: ignore[attr-defined]


async def test_signature_over_a_tampered_body_is_403(
    client: httpx.AsyncClient, tap: EventTap
) -> None:
    path = "/call-status?call_id=c1"
    signature = sign(PUBLIC_URL + path, {"CallSid": "CA1", "CallStatus": "ringing"})
    tampered = {"CallSid": "CA1", "CallStatus": "completed"}
    response = await post_webhook(client, path, tampered, signature=signature)
    assert response.status_code == 403
    await tap.assert_quiet()


async def test_signature_checked_against_public_url_not_the_internal_one(
    client: httpx.AsyncClient, tap: EventTap
) -> None:
    path = "/call-status?call_id=c1"
    fields = {"CallSid": "CA1", "CallStatus": "ringing"}
    internal = sign("http://10.0.0.5:8080" + path, fields)
    response = await post_webhook(client, path, fields, signature=internal)
    assert response.status_code == 403
    await tap.assert_quiet()


async def test_declared_oversized_body_is_413(client: httpx.AsyncClient, tap: EventTap) -> None:
    response = await post_webhook(
        client, "/call-status?call_id=c1", {"CallSid": "CA1", "Junk": "x" * 4000}
    )
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]
    await tap.assert_quiet()


async def test_streamed_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    fields = {"CallSid": "CA1", "Junk": "x" * 4000}
    body = urlencode(fields).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    path = "/call-status?call_id=c1"
    response = await client.post(
        path,
        content=chunks(),  # no Content-Length: sent chunked
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(PUBLIC_URL + path, fields),
        },
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b'{"CallSid": "CA1"}', "expected a application/x-www-form-urlencoded"),
        ("application/x-www-form-urlencoded", b"CallSid=CA1&&=", "not URL-encoded fields"),
        ("application/x-www-form-urlencoded", b"CallSid=\xff", "not UTF-8"),
    ],
)
async def test_malformed_body_is_400(
    client: httpx.AsyncClient, tap: EventTap, content_type: str, body: bytes, message: str
) -> None:
    response = await client.post(
        "/call-status?call_id=c1",
        content=body,
        headers={"Content-Type": content_type, "X-Twilio-Signature": "anything"},
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    await tap.assert_quiet()


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        ("/call-status", {"CallSid": "CA1", "CallStatus": "ringing"}, "no call_id"),
        ("/call-status?call_id=c1", {"CallSid": "CA1"}, "no CallStatus"),
        (
            "/call-status?call_id=c1",
            {"CallSid": "CA1", "CallStatus": "ringing", "SequenceNumber": "two"},
            "SequenceNumber must be an integer",
        ),
        ("/voice/process-speech?call_id=c1&seq=zero", {"CallSid": "CA1"}, "seq must be"),
        ("/voice/process-speech?call_id=c1&seq=1", {"Confidence": "high"}, "Confidence must"),
        ("/voice/outbound?call_id=c1", {"CallSid": "CA1"}, "no agent_id"),
        ("/recording-status?call_id=c1", {"CallSid": "CA1"}, "no RecordingSid"),
    ],
)
async def test_signed_but_incomplete_webhook_is_400(
    client: httpx.AsyncClient, tap: EventTap, path: str, fields: dict[str, str], message: str
) -> None:
    response = await post_webhook(client, path, fields)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    await tap.assert_quiet()
