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
"""

from __future__ import annotations

from datetime import datetime

from callbot.common.calls import Turn, user_turn
from callbot.common.contracts import CallFallbackSpoken, DialogReply, DialogTurn
from callbot.common.fallback_lines import GREETING_FALLBACK, TURN_FALLBACK

__all__ = [
    "GREETING_FALLBACK",
    "TURN_FALLBACK",
    "greeting_fallback",
    "greeting_fallback_spoken",
    "turn_fallback",
    "turn_fallback_spoken",
    "voicemail_fallback",
]


def greeting_fallback(call_id: str) -> DialogReply:
    """Instead of the greeting (turn 0): say hello and listen for turn 1."""
    return DialogReply(call_id=call_id, say=GREETING_FALLBACK, action="gather", next_seq=1)


def turn_fallback(call_id: str, seq: int) -> DialogReply:
    """Instead of an answer to the utterance at `seq`: apologise (turn `seq + 1`)
    and listen for `seq + 2`, as after dialog's own reply."""
    return DialogReply(call_id=call_id, say=TURN_FALLBACK, action="gather", next_seq=seq + 2)


def voicemail_fallback(call_id: str) -> DialogReply:
    """A machine answered and dialog did not give the voicemail message: hang up
    without a word rather than talk to a recorder with a generic line."""
    return DialogReply(call_id=call_id, say="", action="hangup", next_seq=1, ended_by="voicemail")


def greeting_fallback_spoken(call_id: str, at: datetime) -> CallFallbackSpoken:
    line = Turn(seq=0, role="assistant", content=GREETING_FALLBACK, at=at, fallback=True)
    return CallFallbackSpoken(call_id=call_id, turns=(line,))


def turn_fallback_spoken(turn: DialogTurn, at: datetime) -> CallFallbackSpoken:
    """The utterance gateway asked dialog about, and the fallback line after it."""
    heard = user_turn(turn.seq, turn.speech, turn.confidence, at)
    line = Turn(seq=turn.seq + 1, role="assistant", content=TURN_FALLBACK, at=at, fallback=True)
    return CallFallbackSpoken(call_id=turn.call_id, turns=(heard, line))
