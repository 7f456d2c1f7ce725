"""`/v1/calls` and `/v1/agents` against a fake Twilio REST API, the real
RabbitMQ, a scripted persistence RPC and in-memory documents."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gateway_harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    PUBLIC_URL,
    EventTap,
    FakeTwilio,
    InMemoryDocuments,
    api_headers,
    demo_agent,
    gateway_settings,
    running_gateway,
    twilio_error,
)

from callbot.common.calls import CallDocument, Turn
from callbot.common.contracts import (
    AgentSave,
    CallCreated,
)
from callbot.common.messaging import Topology
from callbot.common.recipients import OptOut, RecipientDocument, recipient_key
from callbot.common.settings import Settings

pytestmark = pytest.mark.rabbit

CALL = {
    "agent_id": "survey",
    "to": "+14155550100",
    "recipient": {"name": "Ada"},
    "variables": {"order": "A-17"},
}


@pytest.fixture
def documents() -> InMemoryDocuments:
    return InMemoryDocuments(agents={"survey": demo_agent()})


@pytest.fixture
async def gateway(
    settings: Settings, topology: Topology, fake_twilio: FakeTwilio, documents: InMemoryDocuments
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    configured = gateway_settings(settings, twilio_api_base_url=fake_twilio.base_url)
    async with running_gateway(configured) as (app, client):
        app.state.resources.documents = documents
        yield app, client


@pytest.fixture
def client(gateway: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return gateway[1]


async def test_place_call_asks_twilio_and_publishes_call_created(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, tap: EventTap
) -> None:
    response = await client.post("/v1/calls", json=CALL, headers=api_headers())
    assert response.status_code == 201, response.text
    body = response.json()
    call_id = body["call_id"]
    assert body == {"call_id": call_id, "call_sid": "CA" + "1".zfill(32), "status": "queued"}
    [form] = fake_twilio.creates
    expected_basic = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert fake_twilio.auth == [f"Basic {expected_basic}"]
    assert form == {
        "To": ["+14155550100"],
        "From": [FROM_NUMBER],
        "Url": [f"{PUBLIC_URL}/voice/outbound?call_id={call_id}&agent_id=survey"],
        "Method": ["POST"],
        "StatusCallback": [f"{PUBLIC_URL}/call-status?call_id={call_id}"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "StatusCallbackMethod": ["POST"],
        "Timeout": ["30"],
        "TimeLimit": ["300"],
        "Record": ["true"],
        "RecordingStatusCallback": [f"{PUBLIC_URL}/recording-status?call_id={call_id}"],
        "RecordingStatusCallbackMethod": ["POST"],
        "RecordingStatusCallbackEvent": ["completed", "absent"],
        "MachineDetection": ["DetectMessageEnd"],
        "MachineDetectionTimeout": ["30"],
        "MachineDetectionSpeechThreshold": ["2400"],
        "MachineDetectionSpeechEndThreshold": ["1200"],
        "MachineDetectionSilenceTimeout": ["5000"],
    }
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallCreated)
    assert (event.call_id, event.call_sid, event.status) == (call_id, body["call_sid"], "queued")
    assert (event.agent_id, event.agent_version) == ("survey", 3)
    assert (event.to, event.from_) == ("+14155550100", FROM_NUMBER)
    assert (event.recipient, event.variables) == ({"name": "Ada"}, {"order": "A-17"})


async def test_async_detection_requested_per_call(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    request = {**CALL, "machine_detection": "async", "record": False, "from": "+15005550001"}
    response = await client.post("/v1/calls", json=request, headers=api_headers())
    assert response.status_code == 201, response.text
    call_id = response.json()["call_id"]
    [form] = fake_twilio.creates
    assert form["From"] == ["+15005550001"]
    assert form["AsyncAmd"] == ["true"]
    assert form["AsyncAmdStatusCallback"] == [
        f"{PUBLIC_URL}/voice/amd-status?call_id={call_id}&agent_id=survey"
    ]
    assert form["Record"] == ["false"]
    assert "RecordingStatusCallback" not in form


async def test_twilio_503_is_retried_then_the_call_is_placed(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, tap: EventTap
) -> None:
    fake_twilio.script = [twilio_error(503, 20503, "Service unavailable")]
    response = await client.post("/v1/calls", json=CALL, headers=api_headers())
    assert response.status_code == 201, response.text
    assert len(fake_twilio.creates) == 2
    assert fake_twilio.creates[0] == fake_twilio.creates[1]
    await tap.wait_for(1)


async def test_twilio_400_is_not_retried_and_is_explained(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, tap: EventTap
) -> None:
    fake_twilio.script = [twilio_error(400, 21211, "The 'To' number is not a valid phone number.")]
    response = await client.post("/v1/calls", json=CALL, headers=api_headers())
    assert response.status_code == 400
    assert response.json()["detail"] == {
        "message": "Twilio refused the call",
        "twilio_status": 400,
        "twilio_code": 21211,
        "twilio_message": "The 'To' number is not a valid phone number.",
    }
    assert len(fake_twilio.creates) == 1
    await tap.assert_quiet()


async def test_twilio_rejecting_our_credentials_is_a_502(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = [twilio_error(401, 20003, "Authenticate")]
    response = await client.post("/v1/calls", json=CALL, headers=api_headers())
    assert response.status_code == 502
    assert response.json()["detail"]["twilio_code"] == 20003
    assert len(fake_twilio.creates) == 1


async def test_twilio_down_is_retried_a_bounded_number_of_times(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.script = [twilio_error(500, 20500, "Internal error")] * 10
    started = time.monotonic()
    response = await client.post("/v1/calls", json=CALL, headers=api_headers())
    assert response.status_code == 502
    assert response.json()["detail"]["twilio_code"] == 20500
    assert len(fake_twilio.creates) == 4
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("headers", [{}, api_headers("wrong"), {"Authorization": "Basic eDp5"}])
async def test_api_key_is_required(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, headers: dict[str, str]
) -> None:
    for response in (
        await client.post("/v1/calls", json=CALL, headers=headers),
        await client.get("/v1/calls/c1", headers=headers),
        await client.get("/v1/agents/survey", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert fake_twilio.creates == []


@pytest.mark.parametrize(
    ("override", "field"), [({"to": "4155550100"}, "to"), ({"from": "+1 500 555 0006"}, "from")]
)
async def test_non_e164_number_is_422(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, override: dict[str, str], field: str
) -> None:
    response = await client.post("/v1/calls", json={**CALL, **override}, headers=api_headers())
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert "E.164" in error["msg"]
    assert fake_twilio.creates == []


@pytest.mark.parametrize(
    ("content_type", "status"), [("text/plain", 422), ("application/json", 400)]
)
async def test_a_body_that_is_not_utf8_is_a_4xx_not_a_500(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, content_type: str, status: int
) -> None:
    # FastAPI's own 422 handler echoes the raw body in the error and fails to decode it.
    response = await client.post(
        "/v1/calls",
        content=b"\x93not utf-8",
        headers={**api_headers(), "Content-Type": content_type},
    )
    assert response.status_code == status
    assert fake_twilio.creates == []


# JSON that MongoDB cannot store as it is, as raw JSON text (httpx's encoder
# would refuse some of it), and where the 422 must say the problem is.
UNSTORABLE = [
    pytest.param('{"n": 9223372036854775808}', "n: 9223372036854775808 is outside", id="int>8B"),
    pytest.param('{"n": NaN}', "n: nan is not a finite number", id="NaN"),
    pytest.param(
        '{"n": ["\\ud800"]}', "n[0]: '\\ud800' holds a lone UTF-16 surrogate", id="lone-surrogate"
    ),
    pytest.param('{"$where": 1}', "key '$where' starts with '$'", id="dollar-key"),
    pytest.param('{"n": {"a\\u0000b": 1}}', "n: key 'a\\x00b' contains a NUL", id="nul-key"),
    pytest.param('{"n": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32 levels", id="deep"),
]


@pytest.mark.parametrize("where", ["recipient", "variables"])
@pytest.mark.parametrize(("value", "problem"), UNSTORABLE)
async def test_call_data_mongodb_cannot_store_is_422_naming_the_place(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, where: str, value: str, problem: str
) -> None:
    fields = {**CALL, where: "VALUE"}
    body = json.dumps(fields).replace('"VALUE"', value)
    response = await client.post(
        "/v1/calls", content=body, headers={**api_headers(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", where]
    assert problem in error["msg"]
    assert fake_twilio.creates == []


async def test_unknown_agent_is_404(client: httpx.AsyncClient, fake_twilio: FakeTwilio) -> None:
    response = await client.post(
        "/v1/calls", json={**CALL, "agent_id": "nobody"}, headers=api_headers()
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "agent 'nobody' not found"}
    assert fake_twilio.creates == []


async def test_missing_template_variable_is_422(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    response = await client.post("/v1/calls", json={**CALL, "variables": {}}, headers=api_headers())
    assert response.status_code == 422
    assert "['order']" in response.json()["detail"]
    assert fake_twilio.creates == []


async def test_get_call_returns_the_document_with_call_id(
    client: httpx.AsyncClient, documents: InMemoryDocuments
) -> None:
    at = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    documents.calls["c1"] = CallDocument.model_validate(
        {
            "_id": "c1",
            "call_sid": "CA1",
            "agent_id": "survey",
            "from": FROM_NUMBER,
            "status": "completed",
            "turns": [Turn(seq=0, role="assistant", content="Hello", at=at)],
        }
    )
    response = await client.get("/v1/calls/c1", headers=api_headers())
    assert response.status_code == 200
    body = response.json()
    assert (body["call_id"], body["from"], body["status"]) == ("c1", FROM_NUMBER, "completed")
    assert "_id" not in body
    assert body["turns"][0]["content"] == "Hello"
    missing = await client.get("/v1/calls/nope", headers=api_headers())
    assert (missing.status_code, missing.json()) == (404, {"detail": "call 'nope' not found"})


async def test_get_agent(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/agents/survey", headers=api_headers())
    assert response.status_code == 200
    assert (response.json()["agent_id"], response.json()["version"]) == ("survey", 3)
    assert (await client.get("/v1/agents/nope", headers=api_headers())).status_code == 404


def _definition(**overrides: Any) -> dict[str, Any]:
    agent = demo_agent().model_dump(mode="json", exclude={"agent_id", "version"})
    return {**agent, **overrides}


async def test_put_agent_saves_through_persistence(
    client: httpx.AsyncClient, saved_agents: list[AgentSave]
) -> None:
    body = _definition(name="Survey v2", version=99, _id="ignored")
    response = await client.put("/v1/agents/survey", json=body, headers=api_headers())
    assert response.status_code == 200, response.text
    assert response.json() == {"agent_id": "survey", "version": 4}
    [request] = saved_agents
    assert (request.agent.agent_id, request.agent.name) == ("survey", "Survey v2")
    assert request.agent.greeting == demo_agent().greeting


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_definition(greeting="Hi {recipient.name} {whoops}"), "unknown placeholder {whoops}"),
        (_definition(max_turns="many"), "valid integer"),
        (_definition(data_to_fill=[{"name": "x", "description": "d", "type": "colour"}]), "type"),
        (
            _definition(speech={"model": "phone_call", "timeout": "auto"}),
            'speech.timeout "auto" cannot be used with speech.model',
        ),
    ],
)
async def test_put_invalid_agent_is_422_and_not_saved(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], body: dict[str, Any], message: str
) -> None:
    response = await client.put("/v1/agents/survey", json=body, headers=api_headers())
    assert response.status_code == 422
    assert message in str(response.json()["detail"])
    assert saved_agents == []


@pytest.mark.parametrize(("value", "problem"), UNSTORABLE)
async def test_agent_mcp_settings_mongodb_cannot_store_are_422_and_not_saved(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], value: str, problem: str
) -> None:
    body = json.dumps(_definition(mcp=["VALUE"])).replace('"VALUE"', value)
    response = await client.put(
        "/v1/agents/survey",
        content=body,
        headers={**api_headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mcp", 0]
    assert problem in error["msg"]
    assert saved_agents == []


async def test_put_agent_with_a_bad_id_is_422(
    client: httpx.AsyncClient, saved_agents: list[AgentSave]
) -> None:
    response = await client.put(
        "/v1/agents/Not%20A%20Slug", json=_definition(), headers=api_headers()
    )
    assert response.status_code == 422
    assert "agent_id" in str(response.json()["detail"])
    assert saved_agents == []


async def test_put_agent_refused_by_persistence(
    client: httpx.AsyncClient, saved_agents: list[AgentSave]
) -> None:
    response = await client.put(
        "/v1/agents/survey", json=_definition(name="refused"), headers=api_headers()
    )
    assert (response.status_code, response.json()) == (422, {"detail": "persistence: name refused"})


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) >= {"/v1/calls", "/v1/calls/{call_id}", "/v1/agents/{agent_id}"}
    assert "/voice/outbound" not in schema["paths"]
    components = schema["components"]["schemas"]
    assert {"to", "from", "agent_id"} <= set(components["CallRequest"]["properties"])
    assert set(components["CallPlaced"]["properties"]) == {"call_id", "call_sid", "status"}
    assert "agent_id" not in components["AgentDefinition"]["properties"]


async def test_a_recipient_who_opted_out_is_409_unless_overridden_with_a_reason(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    tap: EventTap,
    documents: InMemoryDocuments,
) -> None:
    at = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    key = recipient_key("survey", CALL["to"])
    documents.recipients[key] = RecipientDocument(
        key=key,
        agent_id="survey",
        to=CALL["to"],
        opted_out=OptOut(call_id="c0", at=at),
    )
    refused = await client.post("/v1/calls", json=CALL, headers=api_headers())
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "not to call again" in detail["message"]
    assert "override_opt_out" in detail["message"]
    assert detail["opted_out"]["call_id"] == "c0"
    assert fake_twilio.creates == []

    empty = await client.post(
        "/v1/calls", json={**CALL, "override_opt_out": ""}, headers=api_headers()
    )
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["loc"] == ["body", "override_opt_out"]

    reason = "they called us back and asked for this call"
    placed = await client.post(
        "/v1/calls", json={**CALL, "override_opt_out": reason}, headers=api_headers()
    )
    assert placed.status_code == 201, placed.text
    assert len(fake_twilio.creates) == 1
    [event] = await tap.wait_for(1)
    assert isinstance(event, CallCreated)
    assert event.override_opt_out == reason
    other_agent = documents.recipients.get(recipient_key("other", CALL["to"]))
    assert other_agent is None
