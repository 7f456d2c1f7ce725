"""What gateway says when dialog does not answer within the turn deadline.

Twilio waits at most 15 s for TwiML and then drops the call with an
application error; these replies keep the call alive instead. They are
deliberately short and generic: gateway holds no call state, so it knows
neither the agent's wording nor its voice, and uses the contract defaults.
"""

from __future__ import annotations

from callbot.common.contracts import DialogReply

GREETING_FALLBACK = "Hello! Sorry for the short delay. Can you hear me?"
TURN_FALLBACK = "Sorry, give me a moment. Could you say that again?"


def greeting_fallback(call_id: str) -> DialogReply:
    """Instead of the greeting (turn 0): say hello and listen for turn 1."""
    return DialogReply(call_id=call_id, say=GREETING_FALLBACK, action="gather", next_seq=1)


def turn_fallback(call_id: str, seq: int) -> DialogReply:
    """Instead of an answer to turn `seq`: apologise and listen for the SAME
    seq; dialog appends a later utterance at an already-used seq at the end."""
    return DialogReply(call_id=call_id, say=TURN_FALLBACK, action="gather", next_seq=seq)


def voicemail_fallback(call_id: str) -> DialogReply:
    """A machine answered and dialog did not give the voicemail message: hang up
    without a word rather than talk to a recorder with a generic line."""
    return DialogReply(call_id=call_id, say="", action="hangup", next_seq=1, ended_by="voicemail")
