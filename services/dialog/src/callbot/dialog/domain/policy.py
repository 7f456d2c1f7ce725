"""What the agent says next and whether the call ends: pure decisions.

Order of precedence for a user turn:
1. no input: the reprompt, or `system_timeout` at the `max_no_input`-th in a row;
2. a request not to be called again ("take me off your list"): `opt_out`, and a
   short closing utterance ("ok, bye"): `user_goodbye`, without asking the model;
3. the model's answer: recorded values are validated (an invalid one is asked
   again), the `opt_out` tool ends `opt_out`, all data collected ends
   `system_complete`, `end_call` ends `user_goodbye`;
4. if nothing ended the call, the limits: `max_turns`, then `max_duration`.
Every line of the agent's own (reprompt, closing lines) is a template rendered
with the call's data; the model's text is spoken as it is. A fixed line the
agent has a recording for (`audio`) carries it (`Turn.audio`): gateway plays
the file, and the rendered text stays the line's transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callbot.common.agents import AudioLine
from callbot.common.calls import CallbackRequest, Turn
from callbot.dialog.domain.actions import (
    EndCall,
    ModelAnswer,
    OptOut,
    RecordData,
    RequestCallback,
    UnusableToolCall,
)
from callbot.dialog.domain.closing import is_closing_utterance
from callbot.dialog.domain.opt_out import is_opt_out_request
from callbot.dialog.domain.session import Ending, Exchange, Rejection, Session
from callbot.dialog.domain.validators import Rejected, region_of, validate_value


@dataclass(frozen=True)
class _Fixed:
    """A fixed line of the agent's, by name (never confused with a model's text)."""

    line: AudioLine


def ask_for(description: str) -> str:
    return f"Could you tell me your {description}?"


def greet(session: Session, now: datetime) -> Exchange:
    greeting = _fixed_line(session, "greeting", 0, now)
    return _exchange(session, (greeting,), session.data_collected)


def leave_voicemail(session: Session, now: datetime) -> Exchange:
    turn = _fixed_line(session, "voicemail_message", session.next_seq, now)
    ending = Ending("voicemail", "answering machine")
    return _exchange(session, (turn,), session.data_collected, ending)


def _fixed_line(session: Session, line: AudioLine, seq: int, now: datetime) -> Turn:
    """One of the agent's fixed lines: its rendered text, and its recording if it has one."""
    agent = session.agent
    text = session.render(getattr(agent, line))
    return Turn(seq=seq, role="assistant", content=text, at=now, audio=agent.audio.for_line(line))


def answer_without_model(session: Session, heard: Turn, now: datetime) -> Exchange | None:
    """The exchange when the model need not be asked (silence, a plain goodbye)."""
    agent = session.agent
    if heard.no_input:
        if session.no_input_streak(then=(heard,)) >= agent.max_no_input:
            ending = Ending("system_timeout", f"{agent.max_no_input} turns without input")
            return _reply(
                session, heard, _Fixed("timeout_message"), session.data_collected, ending, now
            )
        line = session.render(agent.reprompt_message)
        return _reply(session, heard, line, session.data_collected, None, now)
    if is_opt_out_request(heard.content):
        return _opt_out(session, heard, session.data_collected, "the callee asked", now)
    if is_closing_utterance(heard.content):
        ending = Ending("user_goodbye", "the callee said goodbye")
        return _reply(
            session, heard, _Fixed("goodbye_message"), session.data_collected, ending, now
        )
    return None


def apply_model_answer(
    session: Session, heard: Turn, answer: ModelAnswer, now: datetime
) -> Exchange:
    agent = session.agent
    data = dict(session.data_collected)
    rejections: list[Rejection] = []
    goodbye: EndCall | None = None
    callback: RequestCallback | None = None
    opt_out: OptOut | None = None
    region = region_of(agent.language)
    for action in answer.actions:
        match action:
            case RecordData(field=name, value=value):
                field = agent.field(name)
                if field is None:
                    known = ", ".join(item.name for item in agent.data_to_fill) or "none"
                    rejections.append(Rejection(name, value, f"no such field (fields: {known})"))
                    continue
                verdict = validate_value(field, value, region)
                if isinstance(verdict, Rejected):
                    rejections.append(Rejection(name, value, verdict.reason))
                else:
                    data[name] = verdict.value
            case EndCall(reason=reason):
                goodbye = EndCall(reason or "the callee wanted to end the call")
            case RequestCallback():
                callback = action
            case OptOut():
                opt_out = action
            case UnusableToolCall(problem=problem):
                rejections.append(Rejection(None, None, problem))

    if opt_out is not None:
        return _opt_out(session, heard, data, opt_out.reason or "the model's opt_out tool", now)
    if agent.data_to_fill and session.is_complete(data):
        ending = Ending("system_complete", "all required data collected")
        return _reply(session, heard, _Fixed("completion_message"), data, ending, now)
    if callback is not None:
        request = CallbackRequest(when=callback.when, said=callback.said)
        ending = Ending("user_goodbye", callback.reason, request)
        return _reply(session, heard, _Fixed("goodbye_message"), data, ending, now)
    if goodbye is not None:
        ending = Ending("user_goodbye", goodbye.reason)
        return _reply(session, heard, _Fixed("goodbye_message"), data, ending, now)
    return _reply(
        session, heard, _next_line(session, answer, data, rejections), data, None, now, rejections
    )


def _opt_out(
    session: Session, heard: Turn, data: dict[str, Any], reason: str, now: datetime
) -> Exchange:
    """The callee asked not to be called again: say the agent's polite closing line."""
    ending = Ending("opt_out", f"asked not to be called again: {reason}")
    return _reply(session, heard, _Fixed("opt_out_message"), data, ending, now)


def cut_short(session: Session, heard: Turn, sent: str, now: datetime) -> Exchange:
    """A streamed answer cancelled before it was decided: the callee's words and
    the text that went out (gateway tells later how much of it was heard); the
    data stays as it was, and nothing ends the call."""
    spoken = Turn(seq=heard.seq + 1, role="assistant", content=sent.strip(), at=now)
    return _exchange(session, (heard, spoken), session.data_collected)


def fallback(session: Session, heard: Turn, now: datetime) -> Exchange:
    """The model could not answer in time: keep the call (and the callee's turn) going."""
    line = session.render(session.agent.fallback_message)
    return _reply(session, heard, line, session.data_collected, None, now)


def _next_line(
    session: Session, answer: ModelAnswer, data: dict[str, Any], rejections: list[Rejection]
) -> str:
    """What to say when the call goes on. The model's text assumes its values
    were accepted, so a rejected field is asked again in our own words; a model
    that only called tools gets the next missing field asked."""
    for rejection in rejections:
        field = session.agent.field(rejection.field) if rejection.field else None
        if field is not None:
            return f"Sorry, I didn't get a valid {field.description}. {ask_for(field.description)}"
    if answer.text.strip():
        return answer.text.strip()
    missing = session.missing_fields(data)
    if missing:
        return f"Thank you. {ask_for(missing[0].description)}"
    return "Thank you. Is there anything else I can help you with?"


def _limit_reached(session: Session, spoken_seq: int, now: datetime) -> Ending | None:
    agent = session.agent
    if spoken_seq + 1 >= agent.max_turns:
        return Ending("max_turns", f"reached {agent.max_turns} turns")
    started = session.answered_at
    if started is not None and now - started >= timedelta(seconds=agent.max_duration_s):
        return Ending("max_duration", f"call longer than {agent.max_duration_s} s")
    return None


def _reply(
    session: Session,
    heard: Turn,
    line: str | _Fixed,
    data: dict[str, Any],
    ending: Ending | None,
    now: datetime,
    rejections: list[Rejection] | None = None,
) -> Exchange:
    """The user turn and the assistant's line (text, or the name of a fixed
    line of the agent's); the limits end a call nothing else ended."""
    spoken_seq = heard.seq + 1
    if ending is None:
        ending = _limit_reached(session, spoken_seq, now)
        if ending is not None:
            line = _Fixed("goodbye_message")
    if isinstance(line, _Fixed):
        spoken = _fixed_line(session, line.line, spoken_seq, now)
    else:
        spoken = Turn(seq=spoken_seq, role="assistant", content=line, at=now)
    return _exchange(session, (heard, spoken), data, ending, tuple(rejections or ()))


def _exchange(
    session: Session,
    turns: tuple[Turn, ...],
    data: dict[str, Any],
    ending: Ending | None = None,
    rejections: tuple[Rejection, ...] = (),
) -> Exchange:
    return Exchange(
        turns=turns,
        data_collected=dict(data),
        data_complete=session.is_complete(data),
        ending=ending,
        rejections=rejections,
    )
