"""Test doubles and helpers for the gateway: the app run in-process, a scripted
dialog RPC responder, a fake Twilio REST API, an event tap, signed webhooks."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import httpx
import uvicorn
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from fastapi import FastAPI, Request, Response
from pydantic import AnyHttpUrl, SecretStr
from twilio.request_validator import RequestValidator

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    DIALOG_REQUEST_ADAPTER,
    AnyEvent,
    DialogReply,
    DialogRequest,
    GatherSpec,
    Message,
    decode_event,
)
from callbot.common.messaging import Deadline, RpcServer, Topology
from callbot.common.recipients import RecipientDocument, recipient_key
from callbot.common.settings import Settings
from callbot.gateway.app import create_app

ACCOUNT_SID = "AC" + "0" * 31 + "7"
AUTH_TOKEN = "gateway-test-auth-token"
API_KEY = "gateway-test-key"
PUBLIC_URL = "https://gateway.test"
FROM_NUMBER = "+15005550006"


def gateway_settings(base: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **base.model_dump(),
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": SecretStr(AUTH_TOKEN),
        "twilio_from_number": FROM_NUMBER,
        "callbot_api_keys": SecretStr(f"other-key,{API_KEY}"),
        "public_url": AnyHttpUrl(PUBLIC_URL),
        # The reconciler has tests of its own (unit, tests/faults); here it
        # would only wait on the MongoDB these tests do not use.
        "reconcile_interval_s": 0,
        # A callback for a call not stored is an orphan after this wait.
        "orphan_wait_ms": 300,
        **overrides,
    }
    return Settings.model_validate(values)


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan started, and a client that reaches it at PUBLIC_URL."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PUBLIC_URL) as client,
    ):
        yield app, client


def sign(url: str, fields: dict[str, str], token: str = AUTH_TOKEN) -> str:
    signature: str = RequestValidator(token).compute_signature(url, fields)
    return signature


async def post_webhook(
    client: httpx.AsyncClient,
    path_and_query: str,
    fields: dict[str, str],
    *,
    signature: str | None = "sign",
) -> httpx.Response:
    """POST a form as Twilio would; `signature="sign"` signs it correctly,
    None sends no signature, anything else is sent as is."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "sign":
        signature = sign(PUBLIC_URL + path_and_query, fields)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await client.post(path_and_query, content=urlencode(fields), headers=headers)


def api_headers(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def reply_for(
    request: DialogRequest,
    say: str,
    action: Literal["gather", "hangup"] = "gather",
    next_seq: int = 1,
) -> DialogReply:
    return DialogReply(
        call_id=request.call_id,
        say=say,
        voice="Polly.Amy",
        language="en-GB",
        action=action,
        next_seq=next_seq,
        gather=GatherSpec(
            speech_timeout="2", timeout_s=7, hints=("yes", "no"), speech_model="phone_call"
        ),
    )


DialogScript = Callable[[DialogRequest], Awaitable[Message]]


@asynccontextmanager
async def scripted_dialog(
    connection: AbstractRobustConnection, topology: Topology, script: DialogScript
) -> AsyncIterator[list[DialogRequest]]:
    """An RPC server on the dialog queue answering with `script`; yields the
    requests it received."""
    received: list[DialogRequest] = []

    async def handle(request: DialogRequest, _deadline: Deadline) -> Message:
        received.append(request)
        return await script(request)

    channel = await connection.channel()
    queue = await channel.get_queue(topology.dialog_rpc_queue)
    server = RpcServer(channel, queue, DIALOG_REQUEST_ADAPTER, handle)
    await server.start()
    try:
        yield received
    finally:
        await server.stop()
        await channel.close()


class EventTap:
    """Every event published on the test's events exchange, in order."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []
        self._queue: AbstractQueue | None = None

    async def start(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        channel = await connection.channel()
        exchange = await channel.get_exchange(topology.events_exchange)
        self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.bind(exchange, routing_key="#")
        await self._queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.events.append(decode_event(message.body))

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[AnyEvent]:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} events, got {self.events}")
            await asyncio.sleep(0.01)
        return self.events

    async def assert_quiet(self, settle_s: float = 0.3) -> None:
        """No event arrives (a publish would have been confirmed, then routed, by now)."""
        await asyncio.sleep(settle_s)
        assert self.events == []


@dataclass
class FakeTwilio:
    """Twilio's REST API for `calls.create` and `calls(sid).update`: records
    each request's form, answers from `script` (status, body) then with success."""

    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    creates: list[dict[str, list[str]]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()
        prefix = "/2010-04-01/Accounts/{account_sid}/Calls"

        @app.post(prefix + ".json")
        async def create(request: Request) -> Response:
            self.creates.append(_form_lists(await request.body()))
            self.auth.append(request.headers.get("authorization"))
            return self._answer(201, {"sid": f"CA{len(self.creates):032d}", "status": "queued"})

        @app.post(prefix + "/{call_sid}.json")
        async def update(request: Request, call_sid: str) -> Response:
            self.updates.append((call_sid, _form_lists(await request.body())))
            return self._answer(200, {"sid": call_sid, "status": "in-progress"})

        return app

    def _answer(self, status: int, body: dict[str, Any]) -> Response:
        if self.script:
            status, body = self.script.pop(0)
        return Response(json.dumps(body), status_code=status, media_type="application/json")


def _form_lists(body: bytes) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        fields.setdefault(key, []).append(value)
    return fields


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"status": status, "code": code, "message": message, "more_info": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving_fake_twilio() -> AsyncIterator[FakeTwilio]:
    """The fake on a real port (the twilio client speaks real HTTP, from a thread)."""
    fake = FakeTwilio()
    port = free_port()
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("the fake Twilio server did not start within 5 s")
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task


@dataclass
class InMemoryDocuments:
    """`DocumentReader` over dicts (the MongoDB one has its own test)."""

    agents: dict[str, Agent] = field(default_factory=dict)
    calls: dict[str, CallDocument] = field(default_factory=dict)
    recipients: dict[str, RecipientDocument] = field(default_factory=dict)

    async def agent(self, agent_id: str) -> Agent | None:
        return self.agents.get(agent_id)

    async def call(self, call_id: str) -> CallDocument | None:
        return self.calls.get(call_id)

    async def recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        return self.recipients.get(recipient_key(agent_id, to))


def demo_agent(**overrides: Any) -> Agent:
    values: dict[str, Any] = {
        "agent_id": "survey",
        "name": "Survey bot",
        "version": 3,
        "greeting": "Hello {recipient.name}, this is {agent.name} about order {variables.order}.",
        "prompt": "You run a short survey.",
        "max_duration_s": 300,
        "machine_detection": "sync",
        "record": True,
        **overrides,
    }
    return Agent.model_validate(values)
