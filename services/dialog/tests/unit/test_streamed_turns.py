"""Streamed turns (ConversationRelay) against in-memory ports: the same turn
as `dialog.turn`, its text sent as it is written; the stored line is what
went out; a cancelled answer still stores the callee's words."""

from __future__ import annotations

import asyncio

from dialog_doubles import RecordingEvents, ScriptedModel, make_agent, make_call, said

from callbot.common.calls import Turn
from callbot.common.contracts import (
    CallEnding,
    CallTurnInterrupted,
    CallTurnRecorded,
    DialogReply,
    DialogStart,
    DialogTurn,
)
from callbot.common.messaging import Deadline
from callbot.common.streaming import heard_line, still_to_send
from callbot.dialog.agent_cache import AgentCache
from callbot.dialog.domain.actions import ModelAnswer, RecordData
from callbot.dialog.handlers import (
    DialogPorts,
    handle_event,
    handle_request,
    handle_streamed_request,
)
from callbot.dialog.sessions import SessionRegistry
from callbot.dialog.store import InMemoryDialogStore

START = DialogStart(call_id="call-1", agent_id="acme", call_sid="CAcall-1")


class Relay:
    def __init__(self, model: ScriptedModel) -> None:
        self.store = InMemoryDialogStore()
        self.store.agents["acme"] = make_agent(
            data_to_fill=[{"name": "full_name", "description": "full name", "type": "string"}]
        )
        self.store.calls["call-1"] = make_call()
        self.events = RecordingEvents()
        self.model = model
        agents = AgentCache(self.store)
        self.ports = DialogPorts(
            sessions=SessionRegistry(self.store, agents, max_size=10),
            agents=agents,
            model=model,
            events=self.events,
        )
        self.chunks: list[str] = []

    async def emit(self, text: str) -> None:
        self.chunks.append(text)

    async def streamed(self, request: DialogStart | DialogTurn) -> DialogReply:
        return await handle_streamed_request(request, Deadline.after(4), self.ports, self.emit)

    def stored_lines(self) -> list[tuple[int, str]]:
        return [
            (turn.seq, turn.content)
            for event in self.events.published
            if isinstance(event, CallTurnRecorded)
            for turn in event.turns
        ]


async def test_the_model_text_goes_out_at_clause_boundaries_and_is_stored_whole() -> None:
    relay = Relay(ScriptedModel([ModelAnswer("Nice to meet you, Ada. How are you today?")]))
    greeting = await relay.streamed(START)
    assert relay.chunks == [greeting.say]
    relay.chunks.clear()
    reply = await relay.streamed(DialogTurn(call_id="call-1", seq=1, speech="Hello"))
    assert relay.chunks == ["Nice to meet you, ", "Ada. ", "How are you today?"]
    assert reply.say == "Nice to meet you, Ada. How are you today?"
    assert relay.stored_lines()[-2:] == [(1, "Hello"), (2, reply.say)]


async def test_a_closing_line_follows_what_already_went_out() -> None:
    # The model thanked, then recorded the last field: the completion line follows.
    answer = ModelAnswer("Thanks, Ada Lovelace!", (RecordData("full_name", "Ada Lovelace"),))
    relay = Relay(ScriptedModel([answer]))
    await relay.streamed(START)
    relay.chunks.clear()
    reply = await relay.streamed(DialogTurn(call_id="call-1", seq=1, speech="Ada Lovelace"))
    closing = "Thank you, Ada, I have everything. Goodbye!"
    # The closing line is left to gateway (spoken before the hang-up).
    assert "".join(relay.chunks) == "Thanks, Ada Lovelace!"
    assert reply.say == f"Thanks, Ada Lovelace! {closing}"
    assert still_to_send("".join(relay.chunks), reply.say).strip() == closing
    assert (reply.action, reply.ended_by) == ("hangup", "system_complete")
    assert relay.stored_lines()[-1] == (2, reply.say)
    assert any(isinstance(event, CallEnding) for event in relay.events.published)


async def test_a_cancelled_answer_stores_the_words_and_what_went_out_then_goes_on() -> None:
    model = ScriptedModel(
        [ModelAnswer("Sure, let me explain. It is a long story.")], hold_after_words=5
    )
    relay = Relay(model)
    await relay.streamed(START)
    relay.chunks.clear()
    turn = asyncio.create_task(
        relay.streamed(DialogTurn(call_id="call-1", seq=1, speech="Tell me more"))
    )
    await model.holding.wait()
    turn.cancel()
    await asyncio.gather(turn, return_exceptions=True)
    assert turn.cancelled()
    assert relay.chunks == ["Sure, ", "let me explain. "]
    assert relay.stored_lines()[-2:] == [(1, "Tell me more"), (2, "Sure, let me explain.")]

    # gateway tells what was heard; the next turn's context holds only that.
    heard = Turn(seq=2, role="assistant", content="Sure,", at=said(2, "").at, interrupted=True)
    await handle_event(CallTurnInterrupted(call_id="call-1", turn=heard), relay.ports)
    model.hold_after_words = None
    reply = await handle_request(
        DialogTurn(call_id="call-1", seq=3, speech="No, stop."), Deadline.after(4), relay.ports
    )
    assert reply.next_seq == 5
    context, _ = model.calls[-1]
    assert [(t.seq, t.content) for t in context][-1] == (2, "Sure,")


def test_heard_line_and_the_rest_to_send() -> None:
    assert heard_line("", "Hello there.") == "Hello there."
    assert heard_line("Hello ", "Hello there.") == "Hello there."
    assert heard_line("Got it. ", "Sorry, I need your email.") == (
        "Got it. Sorry, I need your email."
    )
    for sent, line in [
        ("Hello ", "Hello there."),
        ("Hello", "Hello there."),
        ("Got it. ", "Got it. Sorry."),
        ("", "All of it."),
    ]:
        whole = heard_line(sent, line)
        rest = still_to_send(sent, whole)
        assert (sent + rest).split() == whole.split()
