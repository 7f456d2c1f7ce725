"""Issue 7, item 3: RabbitMQ dropping every connection, then stopping, mid-call.

The stack runs in a vhost of its own on the local broker (`rabbitmqctl` must
work here; the test fails saying so otherwise).

1. `rabbitmqctl close_all_connections` while three calls go on: gateway,
   dialog and persistence reconnect by themselves and the calls finish.
2. `rabbitmqctl stop_app`, a pause, `start_app`, while two calls go on:
   meanwhile gateway says it is not ready and still answers Twilio's voice
   webhooks with fallback TwiML, not a 5xx; afterwards the calls finish and a
   new call goes through.

Either way no acknowledged event is lost: every event the broker confirmed
(a tap queue of the test's own sees them all) is in the call document, and
every line the callee heard from dialog is in the transcript.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from faults_harness import (
    EMAIL_AGENT_ID,
    BrokerControl,
    EventTap,
    PlacedCall,
    RunningStack,
    check_and_report,
    running_stack,
    start_hesitant_calls,
    wait_until,
)

from callbot.gateway.domain.fallback import GREETING_FALLBACK, TURN_FALLBACK

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def broker(rabbitmq_url: str) -> Iterator[tuple[BrokerControl, str]]:
    control = BrokerControl(rabbitmq_url)
    if (missing := control.check_available()) is not None:
        pytest.fail(f"the broker faults cannot run here: {missing}", pytrace=False)
    vhost = f"faults-{uuid.uuid4().hex[:8]}"
    control.add_vhost(vhost)
    try:
        yield control, vhost
    finally:
        control.delete_vhost(vhost)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    broker: tuple[BrokerControl, str],
    mongodb_url: str,
) -> Iterator[RunningStack]:
    control, vhost = broker
    with running_stack(
        tmp_path_factory.mktemp("broker-outage"), control.url_for(vhost), mongodb_url
    ) as running:
        yield running


def ready(stack: RunningStack) -> int:
    return httpx.get(f"{stack.gateway_url}/readyz", timeout=5).status_code


def assert_every_confirmed_event_stored(tap: EventTap, document: dict[str, Any]) -> None:
    """What the broker confirmed reached the document: every turn the callee
    said and heard (dialog's, and gateway's fallback lines), the newest status."""
    call_id = document["_id"]
    events = [event for event in tap.drain() if event.get("call_id") == call_id]
    published_turns = tap.turns_heard(call_id)
    stored_turns = {(turn["seq"], turn["content"]) for turn in document["turns"]}
    assert published_turns == stored_turns, (published_turns ^ stored_turns, call_id)
    statuses = [event for event in events if event["type"] == "call.status"]
    newest = max(statuses, key=lambda event: event["sequence_number"])
    assert (document["status"], document["status_seq"]) == (
        newest["status"],
        newest["sequence_number"],
    )


def finish(
    stack: RunningStack,
    tap: EventTap,
    calls: list[PlacedCall],
    fault: str,
    *,
    faults: int = 1,
    extra_5xx: int = 0,
) -> None:
    finished = stack.finished(calls)
    check_and_report(
        "3", fault, finished, faults_injected=faults, extra_5xx=extra_5xx
    ).assert_clean()
    for document, _ in finished:
        assert document["status"] == "completed"
        assert_every_confirmed_event_stored(tap, document)
    completed = tap.count_by_call("call.completed")
    assert {call.call_id: completed[call.call_id] for call in calls} == {
        call.call_id: 1 for call in calls
    }


def test_dropped_connections_mid_call(
    stack: RunningStack, broker: tuple[BrokerControl, str]
) -> None:
    control, vhost = broker
    tap = stack.tap("call.#")
    calls = start_hesitant_calls(
        stack, ["+15005550311", "+15005550312", "+15005550313"], utterance_s=0.4
    )
    services = control.connection_count(vhost)

    control.close_all_connections(vhost)
    wait_until(lambda: control.connection_count(vhost) >= services, "the services reconnected")

    finish(stack, tap, calls, "rabbitmqctl close_all_connections mid-call")


def test_broker_stopped_and_started_mid_call(
    stack: RunningStack, broker: tuple[BrokerControl, str]
) -> None:
    control, _ = broker
    tap = stack.tap("call.#")
    calls = start_hesitant_calls(stack, ["+15005550321", "+15005550322"], utterance_s=0.5)
    fake = uuid.uuid4().hex[:8]
    probes = [  # Twilio reaching gateway while the broker is away
        ("/voice/outbound", {"call_id": f"probe-{fake}-1", "agent_id": EMAIL_AGENT_ID},
         {"CallSid": f"CA{fake}1", "AnsweredBy": "human"}, GREETING_FALLBACK),
        ("/voice/process-speech", {"call_id": f"probe-{fake}-2", "seq": "1"},
         {"CallSid": f"CA{fake}2", "SpeechResult": "Hello?"}, TURN_FALLBACK),
    ]  # fmt: skip
    for _, query, _, _ in probes:  # calls callbot placed (their call.created stored)
        stack.insert_document({"_id": query["call_id"], "agent_id": EMAIL_AGENT_ID})

    with control.stopped():
        wait_until(lambda: ready(stack) == 503, "gateway saying the broker is away")
        with ThreadPoolExecutor(len(probes)) as pool:
            answers = list(pool.map(lambda p: stack.webhook(p[0], p[1], p[2]), probes))
    wait_until(lambda: ready(stack) == 200, "gateway ready again")

    for (path, _, _, fallback), answer in zip(probes, answers, strict=True):
        assert answer.status_code == 200, (path, answer.text)
        assert fallback in answer.text, (path, answer.text)
    probe_5xx = sum(1 for answer in answers if answer.status_code >= 500)
    finish(
        stack,
        tap,
        calls,
        f"rabbitmqctl stop_app / start_app mid-call, {len(probes)} webhooks meanwhile",
        extra_5xx=probe_5xx,
    )

    # The services serve new calls after the restart.
    after = start_hesitant_calls(stack, ["+15005550323"], utterance_s=0.1)
    finish(stack, tap, after, "a call placed after the broker restart", faults=0)
