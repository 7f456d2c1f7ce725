"""What gateway says when dialog does not answer within the turn deadline, and
what it then tells persistence the callee heard.

Twilio waits at most 15 s for TwiML and then drops the call with an
application error; these replies keep the call alive instead. They are
deliberately short and generic: gateway holds no call state, so it knows
neither the agent's wording nor its voice, and uses the contract defaults.

The stored transcript is what the callee heard: a fallback line takes the seq
dialog's reply would have taken (the greeting's 0, or `seq + 1` after the
utterance at `seq`), `call.fallback` stores it there with the utterance, and
the next gather listens after it with `after_fallback` in its URL, so dialog
learns that its late reply (if any) was never heard.

A machine is not told a generic line: when dialog does not give the voicemail
message in time, gateway leaves the agent's own `voicemail_message`, rendered
for the call from the stored agent and call document as dialog renders it,
and stores it the same way, at the seq dialog's message takes (the one after
the stored turns, or the stored message's own when dialog's came first). The
call ends with it, so nothing follows it.
"""

from __future__ import annotations

from datetime import datetime

from callbot.common.agents import Agent, render_template
from callbot.common.calls import CallDocument, Turn, user_turn
from callbot.common.contracts import CallFallbackSpoken, DialogReply, DialogTurn
from callbot.common.fallback_lines import GREETING_FALLBACK, TURN_FALLBACK
from callbot.common.streaming import heard_line

__all__ = [
    "GREETING_FALLBACK",
    "TURN_FALLBACK",
    "greeting_fallback",
    "greeting_fallback_spoken",
    "turn_fallback",
    "turn_fallback_spoken",
    "voicemail_fallback",
    "voicemail_hangup",
]


def greeting_fallback(call_id: str) -> DialogReply:
    """Instead of the greeting (turn 0): say hello and listen for turn 1."""
    return DialogReply(call_id=call_id, say=GREETING_FALLBACK, action="gather", next_seq=1)


def turn_fallback(call_id: str, seq: int) -> DialogReply:
    """Instead of an answer to the utterance at `seq`: apologise (turn `seq + 1`)
    and listen for `seq + 2`, as after dialog's own reply."""
    return DialogReply(call_id=call_id, say=TURN_FALLBACK, action="gather", next_seq=seq + 2)


def voicemail_fallback(
    agent: Agent, call: CallDocument, at: datetime
) -> tuple[DialogReply, CallFallbackSpoken]:
    """Instead of dialog's voicemail message: the agent's own, then hang up;
    and the line as the machine heard it, for `call.fallback`."""
    seq = _voicemail_seq(call)
    text = render_template(
        agent.voicemail_message,
        agent_name=agent.name,
        recipient=call.recipient,
        variables=call.variables,
    )
    audio = agent.audio.for_line("voicemail_message")
    line = Turn(seq=seq, role="assistant", content=text, at=at, audio=audio, fallback=True)
    reply = DialogReply(
        call_id=call.call_id,
        say=text,
        play=audio,
        voice=agent.voice,
        language=agent.language,
        action="hangup",
        next_seq=seq + 1,
        ended_by="voicemail",
    )
    return reply, CallFallbackSpoken(call_id=call.call_id, turns=(line,))


def voicemail_hangup(call_id: str) -> DialogReply:
    """A machine answered, and neither dialog nor the stored agent gave its
    voicemail message: hang up without a word rather than tell a recorder a
    generic line."""
    return DialogReply(call_id=call_id, say="", action="hangup", next_seq=1, ended_by="voicemail")


def _voicemail_seq(call: CallDocument) -> int:
    """Where dialog puts its voicemail message: after the turns it stored, or
    where its message already is (its ending names that line's seq)."""
    if call.ended_by == "voicemail" and call.ending_seq is not None:
        return call.ending_seq
    return max((turn.seq for turn in call.turns), default=-1) + 1


def greeting_fallback_spoken(call_id: str, at: datetime) -> CallFallbackSpoken:
    line = Turn(seq=0, role="assistant", content=GREETING_FALLBACK, at=at, fallback=True)
    return CallFallbackSpoken(call_id=call_id, turns=(line,))


def turn_fallback_spoken(turn: DialogTurn, at: datetime, sent: str = "") -> CallFallbackSpoken:
    """The utterance gateway asked dialog about, and the fallback line after it;
    `sent`: the start of dialog's streamed reply that went out before it
    failed (ConversationRelay), which the callee heard first."""
    heard = user_turn(turn.seq, turn.speech, turn.confidence, at)
    content = heard_line(sent, TURN_FALLBACK)
    line = Turn(seq=turn.seq + 1, role="assistant", content=content, at=at, fallback=True)
    return CallFallbackSpoken(call_id=turn.call_id, turns=(heard, line))
