"""Issue 6, "Must show" 1-7: whole calls through gateway, dialog and persistence
as separate processes, the Twilio emulator, the scripted LLM, RabbitMQ and
MongoDB. Each test checks the stored call document against what the emulator
(Twilio's side) played, and the `call.completed` a subscriber received.

The tests share one stack (see conftest.py); each uses an agent and a `to`
number of its own, and its LLM rules match only its own agent's prompt.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_harness import (
    E2EStack,
    FinishedCall,
    agent_definition,
    end_call,
    llm_rule,
    record_data,
    wait_until,
)

from callbot.common.calls import CallDocument
from callbot.common.contracts import CallAnswered, CallAnsweredBy
from callbot.dialog.domain.summary import SUMMARY_INSTRUCTIONS
from callbot.testkit.fake_openai import RecordedRequest
from callbot.testkit.stack import FROM_NUMBER

pytestmark = pytest.mark.e2e

# persistence's outbox bookkeeping (not part of the event), and what may still change
# after the publication was claimed (a late recording is announced separately, a
# late summary by call.summarized).
AFTER_PUBLICATION = {
    "completed_claimed_at",
    "completed_published_at",
    "updated_at",
    "recording",
    "summary",
    "summary_model",
    "summarized_at",
}
PAST_CALLS_HEADER = "Earlier calls with this person, newest first:"
FIRST_CALL_SUMMARY = "Ada confirmed her full name but declined to give an email today."


def check_transcript(call: FinishedCall, *, alternating: bool = True) -> None:
    """The stored turns are the conversation the callee had, whole and in order
    (agent and callee taking turns, unless a machine took the call)."""
    turns = call.document.turns
    assert [turn.seq for turn in turns] == list(range(len(turns)))
    assert [turn.at for turn in turns] == sorted(turn.at for turn in turns)
    if alternating:
        assert [turn.role for turn in turns] == [
            "assistant" if seq % 2 == 0 else "user" for seq in range(len(turns))
        ]
    # Every line the callee heard, and every utterance the speech recogniser heard.
    assert [t.content for t in turns if t.role == "assistant"] == call.played.lines("agent")
    spoken = [t.content for t in turns if t.role == "user" and not t.no_input]
    assert spoken == call.played.lines("callee")
    assert all(turn.content == "" for turn in turns if turn.no_input)


def check_completed_event(call: FinishedCall) -> None:
    """`call.completed` carries the stored document, as it was when published."""
    event = call.completed
    assert event.call_id == call.placed.call_id
    assert event.call.model_dump(exclude=AFTER_PUBLICATION) == call.document.model_dump(
        exclude=AFTER_PUBLICATION
    )
    assert event.call.completed_claimed_at is None
    assert event.call.completed_published_at is None
    assert call.document.completed_claimed_at is not None


def check_recording(call: FinishedCall, e2e: E2EStack) -> None:
    """The recording Twilio reported is stored, and subscribers learn of it: in
    `call.completed`, or in `call.recording_ready` when it came later."""
    recording = call.document.recording
    assert recording is not None
    assert recording.sid == call.played.recording_sid
    assert recording.status == "completed"
    assert recording.duration_s == call.played.duration_s
    assert recording.url is not None
    assert recording.url.endswith(f"/Recordings/{recording.sid}")
    announced = call.completed.call.recording
    if announced is None:
        ready = e2e.subscriber.recording_ready(call.placed.call_id)
        assert ready, "the recording was in neither call.completed nor call.recording_ready"
        announced = ready[0].recording
    assert announced == recording


def check_twilio_figures(call: FinishedCall) -> None:
    """The document agrees with what Twilio (the emulator) did and reported, and
    gateway answered every webhook of the call without an error."""
    document, played = call.document, call.played
    assert played.errors == []
    assert [
        hook.status_code for hook in played.webhooks if hook.status_code not in (200, 204)
    ] == []
    assert document.call_sid == played.sid
    assert document.status == played.status
    assert document.duration_s == played.duration_s  # Twilio's CallDuration
    assert document.ended_at is not None
    assert document.created_at is not None
    if document.answered_at is not None:
        assert document.answered_at <= document.ended_at


def history(request: RecordedRequest) -> list[tuple[str, str]]:
    """The conversation part of an LLM request: (role, content) of user and assistant."""
    return [
        (message["role"], message["content"])
        for message in request.body["messages"]
        if message["role"] in ("user", "assistant")
    ]


def system_texts(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "system"]


def transcript_pairs(document: CallDocument, up_to_seq: int) -> list[tuple[str, str]]:
    return [
        (turn.role, turn.content or "(the callee said nothing)")
        for turn in document.turns
        if turn.seq <= up_to_seq
    ]


def test_data_collection_call_ends_system_complete(e2e: E2EStack) -> None:
    tag, to = "collect", "+15005550201"
    version = e2e.put_agent("e2e-collect", agent_definition(tag))
    e2e.add_scenario(
        {
            "name": "collect",
            "to": to,
            "steps": [
                {"say": "Yes, this is Ada Lovelace.", "confidence": 0.95},
                {"say": "It's ada at example.", "confidence": 0.61},
                {"say": "Sorry: ada at example dot com.", "confidence": 0.88},
                {"say": "Call me back at 415 555 0134.", "confidence": 0.9},
            ],
        }
    )
    e2e.fake_llm.control.add_rules(
        [
            llm_rule(
                tag,
                "Ada Lovelace",
                text="Thanks, Ada. What email address should we use?",
                tool_calls=[record_data("full_name", "Ada Lovelace")],
            ),
            # The model records what it heard; the validator refuses it.
            llm_rule(
                tag,
                "ada at example\\.$",
                text="Great, thanks.",
                tool_calls=[record_data("email", "ada at example")],
            ),
            llm_rule(
                tag,
                "dot com",
                text="Thank you. And a number we can call you back on?",
                tool_calls=[record_data("email", "ada at example dot com")],
            ),
            llm_rule(tag, "415 555", tool_calls=[record_data("callback_phone", "415 555 0134")]),
        ]
    )

    call = e2e.call("e2e-collect", to, {"name": "Ada"})

    document = call.document
    assert document.status == "completed"
    assert document.ended_by == "system_complete"
    assert document.agent_id == "e2e-collect"
    assert document.agent_version == version
    assert document.to == to
    assert document.from_ == FROM_NUMBER
    assert document.recipient == {"name": "Ada"}
    assert document.answered_by == "human"
    # Every field, validated and normalised by its type.
    assert document.data_collected == {
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "callback_phone": "+14155550134",
    }
    assert document.data_complete is True
    check_transcript(call)
    contents = [turn.content for turn in document.turns]
    assert contents[0] == "Hi Ada, this is Ava from Acme Support. Could you tell me your full name?"
    # The refused email was asked again in our own words, not with the model's "Great".
    assert contents[4] == (
        "Sorry, I didn't get a valid email address. Could you tell me your email address?"
    )
    assert contents[-1] == "Thank you, Ada, I have everything I need. Goodbye!"
    assert [t.confidence for t in document.turns if t.role == "user"] == [0.95, 0.61, 0.88, 0.9]
    assert len(document.turns) == 9
    assert call.played.ended_by == "agent_hangup"  # we hung up, after the closing line
    check_twilio_figures(call)
    assert document.duration_s is not None
    assert document.duration_s > 0
    check_recording(call, e2e)
    check_completed_event(call)
    assert call.completed.call.ended_by == "system_complete"
    assert call.completed.call.data_collected == document.data_collected

    # The model saw the whole call so far, in order, on every turn.
    requests = e2e.llm_requests(tag)
    assert len(requests) == 4
    for request, user_seq in zip(requests, (1, 3, 5, 7), strict=True):
        assert history(request) == transcript_pairs(document, user_seq)
    assert "The value 'ada at example' for email was not recorded" in system_texts(requests[2])[-1]


@pytest.mark.parametrize(
    ("variant", "to"),
    [("model", "+15005550202"), ("plain", "+15005550203")],
    ids=["model-calls-end_call", "plain-goodbye"],
)
def test_callee_says_goodbye(e2e: E2EStack, variant: str, to: str) -> None:
    """The model ends the call when the callee wants to stop ("model"); a bare
    goodbye ends it without asking the model ("plain")."""
    tag, agent_id = f"goodbye-{variant}", f"e2e-goodbye-{variant}"
    e2e.put_agent(agent_id, agent_definition(tag))
    last_words = (
        "Sorry, I'm driving right now and can't talk." if variant == "model" else "No thanks, bye!"
    )
    e2e.add_scenario(
        {
            "name": agent_id,
            "to": to,
            "steps": [{"say": "Yes, this is Grace Hopper."}, {"say": last_words}],
        }
    )
    rules = [
        llm_rule(
            tag,
            "Grace Hopper",
            text="Thank you, Grace. What email address should we use?",
            tool_calls=[record_data("full_name", "Grace Hopper")],
        )
    ]
    if variant == "model":
        rules.append(llm_rule(tag, "driving", tool_calls=[end_call("the callee is driving")]))
    e2e.fake_llm.control.add_rules(rules)

    call = e2e.call(agent_id, to, {"name": "Grace"})

    document = call.document
    assert document.status == "completed"
    assert document.ended_by == "user_goodbye"
    assert document.ending_reason == (
        "the callee is driving" if variant == "model" else "the callee said goodbye"
    )
    check_transcript(call)
    assert [turn.content for turn in document.turns[-2:]] == [
        last_words,
        "Thanks for your time, Grace. Goodbye!",
    ]
    assert len(document.turns) == 5
    assert document.data_collected == {"full_name": "Grace Hopper"}
    assert document.data_complete is False
    assert call.played.ended_by == "agent_hangup"
    check_twilio_figures(call)
    check_recording(call, e2e)
    check_completed_event(call)
    assert call.completed.call.ended_by == "user_goodbye"
    # The model was asked about the goodbye only when it was not a plain one.
    assert len(e2e.llm_requests(tag)) == (2 if variant == "model" else 1)


def test_three_silences_end_with_system_timeout(e2e: E2EStack) -> None:
    # examples/calls/silent.yaml: picks up and never says a word.
    tag, to = "silent", "+15005550101"
    e2e.put_agent("e2e-silent", agent_definition(tag, max_no_input=3))

    call = e2e.call("e2e-silent", to, {"name": "Alan"})

    document = call.document
    assert document.status == "completed"
    assert document.ended_by == "system_timeout"
    check_transcript(call)
    turns = document.turns
    assert [(turn.role, turn.no_input) for turn in turns] == [
        ("assistant", False),
        *[("user", True), ("assistant", False)] * 3,
    ]
    reprompt = "Sorry, I didn't catch that. Could you say that again?"
    assert [turn.content for turn in turns[2:6:2]] == [reprompt, reprompt]
    assert turns[-1].content == ("I haven't heard from you, so I will end the call now. Goodbye!")
    assert call.played.lines("callee") == []
    assert call.played.ended_by == "agent_hangup"
    assert document.data_collected == {}
    check_twilio_figures(call)
    check_recording(call, e2e)
    check_completed_event(call)
    assert call.completed.call.ended_by == "system_timeout"
    assert e2e.llm_requests(tag) == []  # silence never costs a model call


def test_callee_hangs_up_mid_call(e2e: E2EStack) -> None:
    # examples/calls/hangup_midway.yaml: a name, a short silence, then the phone goes down.
    tag, to = "hangup", "+15005550104"
    e2e.put_agent("e2e-hangup", agent_definition(tag))
    e2e.fake_llm.control.add_rules(
        [
            llm_rule(
                tag,
                "Grace Hopper",
                text="Thank you, Grace. What email address should we use?",
                tool_calls=[record_data("full_name", "Grace Hopper")],
            )
        ]
    )

    call = e2e.call("e2e-hangup", to, {"name": "Grace"})

    document = call.document
    assert call.played.ended_by == "callee_hangup"
    assert document.status == "completed"
    assert document.ended_by == "callee_hangup"
    # The transcript up to the hang-up is kept, with what was collected so far.
    check_transcript(call)
    assert [(turn.role, turn.content) for turn in document.turns] == [
        ("assistant", "Hi Grace, this is Ava from Acme Support. Could you tell me your full name?"),
        ("user", "Hello? Yes, this is Grace Hopper."),
        ("assistant", "Thank you, Grace. What email address should we use?"),
        ("user", ""),
        ("assistant", "Sorry, I didn't catch that. Could you say that again?"),
    ]
    assert document.data_collected == {"full_name": "Grace Hopper"}
    assert document.data_complete is False
    check_twilio_figures(call)
    check_recording(call, e2e)
    check_completed_event(call)
    assert call.completed.call.ended_by == "callee_hangup"
    assert len(call.completed.call.turns) == 5


@pytest.mark.parametrize(("detection", "to"), [("sync", "+15005550102"), ("async", "+15005550107")])
def test_answering_machine_gets_the_voicemail_message(
    e2e: E2EStack, detection: str, to: str
) -> None:
    """sync: Twilio waits for the beep before asking for TwiML, and we leave the
    message at once. async: the greeting starts at once; the detection result
    arrives while it plays, and gateway redirects the call to the message."""
    tag, agent_id = f"voicemail-{detection}", f"e2e-voicemail-{detection}"
    e2e.put_agent(agent_id, agent_definition(tag, machine_detection=detection))
    if detection == "async":
        # examples/calls/voicemail.yaml's machine, on a number of its own.
        e2e.add_scenario(
            {
                "name": "voicemail-async",
                "to": to,
                "answered_by": "machine_end_beep",
                "amd_duration_ms": 4200,
                "ring_s": 5,
                "steps": [],
            }
        )

    call = e2e.call(agent_id, to, {"name": "Ada"})

    greeting = "Hi Ada, this is Ava from Acme Support. Could you tell me your full name?"
    message = "Hello Ada, this is Ava from Acme Support. We will call you back later."
    spoken = [message] if detection == "sync" else [greeting, message]
    document = call.document
    assert call.played.answered_by == "machine_end_beep"
    # The message was left: the machine heard it, then we hung up.
    assert call.played.lines("agent") == spoken
    assert call.played.ended_by == "agent_hangup"
    assert document.status == "completed"
    assert document.answered_by == "machine_end_beep"
    assert document.ended_by == "voicemail"
    check_transcript(call, alternating=False)
    assert all(turn.role == "assistant" for turn in document.turns)
    assert [turn.content for turn in document.turns] == spoken
    check_twilio_figures(call)
    check_recording(call, e2e)  # the recording holds the message left
    check_completed_event(call)
    assert call.completed.call.ended_by == "voicemail"
    assert e2e.llm_requests(tag) == []
    # One call.answered per call; the asynchronous detection's result comes on its own.
    assert len(e2e.subscriber.of_call(CallAnswered, call.placed.call_id)) == 1
    detected = e2e.subscriber.of_call(CallAnsweredBy, call.placed.call_id)
    assert [event.answered_by for event in detected] == (
        ["machine_end_beep"] if detection == "async" else []
    )


@pytest.mark.parametrize(
    ("outcome", "to"), [("busy", "+15005550103"), ("no-answer", "+15005550105")]
)
def test_unanswered_call_is_still_completed(e2e: E2EStack, outcome: str, to: str) -> None:
    # busy: examples/calls/busy.yaml; no-answer: rings until gateway's ring timeout.
    tag, agent_id = f"unanswered-{outcome}", f"e2e-{outcome}"
    e2e.put_agent(agent_id, agent_definition(tag))
    if outcome == "no-answer":
        e2e.add_scenario({"name": "no-answer", "to": to, "outcome": "no-answer"})

    call = e2e.call(agent_id, to, {"name": "Ada"})

    document = call.document
    assert call.played.status == outcome
    assert call.played.ended_by == "not_answered"
    assert call.played.webhooks_of("voice") == []  # never answered: no conversation
    assert document.status == outcome
    assert document.ended_by == outcome
    assert document.turns == ()
    assert document.answered_at is None
    assert document.answered_by is None
    assert document.data_collected == {}
    assert document.recording is None  # nothing was recorded
    assert document.duration_s == 0
    check_twilio_figures(call)
    check_completed_event(call)
    assert call.completed.call.status == outcome
    assert call.completed.call.ended_by == outcome
    assert call.completed.call.turns == ()
    assert e2e.llm_requests(tag) == []


def test_second_call_to_a_number_brings_the_first_summary_into_the_llm_context(
    e2e: E2EStack,
) -> None:
    tag, agent_id, to = "memory", "e2e-memory", "+15005550206"
    e2e.put_agent(agent_id, agent_definition(tag, past_calls=5))
    e2e.fake_llm.control.add_rules(
        [
            llm_rule(
                tag,
                "Ada Lovelace",
                text="Thank you, Ada. What email address should we use?",
                tool_calls=[record_data("full_name", "Ada Lovelace")],
            ),
            llm_rule(tag, "rather not", tool_calls=[end_call("declined to give an email")]),
            llm_rule(tag, "Ada again", text="Welcome back, Ada. What email should we use?"),
            # The first call's summary, asked for once it has ended.
            {
                "match": {
                    "system_regex": re.escape(SUMMARY_INSTRUCTIONS[:40]),
                    "any_regex": "rather not give my email",
                },
                "response": {"text": FIRST_CALL_SUMMARY},
                "times": None,
            },
        ]
    )
    e2e.add_scenario(
        {
            "name": "memory-first",
            "to": to,
            "steps": [
                {"say": "Yes, this is Ada Lovelace."},
                {"say": "I'd rather not give my email today."},
            ],
        }
    )
    first = e2e.call(agent_id, to, {"name": "Ada"})
    assert first.document.ended_by == "user_goodbye"
    first_requests = e2e.llm_requests(tag)
    assert len(first_requests) == 2
    stored_first = wait_until(
        lambda: (d := e2e.document(first.placed.call_id)) and d.summary and d,
        "the first call's summary",
    )
    assert stored_first.summary == FIRST_CALL_SUMMARY

    # Same agent, same number: the callee calls back with another script.
    e2e.add_scenario(
        {
            "name": "memory-second",
            "to": to,
            "steps": [{"say": "Hi, it's Ada again."}, {"say": "Okay, bye."}],
        }
    )
    second = e2e.call(agent_id, to, {"name": "Ada"})
    assert second.document.ended_by == "user_goodbye"
    check_completed_event(second)

    requests = e2e.llm_requests(tag)[len(first_requests) :]
    assert len(requests) == 1  # "Okay, bye." needs no model
    (request,) = requests
    messages: list[dict[str, Any]] = request.body["messages"]
    past = [m["content"] for m in messages if m["content"].startswith(PAST_CALLS_HEADER)]
    assert len(past) == 1, f"no earlier-calls message in {messages}"
    context = past[0]
    assert context.count("Call on ") == 1  # the first call, not the one in progress
    assert "(ended: user_goodbye)" in context
    assert "data collected: full_name=Ada Lovelace" in context
    # The first call's summary, not its raw turns.
    assert f"summary: {FIRST_CALL_SUMMARY}" in context
    assert "Yes, this is Ada Lovelace." not in context
    assert "I'd rather not give my email today." not in context
    assert "Thanks for your time, Ada. Goodbye!" not in context
    # Where it goes: after the agent's prompt, before this call's conversation.
    position = messages.index(next(m for m in messages if m["content"] == context))
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith(f"[{tag}]")
    assert all(m["role"] == "system" for m in messages[:position])
    assert history(request) == transcript_pairs(second.document, 1)
    # The first call had nothing earlier to remember.
    assert not any(
        text.startswith(PAST_CALLS_HEADER) for r in first_requests for text in system_texts(r)
    )
    assert re.search(r"Call on \d{4}-\d{2}-\d{2}", context)

    # The recipient record holds both calls, the merged data and the last outcome.
    recipient = e2e.recipient(agent_id, to)
    assert recipient is not None
    assert recipient.call_ids == tuple(sorted((first.placed.call_id, second.placed.call_id)))
    assert (recipient.total_calls, recipient.answered_calls) == (2, 2)
    assert recipient.known_data() == {"full_name": "Ada Lovelace"}
    assert recipient.data_collected["full_name"].call_id in recipient.call_ids
    assert recipient.last_outcome is not None
    assert (recipient.last_outcome.call_id, recipient.last_outcome.ended_by) == (
        second.placed.call_id,
        "user_goodbye",
    )
    assert recipient.profile == {"name": "Ada"}

    # A different agent calling the same number sees none of it.
    other_tag, other_agent = "memory-other", "e2e-memory-other"
    e2e.put_agent(other_agent, agent_definition(other_tag, past_calls=5))
    e2e.fake_llm.control.add_rules(
        [llm_rule(other_tag, "Ada", text="Nice to meet you. What email should we use?")]
    )
    e2e.add_scenario(
        {
            "name": "memory-other",
            "to": to,
            "steps": [{"say": "Hello, Ada here."}, {"say": "Okay, bye."}],
        }
    )
    third = e2e.call(other_agent, to, {"name": "Ada"})
    [other_request] = e2e.llm_requests(other_tag)
    other_texts = [m["content"] for m in other_request.body["messages"]]
    assert not any(text.startswith(PAST_CALLS_HEADER) for text in other_texts)
    assert not any(FIRST_CALL_SUMMARY in text or "Lovelace" in text for text in other_texts)
    other_recipient = e2e.recipient(other_agent, to)
    assert other_recipient is not None
    assert other_recipient.call_ids == (third.placed.call_id,)
    assert other_recipient.known_data() == {}
