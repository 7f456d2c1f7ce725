"""The ConversationRelay webhooks against the real RabbitMQ and a scripted
dialog: the answer of a relay agent's call, and the `<Connect action>`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from gateway_harness import gateway_settings, post_webhook, reply_for, scripted_dialog

from callbot.common.contracts import DialogRequest, Message
from callbot.common.messaging import Topology
from callbot.common.settings import Settings
from callbot.common.transport import ConversationRelayTransport

pytestmark = pytest.mark.rabbit

ANSWERED = {"CallSid": "CA100", "AccountSid": "AC1", "CallStatus": "in-progress"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from gateway_harness import running_gateway

    async with running_gateway(gateway_settings(settings, dialog_deadline_ms=2000)) as (_, client):
        yield client


async def test_a_relay_agents_call_is_connected_to_its_socket_with_the_greeting(
    client: httpx.AsyncClient, amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def greet(request: DialogRequest) -> Message:
        reply = reply_for(request, "Hi Ada!")
        return reply.model_copy(update={"transport": ConversationRelayTransport()})

    async with scripted_dialog(amqp_connection, topology, greet):
        response = await post_webhook(client, "/voice/outbound?call_id=c1&agent_id=acme", ANSWERED)
    assert response.status_code == 200
    assert response.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Connect action="https://gateway.test/voice/relay-ended?call_id=c1">'
        '<ConversationRelay dtmfDetection="true" interruptible="any" language="en-GB"'
        ' url="wss://gateway.test/relay?call_id=c1">'
        '<Parameter name="call_id" value="c1" /><Parameter name="greeting" value="Hi Ada!" />'
        "</ConversationRelay></Connect></Response>"
    )


async def test_the_connect_action_says_the_closing_line_then_hangs_up(
    client: httpx.AsyncClient,
) -> None:
    handoff = {"call_id": "c1", "say": "Goodbye, Ada!", "voice": "Polly.Amy", "language": "en-GB"}
    fields = {**ANSWERED, "SessionStatus": "ended", "HandoffData": json.dumps(handoff)}
    response = await post_webhook(client, "/voice/relay-ended?call_id=c1", fields)
    assert response.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="en-GB" voice="Polly.Amy">Goodbye, Ada!</Say><Hangup /></Response>'
    )
    # The socket dropped, or a handoff naming another call: hang up.
    for extra in ({"SessionStatus": "failed"}, {"HandoffData": json.dumps({"call_id": "c2"})}):
        dropped = await post_webhook(client, "/voice/relay-ended?call_id=c1", {**ANSWERED, **extra})
        assert (
            dropped.text == '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'
        )
    # Unsigned: refused like every webhook.
    unsigned = await post_webhook(client, "/voice/relay-ended?call_id=c1", fields, signature=None)
    assert unsigned.status_code == 403
