"""Issue 7, item 1: dialog SIGKILLed mid-call.

The kill lands while dialog waits on the LLM for a turn (the scripted LLM holds
that one answer back), so the turn is in dialog's hands, unanswered and
unpublished. With a second replica present, the broker hands the unacked RPC
request to it, it rebuilds the session from the call document and answers
within the deadline; the killed replica is restarted and serves later turns.
With a single replica, the restarted process takes the request back if it is
up before the deadline, else gateway's fallback keeps the call going.

Either way: the call continues to its end, every LLM request carries the
complete ordered history, and the transcript has no gap and no duplicate.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from faults_harness import (
    RunningStack,
    StackOptions,
    agent_definition,
    check_and_report,
    last_user_line,
    llm_rule,
    place_call_saying,
    record_data,
    wait_until,
)

from callbot.dialog.domain.summary import SUMMARY_INSTRUCTIONS
from callbot.testkit.fake_openai import FakeOpenAIProcess, RecordedRequest
from callbot.testkit.processes import ServiceProcess

pytestmark = pytest.mark.faults

AGENT_ID = "crash"
# Each dialog replica names a model of its own, so every recorded LLM request
# tells which replica sent it.
MODEL_A, MODEL_B = "dialog-a", "dialog-b"
HELD_BACK_S = 30.0  # far longer than any turn's budget: only the kill ends the wait
DEADLINE_MS = 8000  # room for the broker to hand a dead replica's request to another one
HELD_S = 7.0  # the agent's model time limit: most of the deadline


def held_back_once(pattern: str) -> dict[str, Any]:
    """The first request whose last user line matches gets no answer in time."""
    return llm_rule(pattern, {"text": "(never heard)", "delay_s": HELD_BACK_S}, times=1)


def answer(pattern: str, text: str, *tool_calls: dict[str, Any]) -> dict[str, Any]:
    return llm_rule(pattern, {"text": text, "tool_calls": list(tool_calls)})


@pytest.fixture(scope="module")
def stack_options(fake_llm: FakeOpenAIProcess) -> StackOptions:
    return StackOptions(
        # The model may take nearly the whole turn, so a held-back request stays
        # in its replica's hands until the test kills it, however loaded the
        # machine (with the default 3 s, the replica would give up first and
        # speak the fallback line itself).
        agents={AGENT_ID: agent_definition(few_shot=[], past_calls=0, llm={"timeout_s": HELD_S})},
        openai_base_url=fake_llm.base_url,
        dialog_deadline_ms=DEADLINE_MS,
        extra_env={"LLM_MODEL": MODEL_A},
    )


def wait_for_llm_request(fake: FakeOpenAIProcess, pattern: str, after: int) -> RecordedRequest:
    def arrived() -> RecordedRequest | None:
        for request in fake.control.requests()[after:]:
            if re.search(pattern, last_user_line(request)):
                return request
        return None

    return wait_until(arrived, f"an LLM request for {pattern!r}", timeout_s=30, interval_s=0.02)


def turn_requests(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    """The conversation's requests, without the post-call summary's."""
    return [r for r in requests if r.body["messages"][0].get("content") != SUMMARY_INSTRUCTIONS]


def assert_every_request_had_the_whole_history(
    requests: list[RecordedRequest], document: dict[str, Any]
) -> None:
    """Each request's conversation is the stored transcript up to its user turn."""
    turns = sorted(document["turns"], key=lambda turn: turn["seq"])
    stored = [(turn["role"], turn["content"]) for turn in turns]
    for request in requests:
        history = [
            (message["role"], message["content"])
            for message in request.body["messages"]
            if message["role"] in ("user", "assistant")
        ]
        assert history == stored[: len(history)], (
            f"LLM request {request.index} ({request.body['model']}) did not carry the "
            f"stored history in order:\n sent:   {history}\n stored: {stored}"
        )
        assert history[-1][0] == "user"


def test_killed_replica_hands_its_turn_to_the_other_and_comes_back(
    stack: RunningStack, fake_llm: FakeOpenAIProcess
) -> None:
    replicas: dict[str, ServiceProcess] = {MODEL_A: stack.dialog}
    replicas[MODEL_B] = stack.add_dialog_replica("dialog-b", LLM_MODEL=MODEL_B)
    fake_llm.control.reset()
    name = record_data("full_name", "Ada Lovelace")
    email = record_data("email", "ada@example.com")
    phone = record_data("callback_phone", "+14155550134")
    fake_llm.control.add_rules(
        [
            answer("Ada Lovelace", "Thanks, Ada. What is your email?", name),
            held_back_once("example dot com"),
            answer("example dot com", "Got it. Anything else?", email),
            answer("Hold on", "Sure, take your time."),
            held_back_once("still there"),
            answer("still there", "Yes, I am here. What is your callback number?"),
            answer("415 555 0134", "Thank you!", phone),
        ]
    )
    tap = stack.tap("call.completed")
    call = place_call_saying(
        stack,
        AGENT_ID,
        "+15005550201",
        [
            "My name is Ada Lovelace.",
            "It is ada at example dot com.",
            "Hold on a moment.",
            "Are you still there?",
            "Call me back at +1 415 555 0134.",
        ],
    )

    # First kill: whichever replica holds the email turn. It restarts in the
    # background while the call goes on, so the next held-back turn is seen
    # (and killed) as soon as it arrives, not after the restart.
    held = wait_for_llm_request(fake_llm, "example dot com", after=0)
    first_victim = held.body["model"]
    replicas[first_victim].kill()
    with ThreadPoolExecutor(max_workers=1) as background:
        restarted = background.submit(replicas[first_victim].start)
        # Second kill: whichever replica holds that turn (the restarted one
        # only once it is up).
        held_again = wait_for_llm_request(fake_llm, "still there", after=held.index + 1)
        second_victim = held_again.body["model"]
        if second_victim == first_victim:
            restarted.result()
        replicas[second_victim].kill()
    restarted.result()
    replicas[second_victim].start()

    played = stack.played(call)
    document = stack.completed_document(call.call_id)
    requests = turn_requests(fake_llm.control.requests())
    check_and_report(
        "1",
        "dialog SIGKILLed mid-turn twice, second replica present",
        [(document, played)],
        faults_injected=2,
    ).assert_clean()
    # The held-back turns were answered by the surviving replica, from the document.
    for pattern, victim in (("example dot com", first_victim), ("still there", second_victim)):
        served = [r for r in requests if re.search(pattern, last_user_line(r))]
        assert [r.body["model"] for r in served][-1] != victim, served
    # The restarted replica took part again.
    assert first_victim in {r.body["model"] for r in requests[held.index + 1 :]}
    assert_every_request_had_the_whole_history(requests, document)
    # No turn needed gateway's fallback: the other replica answered in time.
    assert played.lines("agent")[1:] == [
        "Thanks, Ada. What is your email?",
        "Got it. Anything else?",
        "Sure, take your time.",
        "Yes, I am here. What is your callback number?",
        played.lines("agent")[-1],
    ]
    assert document["ended_by"] == "system_complete"
    assert document["data_collected"] == {
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "callback_phone": "+14155550134",
    }
    assert tap.count_by_call("call.completed") == {call.call_id: 1}


def test_single_replica_killed_and_restarted_mid_turn(
    stack: RunningStack, fake_llm: FakeOpenAIProcess
) -> None:
    for replica in stack.extra:
        replica.stop()
    fake_llm.control.reset()
    name = record_data("full_name", "Grace Hopper")
    fake_llm.control.add_rules(
        [
            answer("Grace Hopper", "Thanks, Grace. What is your email?", name),
            held_back_once("navy dot mil"),
            answer("navy dot mil", "Got it.", record_data("email", "grace@navy.mil")),
            answer("Hold on", "Sure, take your time."),
        ]
    )
    tap = stack.tap("call.completed")
    call = place_call_saying(
        stack,
        AGENT_ID,
        "+15005550202",
        [
            "This is Grace Hopper.",
            "It is grace at navy dot mil.",
            "Hold on a moment.",
            "Goodbye!",
        ],
        {"name": "Grace"},
    )

    wait_for_llm_request(fake_llm, "navy dot mil", after=0)
    stack.dialog.kill()
    stack.dialog.start()

    played = stack.played(call)
    document = stack.completed_document(call.call_id)
    check_and_report(
        "1", "dialog SIGKILLed mid-turn and restarted, single replica", [(document, played)]
    ).assert_clean()
    assert_every_request_had_the_whole_history(turn_requests(fake_llm.control.requests()), document)
    # Whether the restarted process took the turn back in time or gateway fell
    # back and the callee went on, the call reached its goodbye.
    assert document["ended_by"] == "user_goodbye"
    assert played.lines("callee")[-1] == "Goodbye!"
    assert document["turns"][-2]["content"] == "Goodbye!"
    assert tap.count_by_call("call.completed") == {call.call_id: 1}
