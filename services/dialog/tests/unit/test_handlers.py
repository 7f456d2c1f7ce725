"""dialog.start / dialog.turn against in-memory ports: seq, idempotency, endings, events."""

from __future__ import annotations

import pytest
from dialog_doubles import (
    T0,
    ManualClock,
    RecordingEvents,
    ScriptedModel,
    make_agent,
    make_call,
    said,
)

from callbot.common.calls import Turn
from callbot.common.contracts import (
    AgentUpdated,
    CallEnding,
    CallStatusChanged,
    CallTurnInterrupted,
    CallTurnRecorded,
    DialogReply,
    DialogStart,
    DialogTurn,
)
from callbot.common.fallback_lines import GREETING_FALLBACK, TURN_FALLBACK
from callbot.common.messaging import Deadline
from callbot.common.recipients import CollectedValue, RecipientDocument, recipient_key
from callbot.dialog.agent_cache import AgentCache, AgentNotFound
from callbot.dialog.domain.actions import EndCall, ModelAnswer, RecordData
from callbot.dialog.domain.prompt import collection_status
from callbot.dialog.handlers import DialogPorts, handle_event, handle_request
from callbot.dialog.sessions import CallNotFound, SessionRegistry
from callbot.dialog.store import InMemoryDialogStore

START = DialogStart(call_id="call-1", agent_id="acme", call_sid="CAcall-1", to="+14155550100")


class Harness:
    def __init__(self, model: ScriptedModel | None = None, max_sessions: int = 100) -> None:
        self.store = InMemoryDialogStore()
        self.store.agents["acme"] = make_agent()
        self.store.calls["call-1"] = make_call()
        self.events = RecordingEvents()
        self.model = model or ScriptedModel()
        self.clock = ManualClock()
        agents = AgentCache(self.store)
        self.ports = DialogPorts(
            sessions=SessionRegistry(self.store, agents, max_size=max_sessions),
            agents=agents,
            model=self.model,
            events=self.events,
            clock=self.clock,
        )

    async def start(self, **changes: object) -> DialogReply:
        return await handle_request(START.model_copy(update=changes), Deadline.after(4), self.ports)

    async def turn(self, seq: int, speech: str, *, after_fallback: bool = False) -> DialogReply:
        request = DialogTurn(
            call_id="call-1", seq=seq, speech=speech, after_fallback=after_fallback
        )
        return await handle_request(request, Deadline.after(4), self.ports)

    def turns_published(self) -> list[tuple[int, str, str]]:
        return [
            (turn.seq, turn.role, turn.content)
            for e in self.events.published
            if isinstance(e, CallTurnRecorded)
            for turn in e.turns
        ]


async def test_start_greets_as_turn_zero_and_publishes_it() -> None:
    harness = Harness()
    reply = await harness.start()
    assert reply.say == "Hi Ada, this is Ava from Acme Support. What is your full name?"
    assert (reply.action, reply.next_seq, reply.ended_by) == ("gather", 1, None)
    assert (reply.voice, reply.language) == ("Polly.Joanna", "en-US")
    assert harness.turns_published() == [(0, "assistant", reply.say)]


async def test_repeated_start_returns_the_greeting_without_a_new_turn() -> None:
    harness = Harness()
    first = await harness.start()
    again = await harness.start()
    assert again.say == first.say
    assert again.next_seq == 1
    assert len(harness.events.published) == 1


async def test_machine_answer_leaves_the_voicemail_and_hangs_up() -> None:
    harness = Harness()
    reply = await harness.start(answered_by="machine_end_beep")
    assert reply.say == "Hello, this is Acme Support. We will call back."
    assert (reply.action, reply.ended_by) == ("hangup", "voicemail")
    assert harness.turns_published() == [(0, "assistant", reply.say)]
    ending = harness.events.published[-1]
    assert isinstance(ending, CallEnding)
    assert ending.ended_by == "voicemail"


async def test_async_machine_detection_after_the_greeting_appends_the_voicemail() -> None:
    harness = Harness()
    await harness.start()
    reply = await harness.start(answered_by="machine_start")
    assert (reply.action, reply.next_seq) == ("hangup", 2)
    assert [seq for seq, _, _ in harness.turns_published()] == [0, 1]
    again = await harness.start(answered_by="machine_start")
    assert again.say == reply.say
    assert len(harness.events.published) == 3  # greeting, voicemail, call.ending


async def test_turn_records_user_and_assistant_turns_before_replying() -> None:
    harness = Harness(
        ScriptedModel([ModelAnswer("Thanks Ada! Your email?", (RecordData("full_name", "Ada"),))])
    )
    await harness.start()
    reply = await harness.turn(1, "It's Ada")
    assert (reply.say, reply.action, reply.next_seq) == ("Thanks Ada! Your email?", "gather", 3)
    assert harness.turns_published()[1:] == [
        (1, "user", "It's Ada"),
        (2, "assistant", "Thanks Ada! Your email?"),
    ]
    # One event for the exchange: both turns, and the data collected after them.
    [_greeting, exchange] = harness.events.published
    assert isinstance(exchange, CallTurnRecorded)
    assert [turn.seq for turn in exchange.turns] == [1, 2]
    assert exchange.data_collected == {"full_name": "Ada"}
    assert not exchange.data_complete


async def test_a_duplicate_turn_gets_the_recorded_answer_without_the_model() -> None:
    harness = Harness(ScriptedModel([ModelAnswer("First answer.")]))
    await harness.start()
    first = await harness.turn(1, "hello")
    published = len(harness.events.published)
    duplicate = await harness.turn(1, "hello")
    assert duplicate == first
    assert len(harness.model.calls) == 1
    assert len(harness.events.published) == published


async def test_other_speech_at_a_taken_seq_is_appended_after_the_last_turn() -> None:
    harness = Harness(ScriptedModel([ModelAnswer("One."), ModelAnswer("Two.")]))
    await harness.start()
    await harness.turn(1, "hello")
    # gateway fell back on its deadline and gathered again with seq 1
    reply = await harness.turn(1, "are you there?")
    assert (reply.say, reply.next_seq) == ("Two.", 5)
    assert [t[:2] for t in harness.turns_published()] == [
        (0, "assistant"),
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "assistant"),
    ]


async def test_a_late_reply_the_callee_never_heard_gives_way_to_gateways_line() -> None:
    # dialog answered "my name is Ada" after gateway's deadline with a closing
    # line; the callee heard TURN_FALLBACK instead, and spoke again.
    closing = ModelAnswer(
        "Thanks Ada, goodbye!", (RecordData("full_name", "Ada"), EndCall("callee is done"))
    )
    harness = Harness(ScriptedModel([closing, ModelAnswer("Got it, Ada.")]))
    await harness.start()
    late = await harness.turn(1, "my name is Ada")
    assert (late.action, late.ended_by) == ("hangup", "user_goodbye")
    # The ending names its closing line, so persistence can void it (call.fallback).
    [ending] = [event for event in harness.events.published if isinstance(event, CallEnding)]
    assert ending.seq == 2
    reply = await harness.turn(3, "Ada. Ada Lovelace.", after_fallback=True)
    # Not the closing line again: the call goes on, from what was really said.
    assert reply.say == "Got it, Ada."
    history_seen_by_model, _heard = harness.model.calls[-1]
    assert [(t.seq, t.content, t.fallback) for t in history_seen_by_model[1:]] == [
        (1, "my name is Ada", False),
        (2, TURN_FALLBACK, True),
    ]
    # The seq after the fallback line, as gateway asked; nothing republished at 2.
    assert [t[0] for t in harness.turns_published()] == [0, 1, 2, 3, 4]


async def test_a_fallback_line_the_callee_spoke_over_voids_the_late_ending_too() -> None:
    # ConversationRelay: as above, and the callee spoke over the fallback line;
    # gateway's cut (`call.turn_interrupted`) reaches dialog before the next turn.
    closing = ModelAnswer(
        "Thanks Ada, goodbye!", (RecordData("full_name", "Ada"), EndCall("callee is done"))
    )
    harness = Harness(ScriptedModel([closing, ModelAnswer("Got it, Ada.")]))
    await harness.start()
    await harness.turn(1, "my name is Ada")
    cut = Turn(
        seq=2, role="assistant", content="Sorry, give", at=T0, fallback=True, interrupted=True
    )
    await handle_event(CallTurnInterrupted(call_id="call-1", turn=cut), harness.ports)
    request = DialogTurn(
        call_id="call-1", seq=3, speech="Ada.", after_fallback=True, interrupted_line=cut
    )
    reply = await handle_request(request, Deadline.after(4), harness.ports)
    # The call goes on from what the callee heard: the cut fallback line.
    assert (reply.say, reply.action) == ("Got it, Ada.", "gather")
    history_seen_by_model, _heard = harness.model.calls[-1]
    assert history_seen_by_model[2] == cut


async def test_after_gateways_greeting_fallback_the_greeting_is_that_line() -> None:
    harness = Harness(ScriptedModel([ModelAnswer("Hi! This is Ava from Acme.")]))
    await harness.start()
    await harness.turn(1, "yes, who is this?", after_fallback=True)
    history_seen_by_model, _heard = harness.model.calls[-1]
    assert (history_seen_by_model[0].content, history_seen_by_model[0].fallback) == (
        GREETING_FALLBACK,
        True,
    )


async def test_model_failure_speaks_the_fallback_and_keeps_the_user_turn() -> None:
    harness = Harness(ScriptedModel([None, ModelAnswer("Sorry, go on.")]))
    await harness.start()
    reply = await harness.turn(1, "my name is Ada")
    assert reply.say == make_agent().fallback_message
    assert reply.action == "gather"
    assert (1, "user", "my name is Ada") in harness.turns_published()
    second = await harness.turn(3, "Ada")
    assert second.say == "Sorry, go on."
    history_seen_by_model = [t.content for t in harness.model.calls[-1][0]]
    assert "my name is Ada" in history_seen_by_model


async def test_a_goodbye_hangs_up_and_publishes_call_ending() -> None:
    harness = Harness()
    await harness.start()
    reply = await harness.turn(1, "no thanks, bye")
    assert (reply.action, reply.ended_by) == ("hangup", "user_goodbye")
    assert harness.model.calls == []
    assert isinstance(harness.events.published[-1], CallEnding)
    late = await harness.turn(3, "hello?")
    assert (late.action, late.say) == ("hangup", reply.say)


async def test_session_is_rebuilt_from_the_call_document_after_eviction() -> None:
    harness = Harness(ScriptedModel([ModelAnswer("One."), ModelAnswer("Two.")]))
    await harness.start()
    await harness.turn(1, "hello")
    # persistence stored the turns; the session then leaves this replica's cache
    harness.store.calls["call-1"] = make_call(
        turns=[said(0, "Hi"), said(1, "hello"), said(2, "One.")],
        data_collected={"full_name": "Ada"},
    )
    await handle_event(
        CallStatusChanged(call_id="call-1", call_sid="CA", status="completed"), harness.ports
    )
    reply = await harness.turn(3, "what now?")
    assert reply.next_seq == 5
    seen, heard = harness.model.calls[-1]
    assert [t.content for t in seen] == ["Hi", "hello", "One."]
    assert heard.content == "what now?"


async def test_a_full_session_cache_drops_the_least_recent_call_and_rebuilds_it() -> None:
    harness = Harness(ScriptedModel([ModelAnswer("One."), ModelAnswer("Two.")]), max_sessions=1)
    await harness.start()
    await harness.turn(1, "hello")
    harness.store.calls["call-2"] = make_call("call-2")
    await harness.start(call_id="call-2", call_sid="CAcall-2")  # call-1 leaves the cache
    harness.store.calls["call-1"] = make_call(
        turns=[said(0, "Hi"), said(1, "hello"), said(2, "From the document.")]
    )
    reply = await harness.turn(3, "what now?")
    assert reply.next_seq == 5
    seen, _heard = harness.model.calls[-1]
    assert [t.content for t in seen] == ["Hi", "hello", "From the document."]


async def test_a_turn_for_an_unknown_call_is_an_error() -> None:
    harness = Harness()
    del harness.store.calls["call-1"]
    with pytest.raises(CallNotFound):
        await handle_request(
            DialogTurn(call_id="call-1", seq=1, speech="hi"), Deadline.after(0.3), harness.ports
        )


async def test_unknown_agent_is_an_error() -> None:
    harness = Harness()
    with pytest.raises(AgentNotFound, match="nope"):
        await harness.start(agent_id="nope")


async def test_agent_updated_drops_the_cached_agent() -> None:
    harness = Harness()
    await harness.ports.agents.get("acme")
    harness.store.agents["acme"] = make_agent(name="Acme Two", version=2)
    assert (await harness.ports.agents.get("acme")).name == "Acme Support"
    await handle_event(AgentUpdated(agent_id="acme", version=2), harness.ports)
    assert (await harness.ports.agents.get("acme")).name == "Acme Two"


def _known_recipient(harness: Harness) -> None:
    key = recipient_key("acme", "+14155550100")
    value = CollectedValue(value="Ada Lovelace", call_id="call-0", at=T0)
    harness.store.recipients[key] = RecipientDocument(
        key=key,
        agent_id="acme",
        to="+14155550100",
        data_collected={"full_name": value, "not_a_field_of_acme": value},
    )


async def test_known_data_from_earlier_calls_counts_as_collected() -> None:
    harness = Harness()
    _known_recipient(harness)
    await harness.start()
    [greeting] = [e for e in harness.events.published if isinstance(e, CallTurnRecorded)]
    assert greeting.data_collected == {"full_name": "Ada Lovelace"}
    session = harness.ports.sessions.evict("call-1")
    assert session is not None
    status = collection_status(session)
    assert "Known from earlier calls (do not ask for these again): full_name=Ada Lovelace" in status
    assert "- full_name" not in status


async def test_known_data_is_reconfirmed_when_the_agent_says_so() -> None:
    harness = Harness()
    harness.store.agents["acme"] = make_agent(reconfirm_known_data=True)
    _known_recipient(harness)
    await harness.start()
    [greeting] = [e for e in harness.events.published if isinstance(e, CallTurnRecorded)]
    assert greeting.data_collected == {}
    session = harness.ports.sessions.evict("call-1")
    assert session is not None
    status = collection_status(session)
    assert "Known from earlier calls: full_name=Ada Lovelace. Confirm each" in status
    assert "- full_name" in status
