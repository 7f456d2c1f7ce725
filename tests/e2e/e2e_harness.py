"""What the end-to-end tests drive callbot with.

- `E2EStack`: the emulator, gateway, dialog and persistence as OS processes
  (`callbot.testkit.stack`) in a RabbitMQ namespace and a MongoDB database of
  their own, dialog pointed at the scripted OpenAI server (another process);
  places calls through the REST API and reads back what each side saw.
- `EventSubscriber`: a queue of the test's own bound to `{namespace}.events`,
  consumed on a thread of its own, as any system subscribing to
  `call.completed` would.
- `FinishedCall`: one call as the emulator played it, as MongoDB stores it,
  and as `call.completed` announced it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from pymongo import MongoClient
from pymongo.collection import Collection

from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    AnyEvent,
    CallCompleted,
    CallRecordingReady,
    CallSummarized,
    decode_event,
)
from callbot.common.messaging import Topology
from callbot.common.recipients import RecipientDocument, recipient_key
from callbot.emulator.process import EmulatorControl
from callbot.emulator.records import CallRecord
from callbot.testkit.fake_openai import FakeOpenAIProcess, RecordedRequest
from callbot.testkit.stack import API_KEY, CallbotStack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SCENARIOS = ROOT / "examples" / "calls"

T = TypeVar("T")
E = TypeVar("E")

CONTACT_FIELDS: tuple[dict[str, str], ...] = (
    {"name": "full_name", "description": "full name", "type": "string"},
    {"name": "email", "description": "email address", "type": "email"},
    {"name": "callback_phone", "description": "callback phone number", "type": "phone"},
)


def agent_definition(tag: str, **overrides: Any) -> dict[str, Any]:
    """A contact-details agent whose prompt carries `tag`, so the scripted LLM's
    rules (`system_regex`) and the recorded requests can tell the agents apart."""
    return {
        "name": "Acme Support",
        "greeting": "Hi {recipient.name}, this is Ava from {agent.name}. "
        "Could you tell me your full name?",
        "prompt": f"[{tag}] You are Ava from {{agent.name}}, calling {{recipient.name}} "
        "to confirm their contact details. Ask for one detail at a time.",
        "data_to_fill": list(CONTACT_FIELDS),
        "completion_message": "Thank you, {recipient.name}, I have everything I need. Goodbye!",
        "goodbye_message": "Thanks for your time, {recipient.name}. Goodbye!",
        "voicemail_message": "Hello {recipient.name}, this is Ava from {agent.name}. "
        "We will call you back later.",
        "max_no_input": 3,
        **overrides,
    }


def llm_rule(
    tag: str,
    last_user_regex: str,
    *,
    text: str | None = None,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    times: int | None = 1,
) -> dict[str, Any]:
    """A scripted LLM answer for the agent tagged `tag`, when the callee's last words
    match `last_user_regex`."""
    response: dict[str, Any] = {"tool_calls": [dict(call) for call in tool_calls]}
    if text is not None:
        response["text"] = text
    return {
        "match": {"system_regex": re.escape(f"[{tag}]"), "last_user_regex": last_user_regex},
        "response": response,
        "times": times,
    }


def record_data(field: str, value: str) -> dict[str, Any]:
    return {"name": "record_data", "arguments": {"field": field, "value": value}}


def end_call(reason: str) -> dict[str, Any]:
    return {"name": "end_call", "arguments": {"reason": reason}}


def wait_until(
    probe: Callable[[], T | None],
    what: str,
    timeout_s: float = 60.0,
    explain: Callable[[], str] = lambda: "",
) -> T:
    """Poll `probe` until it returns something truthy (not None, False or an
    empty list: a list of events not yet received is empty)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{explain()}")
        time.sleep(0.05)


class EventSubscriber:
    """Events of some routing keys, collected from an exclusive queue of our own.

    The consumer runs its own event loop on a thread, so the (synchronous)
    tests can wait on it while calls are in flight."""

    def __init__(self, rabbitmq_url: str, exchange: str, routing_keys: Sequence[str]) -> None:
        self._url = rabbitmq_url
        self._exchange = exchange
        self._routing_keys = tuple(routing_keys)
        self._events: list[AnyEvent] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="e2e-subscriber", daemon=True)

    def start(self, timeout_s: float = 20.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the test subscriber did not bind within {timeout_s}s")
        if self._failure is not None:
            raise RuntimeError(f"the test subscriber failed to start: {self._failure!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def events(self) -> list[AnyEvent]:
        with self._lock:
            return list(self._events)

    def completed(self, call_id: str) -> list[CallCompleted]:
        return [
            event
            for event in self.events()
            if isinstance(event, CallCompleted) and event.call_id == call_id
        ]

    def summarized(self, call_id: str) -> list[CallSummarized]:
        return [
            event
            for event in self.events()
            if isinstance(event, CallSummarized) and event.call_id == call_id
        ]

    def of_call(self, event_type: type[E], call_id: str) -> list[E]:
        """The events of one type the subscriber received for the call."""
        return [
            event
            for event in self.events()
            if isinstance(event, event_type) and getattr(event, "call_id", None) == call_id
        ]

    def recording_ready(self, call_id: str) -> list[CallRecordingReady]:
        return [
            event
            for event in self.events()
            if isinstance(event, CallRecordingReady) and event.call_id == call_id
        ]

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()

    async def _consume(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connection = await aio_pika.connect_robust(self._url, reconnect_interval=0.5)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(self._exchange)
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            for key in self._routing_keys:
                await queue.bind(exchange, routing_key=key)
            await queue.consume(self._on_message, no_ack=True)
            self._ready.set()
            await self._stop.wait()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        event = decode_event(message.body)
        with self._lock:
            self._events.append(event)


@dataclass(frozen=True)
class PlacedCall:
    call_id: str
    call_sid: str
    to: str


@dataclass(frozen=True)
class FinishedCall:
    """One call seen from the three places a test can look."""

    placed: PlacedCall
    played: CallRecord  # the emulator's (Twilio's) record of the call
    document: CallDocument  # the stored document, once call.completed was published
    completed: CallCompleted  # the event the test subscriber received


class E2EStack:
    def __init__(
        self,
        stack: CallbotStack,
        fake_llm: FakeOpenAIProcess | None,
        subscriber: EventSubscriber,
        mongodb_url: str,
    ) -> None:
        self.stack = stack
        self.fake_llm = fake_llm
        self.subscriber = subscriber
        self.emulator = EmulatorControl(stack.emulator.base_url)
        self.api = httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30.0,
        )
        self.db_name = f"callbot_{stack.config.namespace}"
        self._mongo: MongoClient[dict[str, Any]] = MongoClient(
            mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000
        )

    # --- driving calls -------------------------------------------------------

    def put_agent(self, agent_id: str, definition: Mapping[str, Any]) -> int:
        response = self.api.put(f"/v1/agents/{agent_id}", json=dict(definition))
        assert response.status_code == 200, response.text
        version: int = response.json()["version"]
        return version

    def add_scenario(self, scenario: Mapping[str, Any]) -> None:
        self.emulator.add_scenario(scenario)

    def place_call(
        self,
        agent_id: str,
        to: str,
        recipient: Mapping[str, Any] | None = None,
    ) -> PlacedCall:
        response = self.api.post(
            "/v1/calls",
            json={"agent_id": agent_id, "to": to, "recipient": dict(recipient or {})},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return PlacedCall(body["call_id"], body["call_sid"], to)

    def finish(self, placed: PlacedCall, timeout_s: float = 90.0) -> FinishedCall:
        """Wait until the emulator has played the whole call (recording callback
        included), persistence has published `call.completed`, and the test
        subscriber has received it."""
        played = self.emulator.wait_for_call(placed.call_sid, timeout_s)
        document = wait_until(
            lambda: self._completed_document(placed.call_id),
            f"the stored document of call {placed.call_id} to be marked completed",
            timeout_s,
            self.explain,
        )
        events = wait_until(
            lambda: self.subscriber.completed(placed.call_id),
            f"call.completed of call {placed.call_id} at the test subscriber",
            timeout_s,
            self.explain,
        )
        return FinishedCall(placed, played, document, events[0])

    def call(
        self, agent_id: str, to: str, recipient: Mapping[str, Any] | None = None
    ) -> FinishedCall:
        return self.finish(self.place_call(agent_id, to, recipient))

    # --- what was stored -----------------------------------------------------

    def document(self, call_id: str) -> CallDocument | None:
        raw = self._mongo[self.db_name]["calls"].find_one({"_id": call_id})
        return None if raw is None else CallDocument.model_validate(raw)

    def collection(self, name: str) -> Collection[dict[str, Any]]:
        """One of the stack's MongoDB collections, to read what a test cannot see otherwise."""
        return self._mongo[self.db_name][name]

    def recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        raw = self._mongo[self.db_name]["recipients"].find_one({"_id": recipient_key(agent_id, to)})
        return None if raw is None else RecipientDocument.model_validate(raw)

    def _completed_document(self, call_id: str) -> CallDocument | None:
        document = self.document(call_id)
        return document if document and document.completed_published_at else None

    def llm_requests(self, agent_tag: str) -> list[RecordedRequest]:
        """The chat-completion requests dialog sent for the agent whose prompt carries
        `agent_tag` (every test agent's prompt carries its own)."""
        assert self.fake_llm is not None, "this stack's dialog runs without an LLM"
        return [
            request
            for request in self.fake_llm.control.requests()
            if f"[{agent_tag}]" in str(request.body["messages"][0].get("content", ""))
        ]

    def explain(self) -> str:
        """Where to look when a wait times out: the tail of every service log."""
        parts = [f"\nlogs in {self.stack.config.log_dir}"]
        stack = self.stack
        for service in (stack.gateway, stack.dialog, stack.persistence, stack.media):
            if service is not None:
                parts.append(f"--- {service.name} ---\n{service.tail(15)}")
        return "\n".join(parts)

    def close(self) -> None:
        self.api.close()
        self._mongo.drop_database(self.db_name)
        self._mongo.close()


@contextmanager
def running_e2e_stack(
    log_dir: Path,
    rabbitmq_url: str,
    mongodb_url: str,
    fake_llm: FakeOpenAIProcess | None,
    extra_env: Mapping[str, str] | None = None,
    *,
    namespace: str | None = None,
    media: bool = False,
) -> Iterator[E2EStack]:
    """The whole of callbot as processes, in a namespace and database of its own,
    with `examples/calls/*.yaml` loaded into the emulator; removed afterwards.
    Without `fake_llm`, dialog runs its deterministic policy.
    `media` adds the media worker (object storage settings in `extra_env`)."""
    namespace = namespace or f"e{uuid.uuid4().hex[:10]}"
    stack = CallbotStack(
        StackConfig(
            rabbitmq_url=rabbitmq_url,
            mongodb_url=mongodb_url,
            namespace=namespace,
            log_dir=log_dir,
            openai_base_url=fake_llm.base_url if fake_llm is not None else None,
            scenarios_dir=EXAMPLE_SCENARIOS,
            extra_env=dict(extra_env or {}),
            media=media,
        )
    )
    subscriber = EventSubscriber(
        rabbitmq_url,
        Topology(namespace).events_exchange,
        (
            "call.completed",
            "call.recording_ready",
            "call.summarized",
            "call.answered",
            "call.answered_by",
            "call.recording_transcribed",
            "call.recording_transcription_failed",
        ),
    )
    running: E2EStack | None = None
    try:
        stack.start()
        subscriber.start()
        running = E2EStack(stack, fake_llm, subscriber, mongodb_url)
        yield running
    finally:
        subscriber.stop()
        stack.stop()
        try:
            stack.delete_topology()
        finally:
            if running is not None:
                running.close()
