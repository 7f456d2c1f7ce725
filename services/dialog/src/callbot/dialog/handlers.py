"""`dialog.start` and `dialog.turn`, run against the ports they are given.

Seq contract (gateway relies on it): the greeting is turn 0 and its reply
says `next_seq=1`; `dialog.turn` with seq N records user turn N and assistant
turn N+1 and replies `next_seq=N+2`. A request whose user turn is already
recorded with the same speech (a duplicated webhook, a redelivered RPC) gets
the recorded answer again, without asking the model or publishing. A request
whose seq is taken by different speech (a call whose gateway re-gathered at
the same seq after a deadline, as it did before `call.fallback`) is appended
after the last turn. A request `after_fallback` tells that the callee heard
gateway's fallback line at `seq - 1`, not whatever dialog answered there too
late: the session takes the line in its place (persistence stores it from
gateway's `call.fallback`).

An exchange is one `call.turn` event (the callee's words and the reply
together), published and confirmed before the reply is returned, so the call
document never lags a spoken line by more than that publish.

A streamed turn (`handle_streamed_turn`, ConversationRelay) is the same turn:
the model's text goes out as it is written, the stored line is what went out
followed by whatever the policy decided (`heard_line`), and the rest of it is
sent once the exchange is published. Cancelled mid-answer (the callee spoke
over it, or hung up), it still records the callee's words and the text that
went out, with the data as it was; gateway then tells what was heard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from callbot.common.agents import Agent
from callbot.common.calls import TERMINAL_STATUSES, EndedBy, Turn, is_machine, user_turn
from callbot.common.contracts import (
    AgentUpdated,
    AnyEvent,
    CallEnding,
    CallStatusChanged,
    CallTurnInterrupted,
    CallTurnRecorded,
    DialogReply,
    DialogStart,
    DialogTurn,
    Event,
    GatherSpec,
    utcnow,
)
from callbot.common.messaging import Deadline, StreamEmit
from callbot.common.streaming import heard_line
from callbot.dialog.agent_cache import AgentCache
from callbot.dialog.domain.actions import ModelAnswer, ModelUnavailable
from callbot.dialog.domain.deterministic import deterministic_answer
from callbot.dialog.domain.passages import (
    Passage,
    retrieval_query,
    with_passages,
    within_budget,
)
from callbot.dialog.domain.policy import (
    answer_without_model,
    apply_model_answer,
    cut_short,
    fallback,
    greet,
    leave_voicemail,
)
from callbot.dialog.domain.session import Exchange, Session, with_spoken_line
from callbot.dialog.domain.tool_loop import model_time_limit, with_tool_calls
from callbot.dialog.metrics import FALLBACKS, KNOWLEDGE_TURNS
from callbot.dialog.sessions import SessionRegistry
from callbot.dialog.streamed_speech import StreamedSpeech
from callbot.dialog.summaries import CallSummarizer

log = logging.getLogger(__name__)

# Kept free at the end of the RPC deadline to publish the turns and reply.
SAFETY_MARGIN_S = 0.3
# Longest wait for persistence to store turns another replica served.
MAX_PERSISTENCE_WAIT_S = 1.5
# A publish gets at least this long even when the deadline is nearly spent:
# a turn the callee heard must reach the call document.
MIN_PUBLISH_TIMEOUT_S = 1.0


class ConversationModel(Protocol):
    async def answer(
        self,
        session: Session,
        heard: Turn,
        budget_s: float,
        speech: StreamedSpeech | None = None,
        passages: Sequence[Passage] = (),
    ) -> ModelAnswer:
        """The model's answer to `heard`, with the knowledge `passages` in its
        context; raises `ModelUnavailable` when it has none in time. With
        `speech`, its text goes out as it is written."""
        ...


class KnowledgeSearch(Protocol):
    def prepare(self, agent: Agent) -> object:
        """Start indexing the agent version's documents, unless done or under way."""
        ...

    async def passages(self, agent: Agent, query: str, time_left_s: float) -> list[Passage] | None:
        """The passages for `query`, best first; None when not ready in time."""
        ...

    def drop(self, agent_id: str) -> None: ...


class EventSink(Protocol):
    async def publish(self, event: Event, *, timeout_s: float = ...) -> None: ...


class DeterministicConversation:
    """The conversation model when no LLM is configured (see `domain.deterministic`).
    Its line is whole at once: a streamed turn sends it after the exchange."""

    async def answer(
        self,
        session: Session,
        heard: Turn,
        budget_s: float,
        speech: StreamedSpeech | None = None,
        passages: Sequence[Passage] = (),
    ) -> ModelAnswer:
        return deterministic_answer(session, heard)  # no model: no use for passages


@dataclass(frozen=True)
class DialogPorts:
    sessions: SessionRegistry
    agents: AgentCache
    model: ConversationModel
    events: EventSink
    clock: Callable[[], datetime] = utcnow
    summaries: CallSummarizer | None = None  # post-call summaries (call.summarized)
    knowledge: KnowledgeSearch | None = None  # the agents' documents (with a model only)


async def handle_request(
    request: DialogStart | DialogTurn, deadline: Deadline, ports: DialogPorts
) -> DialogReply:
    if isinstance(request, DialogStart):
        return await handle_start(request, deadline, ports)
    return await handle_turn(request, deadline, ports)


async def handle_streamed_request(
    request: DialogStart | DialogTurn, deadline: Deadline, ports: DialogPorts, emit: StreamEmit
) -> DialogReply:
    """A request on the streaming queue: a turn streams its answer; a start
    sends its whole line (the greeting is a template, not the model's)."""
    if isinstance(request, DialogTurn):
        return await handle_streamed_turn(request, deadline, ports, emit)
    reply = await handle_start(request, deadline, ports)
    await emit(reply.say)
    return reply


async def handle_start(request: DialogStart, deadline: Deadline, ports: DialogPorts) -> DialogReply:
    async with ports.sessions.exclusive(request.call_id):
        session = await ports.sessions.for_start(request)
        if session.ended_by is not None and session.turns:
            return _say_last_line_again(session)
        if is_machine(request.answered_by):
            exchange = leave_voicemail(session, ports.clock())
        elif session.turns:
            # A repeated start (gateway retried the answer webhook): same greeting, no new turn.
            return _reply(session, session.turns[0], session.next_seq, None)
        else:
            exchange = greet(session, ports.clock())
            if ports.knowledge is not None:
                # Indexed while the greeting plays: the first answer needs it.
                ports.knowledge.prepare(session.agent)
        return await _record(session, exchange, deadline, ports)


async def handle_streamed_turn(
    request: DialogTurn, deadline: Deadline, ports: DialogPorts, emit: StreamEmit
) -> DialogReply:
    """`handle_turn`, its reply sent through `emit` as it is written. A closing
    line is not streamed: gateway has it spoken before the hang-up (the final
    reply holds the whole line; `still_to_send` tells the part not sent)."""
    speech = StreamedSpeech(emit)
    reply = await handle_turn(request, deadline, ports, speech)
    if reply.action != "hangup":
        await speech.finish(reply.say)
    return reply


async def handle_turn(
    request: DialogTurn,
    deadline: Deadline,
    ports: DialogPorts,
    speech: StreamedSpeech | None = None,
) -> DialogReply:
    async with ports.sessions.exclusive(request.call_id):
        wait_s = min(MAX_PERSISTENCE_WAIT_S, max(deadline.remaining() / 3, 0.0))
        session = await ports.sessions.for_turn(request.call_id, request.seq, wait_s)
        if request.after_fallback:
            session.heard_fallback(request.seq - 1, ports.clock())
        if request.interrupted_line is not None:
            session.heard_interruption(request.interrupted_line)
        recorded = _recorded_answer(session, request)
        if recorded is not None:
            log.info(
                "turn already answered; replying with the recorded answer",
                extra={"seq": request.seq},
            )
            return recorded
        if session.ended_by is not None and session.turns:
            return _say_last_line_again(session)
        heard = user_turn(
            _seq_for(session, request), request.speech, request.confidence, ports.clock()
        )
        exchange = answer_without_model(session, heard, ports.clock())
        if exchange is None:
            try:
                exchange = await _ask_model(session, heard, deadline, ports, speech)
            except asyncio.CancelledError:
                if speech is not None:
                    await _record_cut_short(session, heard, speech.sent, ports)
                raise
        if speech is not None:
            exchange = with_spoken_line(exchange, heard_line(speech.sent, exchange.spoken.content))
        return await _record(session, exchange, deadline, ports)


async def handle_event(event: AnyEvent, ports: DialogPorts) -> None:
    """`agent.updated` drops the cached agent; `call.turn_interrupted` cuts the
    held session's line to what the callee heard (the model's next context); a
    terminal `call.status` ends the session, and the replica that held it
    summarizes the call."""
    if isinstance(event, AgentUpdated):
        ports.agents.drop(event.agent_id)
        if ports.knowledge is not None:
            ports.knowledge.drop(event.agent_id)
    elif isinstance(event, CallTurnInterrupted):
        ports.sessions.heard_interruption(event.call_id, event.turn)
    elif isinstance(event, CallStatusChanged) and event.status in TERMINAL_STATUSES:
        session = ports.sessions.evict(event.call_id)
        if session is not None and ports.summaries is not None and session.turns:
            ports.summaries.summarize(session)


def _recorded_answer(session: Session, request: DialogTurn) -> DialogReply | None:
    heard = session.turn(request.seq)
    answered = session.turn(request.seq + 1)
    if heard is None or answered is None or heard.role != "user" or answered.role != "assistant":
        return None
    if heard.content != request.speech.strip():
        return None
    is_last = answered.seq == session.turns[-1].seq
    return _reply(session, answered, answered.seq + 1, session.ended_by if is_last else None)


def _seq_for(session: Session, request: DialogTurn) -> int:
    """Where the user turn goes: at the requested seq, unless other speech holds it."""
    taken = session.turn(request.seq)
    if taken is None and request.seq >= session.next_seq:
        return request.seq
    if taken is not None and taken.role == "user" and taken.content == request.speech.strip():
        return request.seq  # recorded, but its answer never was: answer it now
    return session.next_seq


async def _record_cut_short(session: Session, heard: Turn, sent: str, ports: DialogPorts) -> None:
    """The turn was cancelled mid-answer: the callee's words and what went out
    are still stored (nothing the model decided is applied)."""
    exchange = cut_short(session, heard, sent, ports.clock())
    try:
        await _publish_turn(session, exchange, MIN_PUBLISH_TIMEOUT_S, ports)
    except Exception as exc:
        log.error(
            "the turn of a cancelled answer was not stored",
            extra={"seq": heard.seq, "error": repr(exc)},
        )
        return
    log.info("answer cancelled by the caller; what went out is stored", extra={"seq": heard.seq})
    session.commit(exchange)
    ports.sessions.keep(session)


async def _ask_model(
    session: Session,
    heard: Turn,
    deadline: Deadline,
    ports: DialogPorts,
    speech: StreamedSpeech | None,
) -> Exchange:
    passages = await _passages(session, heard, deadline, ports.knowledge)
    budget_s = min(model_time_limit(session.agent), deadline.remaining() - SAFETY_MARGIN_S)
    try:
        answer = await ports.model.answer(session, heard, budget_s, speech, passages)
    except ModelUnavailable as exc:
        FALLBACKS.inc()
        log.warning(
            "no answer from the model in time; speaking the fallback line",
            extra={"seq": heard.seq, "budget_s": round(budget_s, 3), "error": str(exc)},
        )
        return fallback(session, heard, ports.clock())
    exchange = apply_model_answer(session, heard, answer, ports.clock())
    return with_passages(with_tool_calls(exchange, answer.tool_calls), passages)


async def _passages(
    session: Session, heard: Turn, deadline: Deadline, knowledge: KnowledgeSearch | None
) -> list[Passage]:
    """The agent's best passages for this turn, within its token budget."""
    agent = session.agent
    if knowledge is None or not agent.knowledge:
        return []
    query = retrieval_query(session.turns, heard)
    found = await knowledge.passages(agent, query, deadline.remaining() - SAFETY_MARGIN_S)
    chosen = within_budget(found or (), agent.knowledge_token_budget)
    KNOWLEDGE_TURNS.labels(
        "not_ready" if found is None else "passages" if chosen else "no_match"
    ).inc()
    return chosen


async def _record(
    session: Session, exchange: Exchange, deadline: Deadline, ports: DialogPorts
) -> DialogReply:
    """Publish the exchange (and the ending), then commit it and build the reply."""
    await _publish_turn(session, exchange, max(deadline.remaining(), MIN_PUBLISH_TIMEOUT_S), ports)
    ended_by = exchange.ending.ended_by if exchange.ending else None
    if exchange.ending is not None:
        log.info("ending the call", extra={"ended_by": ended_by, "reason": exchange.ending.reason})
    session.commit(exchange)
    ports.sessions.keep(session)
    return _reply(session, exchange.spoken, exchange.spoken.seq + 1, ended_by)


async def _publish_turn(
    session: Session, exchange: Exchange, timeout_s: float, ports: DialogPorts
) -> None:
    events: list[Event] = [
        CallTurnRecorded(
            call_id=session.call_id,
            turns=exchange.turns,
            data_collected=exchange.data_collected,
            data_complete=exchange.data_complete,
        )
    ]
    if exchange.ending is not None:
        events.append(
            CallEnding(
                call_id=session.call_id,
                ended_by=exchange.ending.ended_by,
                reason=exchange.ending.reason,
                callback_request=exchange.ending.callback_request,
                seq=exchange.spoken.seq,
            )
        )
    await _publish_all(ports.events, events, timeout_s)


async def _publish_all(sink: EventSink, events: list[Event], timeout_s: float) -> None:
    """Every event confirmed, or the first failure raised once all have settled.

    Side by side (an exchange's `call.turn`, and its `call.ending` when the
    call ends), so the turn waits for one broker confirm rather than one per
    event (bench/turn_overhead.py, docs/performance.md). The wire order stays
    the list's order (one channel, published in turn), and persistence does not
    depend on it: it sorts turns by seq and keeps the newest turn's data."""
    outcomes = await asyncio.gather(
        *(sink.publish(event, timeout_s=timeout_s) for event in events), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _say_last_line_again(session: Session) -> DialogReply:
    """The call already ended: repeat its closing line and hang up again."""
    last = session.turns[-1]
    return _reply(session, last, session.next_seq, session.ended_by)


def _reply(session: Session, spoken: Turn, next_seq: int, ended_by: EndedBy | None) -> DialogReply:
    agent = session.agent
    speech = agent.speech
    return DialogReply(
        call_id=session.call_id,
        say=spoken.content,
        play=spoken.audio,
        voice=agent.voice,
        language=agent.language,
        action="hangup" if ended_by else "gather",
        next_seq=next_seq,
        gather=GatherSpec(
            speech_timeout=speech.timeout,
            timeout_s=speech.gather_timeout_s,
            hints=speech.hints,
            speech_model=speech.model,
        ),
        ended_by=ended_by,
        transport=agent.transport,
    )
