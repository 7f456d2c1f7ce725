"""The deterministic policy (no LLM configured) completes a data-collection call alone."""

from __future__ import annotations

from dialog_doubles import RecordingEvents, make_agent, make_call

from callbot.common.contracts import CallEnding, CallTurnRecorded, DialogStart, DialogTurn
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
