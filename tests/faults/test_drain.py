"""Issue 20, must show 4: SIGTERM to dialog or gateway with turns in flight
(docs/reliability.md, item 15).

What a rolling update does: the replacement replica is up, the old one gets
SIGTERM while turns are in its hands. The scripted LLM is slow (each callee's
first answer takes `SLOW_S`), so every call has a turn in flight when the
signal lands. The old replica must stop taking work, finish those turns,
then close and exit 0; the calls go on with the replacement. None lost, none
answered with gateway's fallback, one `call.completed` each.

Twilio reaches the two gateways through a TCP front (a Kubernetes Service's
part): it sends each connection to the first gateway that accepts one, so
everything goes to gateway A until A stops listening.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator

import pytest
from faults_harness import (
    FALLBACK_LINES,
    PlacedCall,
    RunningStack,
    StackOptions,
    agent_definition,
    check_and_report,
    last_user_line,
    llm_rule,
    log_records,
    place_call_saying,
    record_data,
    wait_until,
)

from callbot.common.agents import Agent
from callbot.dialog.domain.summary import SUMMARY_INSTRUCTIONS
from callbot.gateway.domain.callback_urls import PROCESS_SPEECH_PATH
from callbot.testkit.fake_openai import FakeOpenAIProcess, RecordedRequest
from callbot.testkit.tcp_front import TcpFront

pytestmark = pytest.mark.faults

AGENT_ID = "drain"
MODEL_A, MODEL_B = "dialog-a", "dialog-b"  # each replica's model names its requests
SLOW_S = 3.0  # the LLM's first answer of each call: the turn in flight at SIGTERM
CALLS = 4
# The model may take up to 6 s (default 3 s), so SLOW_S is slow, not late.
AGENT = agent_definition(few_shot=[], past_calls=0, llm={"timeout_s": 6})
# dialog's own fallback, spoken when the model gives no answer in its time
AGENT_FALLBACK = Agent.model_validate({"agent_id": AGENT_ID, **AGENT}).fallback_message
NAME_LINE = "My name is"
CALLEE_LINES = [
    "My name is Ada Lovelace.",
    "It is ada at example dot com.",
    "Call me back at +1 415 555 0134.",
]


@pytest.fixture(scope="module")
def front() -> Iterator[TcpFront]:
    with TcpFront([]) as running:
        yield running


@pytest.fixture(scope="module")
def stack_options(fake_llm: FakeOpenAIProcess, front: TcpFront) -> StackOptions:
    return StackOptions(
        agents={AGENT_ID: AGENT},
        openai_base_url=fake_llm.base_url,
        # Room for SLOW_S and the model's 6 s: no turn is late because of the drain.
        dialog_deadline_ms=9000,
        extra_env={"LLM_MODEL": MODEL_A},
        public_url=front.url,
    )


@pytest.fixture(autouse=True)
def scripted_llm(fake_llm: FakeOpenAIProcess) -> None:
    fake_llm.control.reset()
    fake_llm.control.add_rules(
        [
            llm_rule(
                NAME_LINE,
                {
                    "text": "Thanks, Ada. What is your email?",
                    "tool_calls": [record_data("full_name", "Ada Lovelace")],
                    "delay_s": SLOW_S,
                },
            ),
            llm_rule(
                "example dot com",
                {
                    "text": "Got it. And your callback number?",
                    "tool_calls": [record_data("email", "ada@example.com")],
                },
            ),
            llm_rule(
                "415 555 0134",
                {
                    "text": "Thank you!",
                    "tool_calls": [record_data("callback_phone", "+14155550134")],
                },
            ),
        ]
    )


def place_calls(stack: RunningStack, first_number: int) -> list[PlacedCall]:
    return [
        place_call_saying(stack, AGENT_ID, f"+1500555{first_number + index:04d}", CALLEE_LINES)
        for index in range(CALLS)
    ]


def slow_requests(fake: FakeOpenAIProcess) -> list[RecordedRequest]:
    """The requests for the slow turn (a post-call summary's carries the whole
    conversation: it is not one)."""
    return [
        request
        for request in fake.control.requests()
        if request.body["messages"][0].get("content") != SUMMARY_INSTRUCTIONS
        and last_user_line(request).startswith(NAME_LINE)
    ]


def slow_turns_in_flight(fake: FakeOpenAIProcess) -> list[RecordedRequest]:
    """Until the LLM holds every call's slow turn: the requests."""

    def all_arrived() -> list[RecordedRequest] | None:
        held = slow_requests(fake)
        return held if len(held) >= CALLS else None

    return wait_until(all_arrived, f"{CALLS} slow LLM requests", timeout_s=60, interval_s=0.02)


def assert_drained_cleanly(
    stack: RunningStack, calls: list[PlacedCall], fault: str, fake: FakeOpenAIProcess
) -> None:
    """Every call finished with no turn lost or doubled, no fallback heard, one
    `call.completed` each, and each slow turn asked of the LLM once (never
    taken over and asked again)."""
    finished = stack.finished(calls)
    check_and_report("15", fault, finished).assert_clean()
    for document, played in finished:
        heard = played.lines("agent")
        fallbacks = FALLBACK_LINES | {AGENT_FALLBACK}
        assert not fallbacks & set(heard), f"{document['_id']} heard a fallback: {heard}"
        assert "Thanks, Ada. What is your email?" in heard
        assert document["ended_by"] == "system_complete", document["ended_by"]
        assert document["data_collected"] == {
            "full_name": "Ada Lovelace",
            "email": "ada@example.com",
            "callback_phone": "+14155550134",
        }
    slow = slow_requests(fake)
    assert len(slow) == CALLS, [r.body["model"] for r in slow]


def test_sigterm_to_dialog_finishes_its_turns_in_flight(
    stack: RunningStack, fake_llm: FakeOpenAIProcess, front: TcpFront
) -> None:
    front.backends = [("127.0.0.1", stack.stack.gateway_port)]
    replicas = {MODEL_A: stack.dialog}
    replicas[MODEL_B] = stack.add_dialog_replica("dialog-b", LLM_MODEL=MODEL_B)
    tap = stack.tap("call.completed")
    calls = place_calls(stack, 301)

    held = slow_turns_in_flight(fake_llm)
    # The broker hands requests to the two replicas in turn; which one holds
    # the slow turns depends on how the calls' turns interleave. SIGTERM to
    # the one holding most of them; the other is the replacement.
    holders = Counter(request.body["model"] for request in held)
    victim = replicas[holders.most_common(1)[0][0]]
    assert victim.stop(timeout_s=30) == 0  # SIGTERM; waits for the exit

    assert_drained_cleanly(stack, calls, "SIGTERM to dialog, turns in flight", fake_llm)
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}
    # Its slow turns were asked of the LLM once (assert_drained_cleanly): it
    # answered them itself. At least one LLM answer came between the signal
    # and the exit: a turn was in its hands when the signal landed.
    messages = [str(record.get("msg")) for record in log_records(victim)]
    stop = messages.index("stop requested: finishing work in hand")
    stopped = messages.index("service stopped")
    assert stop < stopped
    answered = [m for m in messages[stop:stopped] if "/v1/chat/completions" in m]
    assert answered, messages[stop:stopped]


def test_sigterm_to_gateway_answers_its_webhooks_in_flight(
    stack: RunningStack, fake_llm: FakeOpenAIProcess, front: TcpFront
) -> None:
    gateway_a = stack.gateway
    gateway_b = stack.add_gateway_replica("gateway-b")
    front.backends = [
        ("127.0.0.1", stack.stack.gateway_port),
        ("127.0.0.1", int(gateway_b.env["GATEWAY_PORT"])),
    ]
    tap = stack.tap("call.completed")
    calls = place_calls(stack, 401)

    slow_turns_in_flight(fake_llm)  # each call's webhook waits on gateway A for dialog's reply
    # SIGTERM, and wait for the exit. uvicorn finishes its graceful shutdown,
    # then raises the signal again (so a parent sees it): the status says SIGTERM.
    assert gateway_a.stop(timeout_s=30) == -signal.SIGTERM
    records = log_records(gateway_a)
    messages = [str(record.get("msg")) for record in records]
    # Webhooks answered between the signal and the exit: they were in flight.
    drained = records[
        messages.index("Shutting down") : messages.index("Application shutdown complete.")
    ]
    assert [r for r in drained if r.get("path") == PROCESS_SPEECH_PATH and r.get("status") == 200]
    shutdown = [
        record["msg"]
        for record in records
        if record.get("logger") in ("uvicorn.error", "callbot.gateway.resources")
    ]
    assert shutdown[-5:] == [
        "Waiting for connections to close. (CTRL+C to force quit)",
        "Waiting for application shutdown.",
        "gateway connections closed",
        "Application shutdown complete.",
        shutdown[-1],  # "Finished server process [pid]"
    ], shutdown

    assert_drained_cleanly(stack, calls, "SIGTERM to gateway, webhooks in flight", fake_llm)
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}
    # A answered each call's slow turn; B took the calls from there on.
    for call in calls:
        played = stack.played(call)
        slow_hooks = [
            hook
            for hook in played.webhooks_of("action")
            if hook.params.get("SpeechResult", "").startswith(NAME_LINE)
        ]
        assert [hook.status_code for hook in slow_hooks] == [200]
    served_by_b = [
        record
        for record in log_records(gateway_b)
        if record.get("path") == PROCESS_SPEECH_PATH and record.get("status") == 200
    ]
    assert served_by_b, "gateway B served no webhook: the calls did not go on past A"
