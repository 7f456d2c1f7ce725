"""Issue 20: status callbacks lost for good, calls brought to their end by the
reconciler asking Twilio.

The broker is gone for 60 s for the stack (its vhost refuses connections;
the rest of the local broker serves on) while ten calls end: their status and
recording callbacks get 503 from gateway (it answers only once the broker
confirmed the event) and Twilio does not send them again. Once the broker is
back, gateway's reconciler finds the calls non-final past their bound, asks
Twilio (the emulator's `GET /Calls/{sid}` and its recordings list) and
publishes what it says as the callback events: every call reaches its final
status, duration and recording, with exactly one `call.completed` each. A real
callback arriving late afterwards changes nothing.

The bounds are shortened for the test (`RECONCILE_MARGIN_S=0`, an agent with
`max_duration_s` 30, a sweep every second); the mechanism is the production one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from faults_harness import (
    REPORT,
    BrokerControl,
    Figures,
    PlacedCall,
    RunningStack,
    StackOptions,
    agent_definition,
    check_transcript,
    running_stack,
    settle,
)

from callbot.emulator.records import CallRecord, WebhookRecord

pytestmark = pytest.mark.faults

AGENT_ID = "short"
CALLS = 10
OUTAGE_S = 60.0


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
    options = StackOptions(
        agents={
            AGENT_ID: agent_definition(
                data_to_fill=[{"name": "email", "description": "email address", "type": "email"}],
                past_calls=0,
                max_duration_s=30,
            )
        },
        extra_env={
            "RECONCILE_INTERVAL_S": "1",
            "RECONCILE_MARGIN_S": "0",
            "RECONCILE_TWILIO_RPS": "20",
        },
    )
    with running_stack(
        tmp_path_factory.mktemp("reconciliation"), control.url_for(vhost), mongodb_url, options
    ) as running:
        yield running


def _ending_during_the_outage(to: str) -> dict[str, Any]:
    """The callee talks for 20 s after the greeting, then hangs up: the call
    ends while the broker is away (Twilio's time limit of 30 s at the latest)."""
    return {
        "to": to,
        "speed": 1,
        "ring_s": 0.5,
        "steps": [
            {"say": "Let me think about that for a while.", "duration_s": 20},
            {"hangup": {}},
        ],
    }


def _lost_final_callback(played: CallRecord) -> WebhookRecord:
    [final] = [
        hook for hook in played.webhooks_of("status") if hook.params["CallStatus"] == "completed"
    ]
    return final


def _reconciled(stack: RunningStack) -> dict[str, float]:
    text = httpx.get(f"{stack.gateway_url}/metrics", timeout=5).text
    return {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("callbot_gateway_calls_reconciled_total{")
    }


def test_calls_ending_while_the_broker_is_away_are_finalized_by_the_reconciler(
    stack: RunningStack, broker: tuple[BrokerControl, str]
) -> None:
    control, vhost = broker
    tap = stack.tap("call.completed", "call.status")
    numbers = [f"+1500555{400 + index:04d}" for index in range(CALLS)]
    calls: list[PlacedCall] = []
    for to in numbers:
        stack.emulator.add_scenario(_ending_during_the_outage(to))
        calls.append(stack.place_call(AGENT_ID, to))
    for call in calls:
        stack.wait_for_greeting(call)

    with control.shut_out(vhost):
        started = time.monotonic()
        played = [stack.played(call, timeout_s=OUTAGE_S) for call in calls]
        stranded = [stack.document(call.call_id) for call in calls]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))  # the outage itself

    # Every call ended during the outage, and its final callback was refused.
    lost = [_lost_final_callback(record) for record in played]
    assert {hook.status_code for hook in lost} <= {503, None}, [h.error for h in lost]
    assert all(document and document["status"] == "in-progress" for document in stranded)

    documents = [stack.completed_document(call.call_id, timeout_s=60) for call in calls]
    for document, record in zip(documents, played, strict=True):
        assert document["status"] == record.status == "completed"
        assert document["duration_s"] == record.duration_s
        assert document["answered_at"] is not None
        assert document["ended_at"] is not None
        assert document["recording"]["sid"] == record.recording_sid
        assert document["recording"]["duration_s"] == record.duration_s
        assert document["ended_by"] == "callee_hangup"
    assert _reconciled(stack).get("finalized", 0) >= CALLS

    # A late real callback (Twilio's, sent again) converges: no second call.completed.
    late = stack.replay(lost[0])
    assert late.status_code == 204, late.text
    settle(stack, tap)
    completed = tap.count_by_call("call.completed")
    assert {call.call_id: completed[call.call_id] for call in calls} == {
        call.call_id: 1 for call in calls
    }
    assert stack.document(calls[0].call_id)["status"] == "completed"  # type: ignore[index]

    checks = [check_transcript(d, p) for d, p in zip(documents, played, strict=True)]
    voice_5xx = sum(
        1
        for record in played
        for hook in record.webhooks
        if hook.kind in ("voice", "action") and (hook.status_code or 500) >= 500
    )
    REPORT.add(
        Figures(
            item="14",
            fault=f"broker away {OUTAGE_S:.0f} s for the stack while {CALLS} calls end",
            faults_injected=1 + len(lost),
            calls_in_flight=CALLS,
            turns_checked=sum(check.turns for check in checks),
            turns_lost=sum(check.lost_count for check in checks),
            duplicate_turns=sum(check.duplicate_count for check in checks),
            http_5xx=voice_5xx,
        )
    )
    for check in checks:
        check.assert_clean()
    assert voice_5xx == 0
