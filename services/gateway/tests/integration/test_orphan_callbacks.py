"""Callbacks for a call callbot never placed (issue 13): whatever the webhook,
a harmless answer, nothing asked of dialog (but for speech, which dialog
refuses), nothing published, a metric and a warning naming the call id."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from gateway_harness import EventTap, gateway_settings, post_webhook, running_gateway
from gateway_harness import scripted_dialog as scripted_dialog_server
from prometheus_client import REGISTRY

from callbot.common.contracts import DialogRequest, Message, RpcFailure
from callbot.common.messaging import Topology
from callbot.common.settings import Settings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo, pytest.mark.usefixtures("placed_calls")]

ORPHAN = "never-placed"
# (callback label, path and query, form, the answer's status code)
CALLBACKS = [
    (
        "answer",
        f"/voice/outbound?call_id={ORPHAN}&agent_id=survey",
        {"CallSid": "CA9", "CallStatus": "in-progress"},
        200,
    ),
    (
        "speech",
        f"/voice/process-speech?call_id={ORPHAN}&seq=1",
        {"CallSid": "CA9", "SpeechResult": "hello?"},
        200,
    ),
    ("amd", f"/voice/amd-status?call_id={ORPHAN}&agent_id=survey", {"CallSid": "CA9"}, 204),
    (
        "status",
        f"/call-status?call_id={ORPHAN}",
        {"CallSid": "CA9", "CallStatus": "completed", "CallDuration": "12"},
        204,
    ),
    (
        "recording",
        f"/recording-status?call_id={ORPHAN}",
        {"CallSid": "CA9", "RecordingSid": "RE9", "RecordingStatus": "completed"},
        204,
    ),
]


@pytest.fixture
async def client(settings: Settings, topology: Topology) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(gateway_settings(settings, dialog_deadline_ms=2000)) as (_, client):
        yield client


def _orphans(kind: str) -> float:
    value = REGISTRY.get_sample_value("callbot_gateway_orphan_callbacks_total", {"callback": kind})
    return value or 0.0


@pytest.mark.parametrize(("kind", "path", "form", "code"), CALLBACKS, ids=[c[0] for c in CALLBACKS])
async def test_a_callback_for_a_call_never_placed_is_answered_and_not_stored(
    client: httpx.AsyncClient,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    tap: EventTap,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    path: str,
    form: dict[str, str],
    code: int,
) -> None:
    async def dialog_knows_no_such_call(request: DialogRequest) -> Message:
        return RpcFailure(code="not_found", message=f"call {request.call_id!r} not found")

    before = _orphans(kind)
    with caplog.at_level(logging.WARNING, logger="callbot.gateway"):
        async with scripted_dialog_server(
            amqp_connection, topology, dialog_knows_no_such_call
        ) as asked:
            response = await post_webhook(client, path, form)
    assert response.status_code == code, response.text
    if code == 200:  # TwiML that hangs up without a word
        assert [child.tag for child in ET.fromstring(response.text)] == ["Hangup"]
    # Only the utterance goes to dialog (which knows its calls) before MongoDB is asked.
    assert [request.type for request in asked] == (["dialog.turn"] if kind == "speech" else [])
    await tap.assert_quiet()
    assert _orphans(kind) == before + 1
    [warning] = [record for record in caplog.records if "never placed" in record.getMessage()]
    assert (warning.levelno, getattr(warning, "call_id", None)) == (logging.WARNING, ORPHAN)
    assert getattr(warning, "path", None) == path.partition("?")[0]
