"""Issue 13: the stored transcript is what the callee heard, when dialog
answers after gateway's deadline.

dialog is frozen (SIGSTOP) while the scripted LLM works on the callee's name,
for longer than the turn deadline, so gateway speaks its fallback line; thawed,
dialog finishes its reply and publishes it, late. The callee heard the
fallback line, says the name again, and the call ends normally.

Stored and announced: the fallback line (marked `fallback`) at the seq of the
late reply, never the late reply; the callee's words; the data collected; the
ending the callee heard.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from faults_harness import (
    EventTap,
    PlacedCall,
    RunningStack,
    StackOptions,
    agent_definition,
    last_user_line,
    llm_rule,
    place_call_saying,
    record_data,
    wait_until,
)

from callbot.common.fallback_lines import TURN_FALLBACK
from callbot.testkit.fake_openai import FakeOpenAIProcess

pytestmark = pytest.mark.faults

AGENT_ID = "late-dialog"
RELAY_AGENT_ID = "late-dialog-relay"
VOICEMAIL_AGENT_IDS = {"sync": "late-dialog-voicemail-sync", "async": "late-dialog-voicemail-async"}
VOICEMAIL = "Hello {recipient.name}, this is Ava from {agent.name}. We will call you back later."
NAME_FIELD = [{"name": "full_name", "description": "full name", "type": "string"}]


@pytest.fixture(scope="module")
def stack_options(fake_llm: FakeOpenAIProcess) -> StackOptions:
    return StackOptions(
        agents={
            AGENT_ID: agent_definition(data_to_fill=NAME_FIELD, few_shot=[], past_calls=0),
            RELAY_AGENT_ID: agent_definition(
                data_to_fill=NAME_FIELD,
                few_shot=[],
                past_calls=0,
                transport={"type": "conversation_relay"},
            ),
            **{
                agent_id: agent_definition(
                    machine_detection=detection, voicemail_message=VOICEMAIL, past_calls=0
                )
                for detection, agent_id in VOICEMAIL_AGENT_IDS.items()
            },
        },
        openai_base_url=fake_llm.base_url,
    )


def answer_late(stack: RunningStack, fake_llm: FakeOpenAIProcess, call: PlacedCall) -> None:
    """Freeze dialog while the LLM works on the callee's name, until gateway's
    fallback line is stored (past the deadline, gateway spoke it and said so
    with `call.fallback`); thawed, dialog finishes its reply, late."""
    wait_until(
        lambda: any("My name is" in str(r.body["messages"]) for r in fake_llm.control.requests()),
        "dialog to ask the LLM about the name",
    )
    with dialog_frozen(stack):
        wait_for_fallback_stored(stack, call)


@contextmanager
def dialog_frozen(stack: RunningStack) -> Iterator[None]:
    dialog_pid = stack.dialog.pid
    assert dialog_pid is not None
    os.kill(dialog_pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(dialog_pid, signal.SIGCONT)


def wait_for_fallback_stored(stack: RunningStack, call: PlacedCall) -> None:
    wait_until(
        lambda: any(
            t.get("fallback") for t in (stack.document(call.call_id) or {}).get("turns", [])
        ),
        "gateway's fallback line stored",
        timeout_s=30,
    )


def answer_started(stack: RunningStack, call: PlacedCall) -> bool:
    """Tokens of the answer to the callee's name reached the callee (the emulator)."""
    replies = stack.emulator.call(call.call_sid).relay_replies
    return any(reply.after.startswith("My name is") and reply.tokens for reply in replies)


def published_lines(tap: EventTap, call: PlacedCall, *, seq: int) -> list[str]:
    """The lines dialog's `call.turn` events of the call put at `seq`."""
    return [
        turn["content"]
        for event in tap.of_type("call.turn")
        if event["call_id"] == call.call_id
        for turn in event["turns"]
        if turn["seq"] == seq
    ]


def test_the_stored_line_is_the_fallback_the_callee_heard_not_the_late_reply(
    stack: RunningStack, fake_llm: FakeOpenAIProcess
) -> None:
    fake_llm.control.reset()
    fake_llm.control.add_rules(
        [
            llm_rule("^My name is", {
                "text": "Thank you!", "tool_calls": [record_data("full_name", "Ada Lovelace")],
                "delay_s": 1.0}),
            llm_rule("^Ada Lovelace", {
                "text": "Thank you!", "tool_calls": [record_data("full_name", "Ada Lovelace")]}),
        ]
    )  # fmt: skip
    tap = stack.tap("call.turn", "call.completed")
    call = place_call_saying(
        stack, AGENT_ID, "+15005550531", ["My name is Ada Lovelace.", "Ada Lovelace."]
    )
    answer_late(stack, fake_llm, call)
    [(document, played)] = stack.finished([call])

    heard = played.lines("agent")
    assert heard[1] == TURN_FALLBACK
    turns = document["turns"]
    # The stored assistant turns are exactly the lines the callee heard.
    assert [t["content"] for t in turns if t["role"] == "assistant"] == heard
    assert [(t["seq"], t["role"]) for t in turns] == [
        (seq, "assistant" if seq % 2 == 0 else "user") for seq in range(5)
    ]
    assert (turns[2]["content"], turns[2]["fallback"]) == (TURN_FALLBACK, True)
    assert [t["content"] for t in turns if t["role"] == "user"] == [
        "My name is Ada Lovelace.",
        "Ada Lovelace.",
    ]
    # dialog did answer the name, late: that reply was published, and not kept.
    late = published_lines(tap, call, seq=2)
    assert late
    assert TURN_FALLBACK not in late
    assert document["data_collected"] == {"full_name": "Ada Lovelace"}
    assert (document["ended_by"], document["ending_seq"]) == ("system_complete", 4)
    [completed] = [e for e in tap.of_type("call.completed") if e["call_id"] == call.call_id]
    announced = completed["call"]
    assert [_line(turn) for turn in announced["turns"]] == [_line(turn) for turn in turns]
    assert (announced["ended_by"], announced["data_collected"]) == (
        "system_complete",
        {"full_name": "Ada Lovelace"},
    )


def _line(turn: dict[str, Any]) -> tuple[int, str, str, bool]:
    return (turn["seq"], turn["role"], turn["content"], turn.get("fallback", False))


# Streamed slowly: its first clause goes out long before the turn's deadline.
SLOW_ANSWER = {
    "text": "Thank you, Ada. Please hold on while I look up one more detail for you.",
    "first_token_s": 0.05,
    "token_interval_s": 0.5,
}


@pytest.mark.parametrize(
    ("went_out", "spoken_over", "to"),
    [
        ("nothing", False, "+15005550532"),
        ("start", False, "+15005550535"),
        ("nothing", True, "+15005550536"),
    ],
)
def test_over_the_relay_the_stored_line_is_the_fallback_the_callee_heard(
    stack: RunningStack, fake_llm: FakeOpenAIProcess, went_out: str, spoken_over: bool, to: str
) -> None:
    """The same late reply on a ConversationRelay call: gateway speaks its
    fallback line over the socket, stores it (`call.fallback`), and the
    model's next request holds that line, not the late reply. "start": dialog
    froze after the start of its answer went out; the callee heard that start,
    then the fallback line, and that is the stored line. `spoken_over`: the
    callee says the name again over the fallback line (barge-in): the line is
    stored as the callee's interruption left it, still a fallback line."""
    late_answer = (
        {"text": "Thank you, Ada!", "delay_s": 1.0} if went_out == "nothing" else SLOW_ANSWER
    )
    fake_llm.control.reset()
    fake_llm.control.add_rules(
        [
            llm_rule("^My name is", late_answer),
            llm_rule("^Ada Lovelace", {
                "text": "Thank you!", "tool_calls": [record_data("full_name", "Ada Lovelace")]}),
        ]
    )  # fmt: skip
    tap = stack.tap("call.turn")
    again = {"say": "Ada Lovelace.", **({"barge_in_after_tokens": 1} if spoken_over else {})}
    stack.emulator.add_scenario(
        {"to": to, "speed": 50, "steps": [{"say": "My name is Ada Lovelace."}, again]}
    )
    call = stack.place_call(RELAY_AGENT_ID, to)
    if went_out == "nothing":
        answer_late(stack, fake_llm, call)
    else:
        wait_until(lambda: answer_started(stack, call), "the start of the answer over the socket")
        with dialog_frozen(stack):
            wait_for_fallback_stored(stack, call)
    [(document, played)] = stack.finished([call])

    apology = played.relay_replies[1].text
    assert played.relay_replies[1].interrupted == spoken_over
    if went_out == "nothing":
        assert apology == TURN_FALLBACK
    else:
        start = apology.removesuffix(TURN_FALLBACK)
        assert start.startswith("Thank you,")
        assert SLOW_ANSWER["text"].startswith(start.rstrip())
    heard = played.lines("agent")
    turns = document["turns"]
    # The stored assistant turns are exactly the lines the callee heard (the
    # last one: the model's words over the socket, then the closing <Say>).
    assistant = [t["content"] for t in turns if t["role"] == "assistant"]
    assert heard[:-2] == assistant[:-1]
    assert " ".join(heard[-2:]) == assistant[-1]
    assert [(t["seq"], t["role"]) for t in turns] == [
        (seq, "assistant" if seq % 2 == 0 else "user") for seq in range(5)
    ]
    assert (turns[2]["content"], turns[2]["fallback"]) == (apology, True)
    assert turns[2]["interrupted"] == spoken_over
    # dialog answered the name late: published, not kept.
    late = published_lines(tap, call, seq=2)
    assert late
    assert TURN_FALLBACK not in late
    # The model's next request builds on what the callee heard.
    [after] = [r for r in fake_llm.control.requests() if last_user_line(r) == "Ada Lovelace."]
    history = [(m["role"], m["content"]) for m in after.body["messages"] if m["role"] != "system"]
    assert ("assistant", TURN_FALLBACK) in history
    assert not any(content in late for role, content in history if role == "assistant")
    assert (document["ended_by"], document["data_collected"]) == (
        "system_complete",
        {"full_name": "Ada Lovelace"},
    )


@pytest.mark.parametrize(("detection", "to"), [("sync", "+15005550533"), ("async", "+15005550534")])
def test_a_machine_gets_the_agents_voicemail_message_when_dialog_is_late(
    stack: RunningStack, detection: str, to: str
) -> None:
    """sync: dialog is frozen before the answer webhook asks it for the message.
    async: dialog greets, and is frozen before machine detection's result comes.
    Either way gateway leaves the agent's own message, rendered for the call,
    and stores it: what is stored is what the machine heard."""
    # Detection takes long enough at real speed for the greeting to be stored first.
    scenario = {
        "to": to,
        "speed": 1,
        "answered_by": "machine_end_beep",
        "amd_duration_ms": 3000,
        "steps": [],
    }
    stack.emulator.add_scenario(scenario)
    if detection == "sync":
        with dialog_frozen(stack):
            call = stack.place_call(VOICEMAIL_AGENT_IDS[detection], to, {"name": "Ada"})
            wait_for_fallback_stored(stack, call)
    else:
        call = stack.place_call(VOICEMAIL_AGENT_IDS[detection], to, {"name": "Ada"})
        stack.wait_for_greeting(call)
        with dialog_frozen(stack):
            wait_for_fallback_stored(stack, call)
    [(document, played)] = stack.finished([call])

    message = "Hello Ada, this is Ava from Acme Support. We will call you back later."
    heard = played.lines("agent")
    assert played.answered_by == "machine_end_beep"
    assert heard[-1] == message
    assert len(heard) == (1 if detection == "sync" else 2)
    assert [t["content"] for t in document["turns"]] == heard
    line = document["turns"][-1]
    assert (line["seq"], line["role"], line["fallback"]) == (len(heard) - 1, "assistant", True)
    assert (document["answered_by"], document["ended_by"]) == ("machine_end_beep", "voicemail")
