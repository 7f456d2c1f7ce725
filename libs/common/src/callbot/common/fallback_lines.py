"""The lines gateway speaks when dialog does not answer within the turn deadline.

Shared: gateway speaks them, and dialog puts them in its session in place of
the late reply the callee never heard (a `dialog.turn` with `after_fallback`),
so the model's next turn knows what was really said. Pure: no I/O.
"""

from __future__ import annotations

GREETING_FALLBACK = "Hello! Sorry for the short delay. Can you hear me?"
TURN_FALLBACK = "Sorry, give me a moment. Could you say that again?"


def fallback_line_at(seq: int) -> str:
    """The line gateway speaks in place of dialog's assistant turn `seq`: the
    greeting's (seq 0) or a turn's."""
    return GREETING_FALLBACK if seq == 0 else TURN_FALLBACK
