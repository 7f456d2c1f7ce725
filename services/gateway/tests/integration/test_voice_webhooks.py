"""Twilio's voice webhooks against the real RabbitMQ and a scripted dialog."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from gateway_harness import (
    PUBLIC_URL,
    EventTap,
    FakeTwilio,
    demo_agent,
    gateway_settings,
    post_webhook,
    reply_for,
    scripted_dialog,
)
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.calls import Turn
from callbot.common.contracts import (
    CallAnswered,
    CallAnsweredBy,
    CallFallbackSpoken,
    DialogRequest,
    DialogStart,
    DialogTurn,
    Message,
    RpcFailure,
    utcnow,
)
from callbot.common.messaging import Topology
from callbot.common.mongo import AGENTS, CALLS, Document
from callbot.common.settings import Settings
from callbot.gateway.domain.fallback import GREETING_FALLBACK, TURN_FALLBACK

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo, pytest.mark.usefixtures("placed_calls")]

VOICEMAIL_LEFT = "Hi Ada, Survey bot here. Bye."

ANSWERED = {
    "CallSid": "CA100",
    "AccountSid": "AC1",
    "From": "+15005550006",
    "To": "+14155550100",
    "CallStatus": "in-progress",
    "Direction": "outbound-api",
}


@pytest.fixture
async def client(
    settings: Settings, topology: Topology, fake_twilio: FakeTwilio
) -> AsyncIterator[httpx.AsyncClient]:
    from gateway_harness import running_gateway

    configured = gateway_settings(
        settings, dialog_deadline_ms=400, twilio_api_base_url=fake_twilio.base_url
    )
    async with running_gateway(configured) as (_app, client):
        yield client


def _twiml(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.text)


def _fallbacks(method: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "callbot_gateway_dialog_fallbacks_total", {"method": method, "reason": reason}
    )
    return value or 0.0


async def test_answered_by_a_human_gets_the_greeting_and_a_gather_for_seq_1(
    client: httpx.AsyncClient,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    tap: EventTap,
) -> None:
    async def greet(request: DialogRequest) -> Message:
        return reply_for(request, "Hello Ada!", next_seq=1)

    async with scripted_dialog(amqp_connection, topology, greet) as requests:
        response = await post_webhook(
            client,
            "/voice/outbound?call_id=c1&agent_id=survey",
            {**ANSWERED, "AnsweredBy": "human"},
        )
    root = _twiml(response)
    [gather] = list(root)
    assert gather.tag == "Gather"
    assert gather.attrib["action"] == f"{PUBLIC_URL}/voice/process-speech?call_id=c1&seq=1"
    assert gather.attrib["input"] == "speech"
    assert gather.attrib["actionOnEmptyResult"] == "true"
    assert (gather.attrib["speechTimeout"], gather.attrib["hints"]) == ("2", "yes,no")
    assert (gather.attrib["language"], gather.attrib["speechModel"]) == ("en-GB", "phone_call")
    [say] = list(gather)
    assert (say.text, say.attrib["voice"]) == ("Hello Ada!", "Polly.Amy")
    [start] = requests
    assert isinstance(start, DialogStart)
    assert (start.call_id, start.agent_id, start.call_sid) == ("c1", "survey", "CA100")
    assert (start.to, start.from_, start.answered_by) == ("+14155550100", "+15005550006", "human")
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallAnswered)
    assert (event.call_id, event.call_sid, event.answered_by) == ("c1", "CA100", "human")


async def test_answered_by_a_machine_leaves_the_voicemail_and_hangs_up(
    client: httpx.AsyncClient,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    tap: EventTap,
) -> None:
    async def voicemail(request: DialogRequest) -> Message:
        assert isinstance(request, DialogStart)
        assert request.answered_by == "machine_end_beep"
        return reply_for(request, "Sorry we missed you.", action="hangup")

    async with scripted_dialog(amqp_connection, topology, voicemail):
        response = await post_webhook(
            client,
            "/voice/outbound?call_id=c2&agent_id=survey",
            {**ANSWERED, "AnsweredBy": "machine_end_beep"},
        )
    root = _twiml(response)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "Sorry we missed you."
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallAnswered)
    assert event.answered_by == "machine_end_beep"


async def test_speech_turn_gets_the_reply_and_a_gather_for_the_next_seq(
    client: httpx.AsyncClient, amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def answer(request: DialogRequest) -> Message:
        assert isinstance(request, DialogTurn)
        return reply_for(request, f"You said {request.speech}.", next_seq=request.seq + 2)

    async with scripted_dialog(amqp_connection, topology, answer) as requests:
        response = await post_webhook(
            client,
            "/voice/process-speech?call_id=c3&seq=3",
            {"CallSid": "CA3", "SpeechResult": "yes please", "Confidence": "0.91"},
        )
    [gather] = list(_twiml(response))
    assert gather.attrib["action"] == f"{PUBLIC_URL}/voice/process-speech?call_id=c3&seq=5"
    assert gather[0].text == "You said yes please."
    assert requests == [DialogTurn(call_id="c3", seq=3, speech="yes please", confidence=0.91)]


async def test_speech_turn_that_ends_the_call_hangs_up(
    client: httpx.AsyncClient, amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def goodbye(request: DialogRequest) -> Message:
        return reply_for(request, "Goodbye!", action="hangup", next_seq=7)

    async with scripted_dialog(amqp_connection, topology, goodbye) as requests:
        response = await post_webhook(
            client, "/voice/process-speech?call_id=c4&seq=5", {"CallSid": "CA4"}
        )
    root = _twiml(response)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert requests == [DialogTurn(call_id="c4", seq=5, speech="", confidence=None)]


async def test_slow_dialog_gets_the_apology_and_what_the_callee_heard_is_published(
    client: httpx.AsyncClient,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    tap: EventTap,
) -> None:
    async def too_slow(request: DialogRequest) -> Message:
        await asyncio.sleep(1.0)
        return reply_for(request, "late", next_seq=9)

    before = _fallbacks("dialog.turn", "timeout")
    async with scripted_dialog(amqp_connection, topology, too_slow):
        started = time.monotonic()
        response = await post_webhook(
            client,
            "/voice/process-speech?call_id=c5&seq=7",
            {"CallSid": "CA5", "SpeechResult": "hm"},
        )
        elapsed = time.monotonic() - started
    [gather] = list(_twiml(response))
    # The fallback line is turn 8 (where dialog's reply would be): listen for 9.
    assert gather.attrib["action"] == (
        f"{PUBLIC_URL}/voice/process-speech?call_id=c5&seq=9&after=fallback"
    )
    assert gather[0].text == TURN_FALLBACK
    assert elapsed < 0.9  # the 400 ms deadline, not dialog's second
    assert _fallbacks("dialog.turn", "timeout") == before + 1
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallFallbackSpoken)
    heard, line = event.turns
    assert (heard.seq, heard.role, heard.content, heard.fallback) == (7, "user", "hm", False)
    assert (line.seq, line.role, line.content, line.fallback) == (
        8,
        "assistant",
        TURN_FALLBACK,
        True,
    )


async def test_a_turn_after_a_fallback_tells_dialog_so(
    client: httpx.AsyncClient, amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def answer(request: DialogRequest) -> Message:
        return reply_for(request, "Thanks.", next_seq=11)

    async with scripted_dialog(amqp_connection, topology, answer) as requests:
        await post_webhook(
            client,
            "/voice/process-speech?call_id=c5&seq=9&after=fallback",
            {"CallSid": "CA5", "SpeechResult": "hm again"},
        )
    assert requests == [DialogTurn(call_id="c5", seq=9, speech="hm again", after_fallback=True)]


async def test_no_dialog_at_all_still_greets_and_publishes_the_answer(
    client: httpx.AsyncClient, tap: EventTap
) -> None:
    before = _fallbacks("dialog.start", "timeout")
    response = await post_webhook(client, "/voice/outbound?call_id=c6&agent_id=survey", ANSWERED)
    [gather] = list(_twiml(response))
    assert gather.attrib["action"] == (
        f"{PUBLIC_URL}/voice/process-speech?call_id=c6&seq=1&after=fallback"
    )
    assert gather[0].text == GREETING_FALLBACK
    assert _fallbacks("dialog.start", "timeout") == before + 1
    answered, fallback = await tap.wait_for(2)
    assert isinstance(answered, CallAnswered)
    assert answered.call_id == "c6"
    assert isinstance(fallback, CallFallbackSpoken)
    [line] = fallback.turns
    assert (line.seq, line.content, line.fallback) == (0, GREETING_FALLBACK, True)


async def test_no_dialog_for_a_machine_leaves_the_agents_voicemail_message(
    client: httpx.AsyncClient, mongo_db: AsyncDatabase[Document], tap: EventTap
) -> None:
    await _store_voicemail_agent(mongo_db, "c7")
    response = await post_webhook(
        client, "/voice/outbound?call_id=c7&agent_id=survey", {**ANSWERED, "AnsweredBy": "fax"}
    )
    root = _twiml(response)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == VOICEMAIL_LEFT
    # What the machine heard is stored at seq 0, where dialog's message goes.
    answered, fallback = await tap.wait_for(2)
    assert isinstance(answered, CallAnswered)
    assert isinstance(fallback, CallFallbackSpoken)
    [line] = fallback.turns
    assert (line.seq, line.role, line.content, line.fallback) == (
        0,
        "assistant",
        VOICEMAIL_LEFT,
        True,
    )


async def test_no_dialog_and_no_stored_agent_for_a_machine_hangs_up_silently(
    client: httpx.AsyncClient,
) -> None:
    response = await post_webhook(
        client, "/voice/outbound?call_id=c7&agent_id=survey", {**ANSWERED, "AnsweredBy": "fax"}
    )
    assert [child.tag for child in _twiml(response)] == ["Hangup"]


async def test_no_dialog_after_an_async_machine_result_leaves_the_message_after_the_greeting(
    client: httpx.AsyncClient,
    mongo_db: AsyncDatabase[Document],
    tap: EventTap,
    fake_twilio: FakeTwilio,
) -> None:
    greeting = Turn(seq=0, role="assistant", content="Hello Ada!", at=utcnow())
    await _store_voicemail_agent(mongo_db, "c11", greeting)
    response = await post_webhook(
        client,
        "/voice/amd-status?call_id=c11&agent_id=survey",
        {"CallSid": "CA11", "AnsweredBy": "machine_end_beep"},
    )
    assert response.status_code == 204, response.text
    [(call_sid, form)] = fake_twilio.updates
    root = ET.fromstring(form["Twiml"][0])
    assert (call_sid, [child.tag for child in root]) == ("CA11", ["Say", "Hangup"])
    assert root[0].text == VOICEMAIL_LEFT
    fallback, answered_by = await tap.wait_for(2)
    assert isinstance(fallback, CallFallbackSpoken)
    assert isinstance(answered_by, CallAnsweredBy)
    [line] = fallback.turns
    assert (line.seq, line.content, line.fallback) == (1, VOICEMAIL_LEFT, True)


async def _store_voicemail_agent(
    mongo_db: AsyncDatabase[Document], call_id: str, *turns: Turn
) -> None:
    """The agent with its voicemail message, and the call's recipient (what
    persistence stored), for gateway to render the message from."""
    agent = demo_agent(voicemail_message="Hi {recipient.name}, {agent.name} here. Bye.")
    await mongo_db[AGENTS].insert_one(agent.to_document())
    await mongo_db[CALLS].update_one(
        {"_id": call_id},
        {
            "$set": {
                "recipient": {"name": "Ada"},
                "turns": [turn.model_dump(mode="python") for turn in turns],
            }
        },
    )


async def test_dialog_failure_reply_falls_back(
    client: httpx.AsyncClient, amqp_connection: AbstractRobustConnection, topology: Topology
) -> None:
    async def broken(_request: DialogRequest) -> Message:
        return RpcFailure(code="internal", message="boom")

    before = _fallbacks("dialog.turn", "rpc_failure")
    async with scripted_dialog(amqp_connection, topology, broken):
        response = await post_webhook(
            client, "/voice/process-speech?call_id=c8&seq=1", {"CallSid": "CA8"}
        )
    [gather] = list(_twiml(response))
    assert gather.attrib["action"].endswith("call_id=c8&seq=3&after=fallback")
    assert _fallbacks("dialog.turn", "rpc_failure") == before + 1


async def test_async_machine_result_redirects_the_live_call_to_the_voicemail(
    client: httpx.AsyncClient,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    tap: EventTap,
    fake_twilio: FakeTwilio,
) -> None:
    async def voicemail(request: DialogRequest) -> Message:
        return reply_for(request, "Sorry we missed you.", action="hangup")

    async with scripted_dialog(amqp_connection, topology, voicemail) as requests:
        response = await post_webhook(
            client,
            "/voice/amd-status?call_id=c9&agent_id=survey",
            {
                "CallSid": "CA9",
                "AnsweredBy": "machine_end_silence",
                "MachineDetectionDuration": "4100",
            },
        )
    assert response.status_code == 204, response.text
    [start] = requests
    assert isinstance(start, DialogStart)
    assert (start.call_sid, start.answered_by) == ("CA9", "machine_end_silence")
    [(call_sid, form)] = fake_twilio.updates
    assert call_sid == "CA9"
    root = ET.fromstring(form["Twiml"][0])
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "Sorry we missed you."
    # call.answered went out with the answer webhook; this is who answered.
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallAnsweredBy)
    assert (event.call_id, event.answered_by) == ("c9", "machine_end_silence")


async def test_async_human_result_only_publishes_who_answered(
    client: httpx.AsyncClient, tap: EventTap, fake_twilio: FakeTwilio
) -> None:
    response = await post_webhook(
        client,
        "/voice/amd-status?call_id=c10&agent_id=survey",
        {"CallSid": "CA10", "AnsweredBy": "human"},
    )
    assert response.status_code == 204
    assert fake_twilio.updates == []
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallAnsweredBy)
    assert event.answered_by == "human"
