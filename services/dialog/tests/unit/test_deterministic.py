"""The deterministic policy (no LLM configured) completes a data-collection call alone."""

from __future__ import annotations

from dialog_doubles import RecordingEvents, make_agent, make_call

from callbot.common.contracts import (
    CallEnding,
    CallTurnRecorded,
    DialogReply,
    DialogStart,
    DialogTurn,
)
from callbot.common.messaging import Deadline
from callbot.dialog.agent_cache import AgentCache
from callbot.dialog.handlers import DeterministicConversation, DialogPorts, handle_request
from callbot.dialog.sessions import SessionRegistry
from callbot.dialog.store import InMemoryDialogStore


def deterministic_ports(events: RecordingEvents) -> DialogPorts:
    store = InMemoryDialogStore()
    store.agents["acme"] = make_agent()
    store.calls["call-1"] = make_call()
    agents = AgentCache(store)
    return DialogPorts(
        sessions=SessionRegistry(store, agents, max_size=100),
        agents=agents,
        model=DeterministicConversation(),
        events=events,
    )


async def test_asks_each_field_reasks_invalid_ones_and_completes() -> None:
    events = RecordingEvents()
    ports = deterministic_ports(events)
    start = DialogStart(call_id="call-1", agent_id="acme", call_sid="CA1")
    greeting = await handle_request(start, Deadline.after(4), ports)
    assert greeting.say.endswith("What is your full name?")

    script = [
        ("Sure, it's Ada Lovelace.", "Thank you. Could you tell me your email address?"),
        (
            "it's ada at example",
            "Sorry, I didn't get a valid email address. Could you tell me your email address?",
        ),
        (
            "thank you, my email is ada at example dot com",
            "Thank you. Could you tell me your callback phone number?",
        ),
        ("", make_agent().reprompt_message),
        ("four one five, five five five, two six seven one", None),
    ]
    seq = greeting.next_seq
    for speech, expected in script:
        reply = await handle_request(
            DialogTurn(call_id="call-1", seq=seq, speech=speech), Deadline.after(4), ports
        )
        seq = reply.next_seq
        if expected is not None:
            assert (reply.say, reply.action) == (expected, "gather")

    assert (reply.action, reply.ended_by) == ("hangup", "system_complete")
    assert reply.say == "Thank you, Ada, I have everything. Goodbye!"
    last_turn = [e for e in events.published if isinstance(e, CallTurnRecorded)][-1]
    assert last_turn.data_complete
    assert last_turn.data_collected == {
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "callback_phone": "+14155552671",
    }
    assert isinstance(events.published[-1], CallEnding)


async def test_silence_times_out_after_max_no_input() -> None:
    ports = deterministic_ports(RecordingEvents())
    start = DialogStart(call_id="call-1", agent_id="acme", call_sid="CA1")
    reply = await handle_request(start, Deadline.after(4), ports)
    for _ in range(3):
        reply = await handle_request(
            DialogTurn(call_id="call-1", seq=reply.next_seq, speech=""), Deadline.after(4), ports
        )
    assert (reply.action, reply.ended_by) == ("hangup", "system_timeout")


async def _converse(ports: DialogPorts, *speeches: str) -> list[DialogReply]:
    start = DialogStart(call_id="call-1", agent_id="acme", call_sid="CA1")
    reply = await handle_request(start, Deadline.after(4), ports)
    replies = [reply]
    for speech in speeches:
        reply = await handle_request(
            DialogTurn(call_id="call-1", seq=reply.next_seq, speech=speech),
            Deadline.after(4),
            ports,
        )
        replies.append(reply)
    return replies


async def test_values_said_in_natural_speech_are_stored_without_the_next_sentence() -> None:
    events = RecordingEvents()
    replies = await _converse(
        deterministic_ports(events),
        "My name is Jane Doe. Thank you.",
        "It's jane at example dot com. Thank you!",
        "Sure, 415 555 2671. Anything else?",
    )
    assert replies[-1].ended_by == "system_complete"
    last_turn = [e for e in events.published if isinstance(e, CallTurnRecorded)][-1]
    assert last_turn.data_collected == {
        "full_name": "Jane Doe",
        "email": "jane@example.com",
        "callback_phone": "+14155552671",
    }


async def test_a_request_to_call_later_ends_politely_with_a_callback_request() -> None:
    events = RecordingEvents()
    replies = await _converse(
        deterministic_ports(events), "I'm busy right now, call me tomorrow at 3 pm."
    )
    assert (replies[-1].action, replies[-1].ended_by) == ("hangup", "user_goodbye")
    assert replies[-1].say == make_agent().goodbye_message
    ending = [e for e in events.published if isinstance(e, CallEnding)][-1]
    assert ending.callback_request is not None
    assert ending.callback_request.when == "tomorrow at 3 pm"
    assert ending.reason == "the callee asked to be called back later"
    last_turn = [e for e in events.published if isinstance(e, CallTurnRecorded)][-1]
    assert last_turn.data_collected == {}


async def test_a_refusal_ends_politely_and_stores_nothing() -> None:
    events = RecordingEvents()
    replies = await _converse(deterministic_ports(events), "Not interested, thanks.")
    assert replies[-1].ended_by == "user_goodbye"
    ending = [e for e in events.published if isinstance(e, CallEnding)][-1]
    assert ending.callback_request is not None
    assert ending.callback_request.when is None
    assert ending.reason == "the callee declined to answer"


async def test_a_question_back_is_answered_and_the_question_asked_again() -> None:
    events = RecordingEvents()
    replies = await _converse(deterministic_ports(events), "Who is this?", "I don't know.")
    assert replies[1].say == (
        "This is Acme Support calling to collect your full name, email address, "
        "callback phone number. Could you tell me your full name?"
    )
    assert replies[2].say == "That's alright, take your time. Could you tell me your full name?"
    assert all(reply.action == "gather" for reply in replies)
    assert all(not e.data_collected for e in events.published if isinstance(e, CallTurnRecorded))


async def test_a_correction_replaces_the_earlier_value_and_the_next_field_is_asked() -> None:
    events = RecordingEvents()
    replies = await _converse(
        deterministic_ports(events),
        "Ada Lovelace.",
        "ada at example dot com.",
        "Sorry, that's ada at example dot org.",
    )
    assert replies[-1].say == (
        "Thank you, I've corrected your email address. "
        "Could you tell me your callback phone number?"
    )
    last_turn = [e for e in events.published if isinstance(e, CallTurnRecorded)][-1]
    assert last_turn.data_collected == {"full_name": "Ada Lovelace", "email": "ada@example.org"}
