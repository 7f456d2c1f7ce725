"""What the faults suite runs callbot with, and the checks every fault test makes.

- `running_stack`: emulator, gateway, dialog and persistence as OS processes
  (`callbot.testkit.stack`), in a RabbitMQ namespace and a MongoDB database of
  their own, with a Twilio-side client (signed webhooks), the API client, and
  reads of the stored call documents.
- `EventTap`: a durable queue of the test's own on the events exchange; it
  survives dropped connections and a broker restart, so it sees every event.
- `check_transcript`: what the callee heard against what was stored: turns
  lost, duplicated, or missing from the sequence; `check_and_report` checks
  finished calls so and records their figures.
- `REPORT`: the figures each test records for docs/reliability.md; the
  suite's conftest prints them in the terminal summary.
- The calls the tests make: a callee's lines (`place_call_saying`), the email
  agent and its hesitant callee (`start_hesitant_calls`), and rules for the
  scripted LLM (`llm_rule`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import aio_pika
import httpx
from pymongo import MongoClient

from callbot.common.messaging import Topology, delete_topology
from callbot.emulator.process import EmulatorControl
from callbot.emulator.records import CallRecord, WebhookRecord
from callbot.emulator.webhooks import twilio_signature
from callbot.gateway.domain.fallback import GREETING_FALLBACK, TURN_FALLBACK
from callbot.testkit.fake_openai import RecordedRequest
from callbot.testkit.processes import ServiceProcess, free_port
from callbot.testkit.stack import API_KEY, AUTH_TOKEN, CallbotStack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
DEMO_AGENT = ROOT / "examples" / "agents" / "demo.json"
FALLBACK_LINES = frozenset({GREETING_FALLBACK, TURN_FALLBACK})

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], what: str, timeout_s: float = 60.0, interval_s: float = 0.1
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def agent_definition(**changes: Any) -> dict[str, Any]:
    """examples/agents/demo.json without its id (the id goes in the URL), changed."""
    agent: dict[str, Any] = json.loads(DEMO_AGENT.read_text())
    agent.pop("agent_id")
    agent.update(changes)
    return agent


# The deterministic policy (no LLM) with one field to collect: a callee who
# hesitates before giving it makes a call of 2 * len(HESITATIONS) + 3 turns.
HESITATIONS = (
    "Let me think.",
    "I am not sure right now.",
    "Hmm, which one do you mean?",
    "Wait, I need to find it.",
)
EMAIL_UTTERANCE = "It is ada at example dot com."
HESITANT_CALL_TURNS = 2 * len(HESITATIONS) + 3


EMAIL_AGENT_ID = "patient"  # what `email_agent()` is stored as


def email_agent() -> dict[str, Any]:
    """An agent that wants only an email address and never looks at past calls."""
    return agent_definition(
        data_to_fill=[{"name": "email", "description": "email address", "type": "email"}],
        past_calls=0,
    )


def hesitant_scenario(to: str, *, utterance_s: float) -> dict[str, Any]:
    """The callee hesitates four times, then gives the email; each utterance
    takes about `utterance_s` seconds of real time."""
    speed = 5.0
    return {
        "to": to,
        "speed": speed,
        "steps": [
            {"say": line, "duration_s": utterance_s * speed}
            for line in (*HESITATIONS, EMAIL_UTTERANCE)
        ],
    }


def place_call_saying(
    stack: RunningStack,
    agent_id: str,
    to: str,
    lines: Sequence[str],
    recipient: Mapping[str, Any] | None = None,
) -> PlacedCall:
    """A call to a callee who says `lines`, one a turn, at 50 times real speed."""
    stack.emulator.add_scenario({"to": to, "speed": 50, "steps": [{"say": line} for line in lines]})
    return stack.place_call(agent_id, to, recipient)


def place_hesitant_call(stack: RunningStack, to: str, *, utterance_s: float) -> PlacedCall:
    """A call of the email agent's to a callee who hesitates (`hesitant_scenario`)."""
    stack.emulator.add_scenario(hesitant_scenario(to, utterance_s=utterance_s))
    return stack.place_call(EMAIL_AGENT_ID, to)


def start_hesitant_calls(
    stack: RunningStack, numbers: Sequence[str], *, utterance_s: float
) -> list[PlacedCall]:
    """`place_hesitant_call` to each number, once answered and greeted (dialog has
    their sessions): a fault injected now lands mid-call."""
    calls = [place_hesitant_call(stack, to, utterance_s=utterance_s) for to in numbers]
    for call in calls:
        stack.wait_for_greeting(call)
    return calls


def assert_completed_by_email(document: Mapping[str, Any]) -> None:
    assert [turn["seq"] for turn in document["turns"]] == list(range(HESITANT_CALL_TURNS))
    assert (document["status"], document["ended_by"]) == ("completed", "system_complete")
    assert document["data_collected"] == {"email": "ada@example.com"}


# --- Figures for docs/reliability.md ---------------------------------------


@dataclass
class Figures:
    """One row of docs/reliability.md."""

    item: str
    fault: str
    faults_injected: int = 0
    calls_in_flight: int = 0
    turns_checked: int = 0
    turns_lost: int = 0
    duplicate_turns: int = 0
    fuzz_cases: int = 0
    http_5xx: int = 0


@dataclass
class Report:
    rows: list[Figures] = field(default_factory=list)

    def add(self, figures: Figures) -> Figures:
        self.rows.append(figures)
        print(f"\nreliability figures: {json.dumps(asdict(figures))}")
        return figures

    def lines(self) -> list[str]:
        header = (
            f"{'item':<5} {'fault':<66} {'faults':>6} {'calls':>5} {'turns':>5} "
            f"{'lost':>4} {'dup':>3} {'fuzz':>5} {'5xx':>3}"
        )
        lines = [header]
        for row in self.rows:
            lines.append(
                f"{row.item:<5} {row.fault[:66]:<66} {row.faults_injected:>6} "
                f"{row.calls_in_flight:>5} {row.turns_checked:>5} {row.turns_lost:>4} "
                f"{row.duplicate_turns:>3} {row.fuzz_cases:>5} {row.http_5xx:>3}"
            )
        return lines

    def write(self, path: Path) -> None:
        path.write_text(json.dumps([asdict(row) for row in self.rows], indent=2) + "\n")


REPORT = Report()


# --- What the callee heard against what was stored ---------------------------


@dataclass(frozen=True)
class TranscriptCheck:
    call_id: str
    turns: int
    gaps: list[int]
    duplicate_seqs: list[int]
    duplicated_utterances: list[str]
    lost: list[str]

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    @property
    def duplicate_count(self) -> int:
        return len(self.duplicate_seqs) + len(self.duplicated_utterances)

    def assert_clean(self) -> None:
        problems = {
            "seqs missing": self.gaps,
            "seqs stored twice": self.duplicate_seqs,
            "utterances stored more often than said": self.duplicated_utterances,
            "heard but not stored": self.lost,
        }
        found = {name: items for name, items in problems.items() if items}
        assert not found, f"call {self.call_id}: {found}"


def _unmatched(heard: Sequence[str], stored: Sequence[str]) -> list[str]:
    """The lines of `heard` not found, in order, in `stored` (a subsequence match)."""
    missing: list[str] = []
    position = 0
    for line in heard:
        try:
            position = stored.index(line, position) + 1
        except ValueError:
            missing.append(line)
    return missing


def heard_dialog_lines(played: CallRecord) -> list[str]:
    """The agent's lines the callee heard that came from dialog (not gateway's fallback)."""
    return [line for line in played.lines("agent") if line not in FALLBACK_LINES]


def answered_utterances(played: CallRecord) -> list[str]:
    """What the callee said that dialog answered (gateway did not fall back)."""
    return [
        hook.params.get("SpeechResult", "")
        for hook in played.webhooks_of("action")
        if hook.status_code == 200 and TURN_FALLBACK not in (hook.response_body or "")
    ]


def check_transcript(document: Mapping[str, Any], played: CallRecord) -> TranscriptCheck:
    """Every line dialog spoke and every utterance it answered must be stored,
    in order; seqs run 0..n-1 with none twice; no utterance stored more often
    than the callee said it (a duplicated webhook must not add a turn)."""
    turns = sorted(document.get("turns", []), key=lambda turn: turn["seq"])
    seqs = [turn["seq"] for turn in turns]
    seq_counts = Counter(seqs)
    stored_assistant = [turn["content"] for turn in turns if turn["role"] == "assistant"]
    stored_user = [turn["content"] for turn in turns if turn["role"] == "user"]
    said = Counter(hook.params.get("SpeechResult", "") for hook in played.webhooks_of("action"))
    excess = Counter(stored_user) - said
    return TranscriptCheck(
        call_id=str(document.get("_id")),
        turns=len(turns),
        gaps=sorted(set(range(max(seqs, default=-1) + 1)) - set(seqs)),
        duplicate_seqs=sorted(seq for seq, count in seq_counts.items() if count > 1),
        duplicated_utterances=sorted(excess.elements()),
        lost=_unmatched(heard_dialog_lines(played), stored_assistant)
        + _unmatched(answered_utterances(played), stored_user),
    )


def webhook_5xx(played: CallRecord) -> int:
    """Webhooks the emulator sent that got a 5xx, or no answer at all."""
    return sum(1 for hook in played.webhooks if hook.status_code is None or hook.status_code >= 500)


@dataclass(frozen=True)
class CallsChecked:
    """What `check_and_report` found: each call's transcript check, and the 5xx seen."""

    checks: list[TranscriptCheck]
    http_5xx: int

    def assert_clean(self) -> None:
        for check in self.checks:
            check.assert_clean()
        assert self.http_5xx == 0


def check_and_report(
    item: str,
    fault: str,
    calls: Sequence[tuple[Mapping[str, Any], CallRecord]],
    *,
    faults_injected: int = 1,
    extra_5xx: int = 0,
) -> CallsChecked:
    """`check_transcript` of each finished call (its document, what the emulator
    played), and the figures of them all added to `REPORT` under `item`.

    Nothing is asserted here: the figures are recorded even when the test then
    fails on them. `extra_5xx` counts 5xx answers the test saw besides the calls'
    own webhooks.
    """
    checks = [check_transcript(document, played) for document, played in calls]
    http_5xx = extra_5xx + sum(webhook_5xx(played) for _, played in calls)
    REPORT.add(
        Figures(
            item=item,
            fault=fault,
            faults_injected=faults_injected,
            calls_in_flight=len(calls),
            turns_checked=sum(check.turns for check in checks),
            turns_lost=sum(check.lost_count for check in checks),
            duplicate_turns=sum(check.duplicate_count for check in checks),
            http_5xx=http_5xx,
        )
    )
    return CallsChecked(checks, http_5xx)


# --- The scripted LLM ----------------------------------------------------------


def llm_rule(pattern: str, response: dict[str, Any], times: int | None = None) -> dict[str, Any]:
    """A fake-openai rule: `response` to requests whose last user line matches
    `pattern`, `times` times (None: every time)."""
    return {"match": {"last_user_regex": pattern}, "response": response, "times": times}


def record_data(field: str, value: str) -> dict[str, Any]:
    """The `record_data` tool call, as a rule's response carries it."""
    return {"name": "record_data", "arguments": {"field": field, "value": value}}


def last_user_line(request: RecordedRequest) -> str:
    """What the callee said last in an LLM request's conversation."""
    users = [message for message in request.body["messages"] if message.get("role") == "user"]
    return str(users[-1]["content"]) if users else ""


# --- Events ------------------------------------------------------------------


class EventTap:
    """A durable queue of the test's own bound to the events exchange. Each
    `drain()` takes what arrived since the last one; a durable queue keeps
    persistent events across dropped connections and a broker restart."""

    def __init__(self, rabbitmq_url: str, exchange: str, routing_keys: Sequence[str]) -> None:
        self._url = rabbitmq_url
        self._exchange = exchange
        self._routing_keys = tuple(routing_keys)
        self.queue = f"{exchange}.tap.{uuid.uuid4().hex[:8]}"
        self.received: list[dict[str, Any]] = []

    def open(self) -> None:
        asyncio.run(self._declare())

    def drain(self) -> list[dict[str, Any]]:
        self.received += asyncio.run(self._get_all())
        return self.received

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.drain() if event.get("type") == event_type]

    def count_by_call(self, event_type: str) -> Counter[str]:
        return Counter(str(event.get("call_id")) for event in self.of_type(event_type))

    def exchanges_beyond(
        self, stored: set[tuple[str, int]], call_ids: set[str]
    ) -> list[dict[str, Any]]:
        """The `call.turn` events of these calls that carry a turn `stored`
        (`(call_id, seq)` pairs) does not hold."""
        return [
            event
            for event in self.of_type("call.turn")
            if event.get("call_id") in call_ids
            and any((event["call_id"], turn["seq"]) not in stored for turn in event["turns"])
        ]

    def turns_published(self, call_id: str) -> list[tuple[int, str]]:
        """`(seq, content)` of every turn the `call.turn` events of the call carried."""
        return [
            (turn["seq"], turn["content"])
            for event in self.of_type("call.turn")
            if event.get("call_id") == call_id
            for turn in event["turns"]
        ]

    def turns_heard(self, call_id: str) -> set[tuple[int, str]]:
        """`(seq, content)` of the turns the events say the callee said and
        heard: dialog's (`call.turn`) and gateway's (`call.fallback`), where a
        fallback line holds its seq over a late reply of dialog's."""
        heard = dict(self.turns_published(call_id))
        for event in self.of_type("call.fallback"):
            if event.get("call_id") != call_id:
                continue
            for turn in event["turns"]:
                if turn.get("fallback"):
                    heard[turn["seq"]] = turn["content"]
                else:
                    heard.setdefault(turn["seq"], turn["content"])
        return set(heard.items())

    async def _declare(self) -> None:
        async with await aio_pika.connect(self._url) as connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(self._exchange)
            queue = await channel.declare_queue(
                self.queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            for key in self._routing_keys:
                await queue.bind(exchange, routing_key=key)

    async def _get_all(self) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        async with await aio_pika.connect(self._url) as connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.queue)
            while (message := await queue.get(fail=False)) is not None:
                try:
                    parsed = json.loads(message.body)
                except ValueError:
                    parsed = {"type": None, "raw": message.body.decode(errors="replace")}
                taken.append(parsed if isinstance(parsed, dict) else {"type": None, "raw": parsed})
                await message.ack()
        return taken


def publish_raw(
    rabbitmq_url: str,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    message_id: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Publish bytes as they are (`exchange=""`: straight to the queue `routing_key`)."""

    async def publish() -> None:
        async with await aio_pika.connect(rabbitmq_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange) if exchange else channel.default_exchange
            await target.publish(
                aio_pika.Message(
                    body,
                    message_id=message_id,
                    headers=dict(headers or {}),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=routing_key,
            )

    asyncio.run(publish())


def queue_depth(rabbitmq_url: str, queue: str) -> int:
    """Messages ready in `queue` (not counting those delivered and unacknowledged)."""

    async def depth() -> int:
        async with await aio_pika.connect(rabbitmq_url) as connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count
            return int(count or 0)

    return asyncio.run(depth())


# --- The broker -------------------------------------------------------------------


class BrokerControl:
    """`rabbitmqctl` on this machine, for faults only a broker operator can cause.

    The stack gets a vhost of its own, so dropping its connections leaves every
    other client of the broker alone; stopping the broker cannot be scoped, and
    `stopped()` always starts it again."""

    def __init__(self, rabbitmq_url: str) -> None:
        self._url = urlsplit(rabbitmq_url)

    def check_available(self) -> str | None:
        """Why this broker cannot be controlled from here, or None."""
        if self._url.hostname not in ("127.0.0.1", "localhost"):
            return (
                f"the tests' broker is {self._url.hostname}, not this machine: the broker "
                "faults need rabbitmqctl on the broker's host (unset RABBITMQ_URL and run "
                "the local broker, `rabbitmq-server -detached`)"
            )
        if shutil.which("rabbitmqctl") is None:
            return "rabbitmqctl is not installed: apt-get install rabbitmq-server"
        status = self._ctl("status")
        if status.returncode != 0:
            return f"rabbitmqctl cannot reach the local node: {status.stderr.strip()}"
        return None

    def url_for(self, vhost: str) -> str:
        return urlunsplit(self._url._replace(path=f"/{vhost}"))

    def add_vhost(self, vhost: str) -> None:
        user = self._url.username or "guest"
        self._checked("add_vhost", vhost)
        self._checked("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        self._ctl("delete_vhost", vhost)

    def close_all_connections(self, vhost: str) -> None:
        self._checked("close_all_connections", "--vhost", vhost, "dropped by a faults test")

    def connection_count(self, vhost: str) -> int:
        listing = self._checked("list_connections", "-p", vhost, "name", "--no-table-headers")
        return len([line for line in listing.stdout.splitlines() if line.strip()])

    @contextmanager
    def shut_out(self, vhost: str) -> Iterator[None]:
        """The broker gone for the clients of `vhost` only: their connections
        dropped and new ones refused (a vhost limit of 0 connections), then
        allowed again. Queues and messages stay; the rest of the broker serves on."""
        self._checked("set_vhost_limits", "-p", vhost, '{"max-connections": 0}')
        try:
            self.close_all_connections(vhost)
            yield
        finally:
            self._checked("clear_vhost_limits", "-p", vhost)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The broker application stopped (the node stays up), then started again."""
        self._checked("stop_app")
        try:
            yield
        finally:
            self._checked("start_app")
            self._checked("await_startup", "--timeout", "60")

    def _checked(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        done = self._ctl(*arguments)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(arguments)} failed: {done.stderr}")
        return done

    def _ctl(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return run(["rabbitmqctl", "-q", *arguments], timeout_s=90)


# --- The stack ------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedCall:
    call_id: str
    call_sid: str


class RunningStack:
    """A started `CallbotStack` and what a test drives it with."""

    def __init__(self, stack: CallbotStack, rabbitmq_url: str, mongodb_url: str) -> None:
        self.stack = stack
        self.rabbitmq_url = rabbitmq_url
        self.mongodb_url = mongodb_url
        self.namespace = stack.config.namespace
        self.topology = Topology(self.namespace)
        self.db_name = f"callbot_{self.namespace}"
        self.gateway_url = stack.gateway_url
        self.emulator = EmulatorControl(stack.emulator.base_url)
        self.api = httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30.0,
        )
        self.twilio = httpx.Client(base_url=stack.gateway_url, timeout=30.0)
        self._mongo: MongoClient[dict[str, Any]] = MongoClient(
            mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000
        )
        self.extra: list[ServiceProcess] = []
        self.taps: list[EventTap] = []

    # services
    @property
    def gateway(self) -> ServiceProcess:
        assert self.stack.gateway is not None
        return self.stack.gateway

    @property
    def dialog(self) -> ServiceProcess:
        assert self.stack.dialog is not None
        return self.stack.dialog

    @property
    def persistence(self) -> ServiceProcess:
        assert self.stack.persistence is not None
        return self.stack.persistence

    def add_dialog_replica(self, name: str, **env: str) -> ServiceProcess:
        replica = ServiceProcess(
            name, "callbot.dialog", {**self.dialog.env, **env}, self.stack.config.log_dir
        )
        self.extra.append(replica)
        replica.start()
        return replica

    def add_gateway_replica(self, name: str) -> ServiceProcess:
        """Another gateway, on a port of its own, with the same settings (and
        so the same PUBLIC_URL: a front must lead Twilio's webhooks to it)."""
        port = free_port()
        replica = ServiceProcess(
            name,
            "callbot.gateway",
            {**self.gateway.env, "GATEWAY_PORT": str(port)},
            self.stack.config.log_dir,
            ready_url=f"http://127.0.0.1:{port}/readyz",
        )
        self.extra.append(replica)
        replica.start(timeout_s=90)  # gateway imports the most; the machine may be busy
        return replica

    def tap(self, *routing_keys: str) -> EventTap:
        tap = EventTap(self.rabbitmq_url, self.topology.events_exchange, routing_keys)
        tap.open()
        self.taps.append(tap)
        return tap

    # the API
    def put_agent(self, agent_id: str, definition: Mapping[str, Any]) -> None:
        response = self.api.put(f"/v1/agents/{agent_id}", json=dict(definition))
        assert response.status_code == 200, response.text

    def place_call(
        self, agent_id: str, to: str, recipient: Mapping[str, Any] | None = None
    ) -> PlacedCall:
        response = self.api.post(
            "/v1/calls",
            json={"agent_id": agent_id, "to": to, "recipient": dict(recipient or {"name": "Ada"})},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return PlacedCall(body["call_id"], body["call_sid"])

    def played(self, call: PlacedCall, timeout_s: float = 90.0) -> CallRecord:
        """The emulator's record of the call once it has fully finished."""
        return self.emulator.wait_for_call(call.call_sid, timeout_s)

    def finished(self, calls: Sequence[PlacedCall]) -> list[tuple[dict[str, Any], CallRecord]]:
        """Each call's document once completed, with the emulator's record of it."""
        played = [self.played(call) for call in calls]
        documents = [self.completed_document(call.call_id) for call in calls]
        return list(zip(documents, played, strict=True))

    # Twilio's side
    def webhook(
        self,
        path: str,
        query: Mapping[str, str],
        form: Mapping[str, str],
        *,
        signature: str | None = "valid",
    ) -> httpx.Response:
        """POST a webhook as Twilio would: `signature="valid"` signs it with the
        account's token over PUBLIC_URL; any other string is sent as is; None
        sends no signature header."""
        url = f"{self.gateway_url}{path}?{urlencode(query)}" if query else self.gateway_url + path
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature == "valid":
            headers["X-Twilio-Signature"] = twilio_signature(AUTH_TOKEN, url, form)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.twilio.post(url, content=urlencode(dict(form)), headers=headers)

    def replay(self, hook: WebhookRecord) -> httpx.Response:
        """Send again a webhook the emulator sent: same URL, form and signature."""
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": hook.signature,
        }
        return self.twilio.post(hook.url, content=urlencode(hook.params), headers=headers)

    # what was stored
    def document(self, call_id: str) -> dict[str, Any] | None:
        return self._mongo[self.db_name]["calls"].find_one({"_id": call_id})

    def insert_document(self, document: Mapping[str, Any]) -> None:
        """Write a call document behind persistence's back (an operator, a bad import)."""
        self._mongo[self.db_name]["calls"].insert_one(dict(document))

    def delete_documents(self, selector: Mapping[str, Any]) -> int:
        return self._mongo[self.db_name]["calls"].delete_many(dict(selector)).deleted_count

    def wait_for_greeting(self, call: PlacedCall) -> None:
        """Until the call is answered and its greeting stored (dialog has its session)."""

        def greeted() -> bool:
            document = self.document(call.call_id)
            return bool(document and document.get("turns"))

        wait_until(greeted, f"the greeting of call {call.call_id} stored")

    def stored_seqs(self, calls: Sequence[PlacedCall]) -> set[tuple[str, int]]:
        """`(call_id, seq)` of every turn of these calls stored now."""
        return {
            (call.call_id, turn["seq"])
            for call in calls
            for turn in (self.document(call.call_id) or {}).get("turns", [])
        }

    def completed_document(self, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The call's document once `call.completed` has been published for it."""

        def completed() -> dict[str, Any] | None:
            document = self.document(call_id)
            return document if document and document.get("completed_published_at") else None

        return wait_until(completed, f"call.completed of call {call_id}", timeout_s)

    def drop_database(self) -> None:
        self._mongo.drop_database(self.db_name)

    def close(self) -> None:
        self.api.close()
        self.twilio.close()
        self._mongo.close()


@dataclass(frozen=True)
class StackOptions:
    """What `running_stack` runs callbot with, besides its broker and database."""

    # agent_id -> definition, stored once the stack is up
    agents: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {EMAIL_AGENT_ID: email_agent()}
    )
    openai_base_url: str | None = None  # None: dialog runs without an LLM
    dialog_deadline_ms: int = 4000
    extra_env: Mapping[str, str] = field(default_factory=dict)
    media: bool = False  # the media worker (object storage settings in `extra_env`)
    public_url: str | None = None  # a front of several gateways; None: the gateway itself


@contextmanager
def running_stack(
    log_dir: Path, rabbitmq_url: str, mongodb_url: str, options: StackOptions | None = None
) -> Iterator[RunningStack]:
    """The whole of callbot as processes in a namespace of its own, with the
    agents of `options` stored; removed after."""
    options = options or StackOptions()
    namespace = f"f{uuid.uuid4().hex[:10]}"
    stack = CallbotStack(
        StackConfig(
            rabbitmq_url=rabbitmq_url,
            mongodb_url=mongodb_url,
            namespace=namespace,
            log_dir=log_dir,
            openai_base_url=options.openai_base_url,
            dialog_deadline_ms=options.dialog_deadline_ms,
            extra_env=dict(options.extra_env),
            media=options.media,
            public_url=options.public_url,
        )
    )
    running: RunningStack | None = None
    try:
        stack.start()
        running = RunningStack(stack, rabbitmq_url, mongodb_url)
        for agent_id, definition in options.agents.items():
            running.put_agent(agent_id, definition)
        yield running
    finally:
        if running is not None:
            for replica in running.extra:
                replica.stop()
        stack.stop()
        if running is not None:
            _remove_leftovers(running)
            running.close()
        print(f"\nservice logs of namespace {namespace}: {log_dir}")


def _remove_leftovers(running: RunningStack) -> None:
    """Delete the namespace's queues and exchanges and its database (best effort:
    a test that broke the broker or MongoDB must still report its own failure)."""

    async def delete() -> None:
        async with await aio_pika.connect(running.rabbitmq_url) as connection:
            await delete_topology(await connection.channel(), running.topology)
            for tap in running.taps:
                await (await connection.channel()).queue_delete(tap.queue)

    try:
        asyncio.run(delete())
    except Exception as exc:
        print(f"could not delete the topology of {running.namespace}: {exc!r}")
    try:
        running.drop_database()
    except Exception as exc:
        print(f"could not drop database {running.db_name}: {exc!r}")


def settle(stack: RunningStack, tap: EventTap) -> None:
    """A barrier: a finished call of its own, sent after everything before it,
    is completed only once persistence has handled what came first (and the
    completion grace has passed). `tap` must be bound to `call.completed`."""
    sentinel = f"sentinel-{uuid.uuid4().hex[:8]}"
    # Placed as far as gateway can tell (its call.created stored): not an orphan.
    stack.insert_document({"_id": sentinel, "agent_id": "sentinel", "status": "queued"})
    response = stack.webhook(
        "/call-status",
        {"call_id": sentinel},
        {"CallSid": f"CA{uuid.uuid4().hex}", "CallStatus": "completed", "SequenceNumber": "0"},
    )
    assert response.status_code == 204, response.text
    wait_until(lambda: tap.count_by_call("call.completed")[sentinel], "the sentinel completed")


def log_records(service: ServiceProcess) -> list[dict[str, Any]]:
    """The service's JSON log lines, parsed (other lines skipped)."""
    records = []
    for line in service.log_lines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def unhandled_errors(service: ServiceProcess) -> list[dict[str, Any]]:
    """Log lines of exceptions nobody handled (uvicorn's 'Exception in ASGI application')."""
    return [
        record
        for record in log_records(service)
        if re.search(r"Exception in ASGI application|Traceback", str(record.get("msg", "")))
    ]


def run(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a command with `env` added to this process's environment."""
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, **(env or {})},
    )


def report_path() -> Path | None:
    value = os.environ.get("CALLBOT_FAULTS_REPORT")
    return Path(value) if value else None
