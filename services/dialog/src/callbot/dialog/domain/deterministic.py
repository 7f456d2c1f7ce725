"""The deterministic policy: the conversation without an LLM.

Used when no LLM is configured (the demo default). It asks for each missing
field in turn, in the agent's order, takes the answer to the field it asked
for out of the utterance, and lets the shared policy validate it: an accepted
value moves on to the next field (or completes the call), a rejected one is
asked again. Endings (silence, goodbye, limits) are the shared policy's.
"""

from __future__ import annotations

from callbot.common.calls import Turn
from callbot.dialog.domain.actions import ModelAnswer, RecordData
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.validators import extract_value, region_of


def deterministic_answer(session: Session, heard: Turn) -> ModelAnswer:
    """Record the utterance as the answer to the first missing field; say nothing
    of our own, so the policy asks the next question (or asks again)."""
    missing = session.missing_fields()
    if not missing:
        return ModelAnswer(text="")
    asked = missing[0]
    value = extract_value(asked, heard.content, region_of(session.agent.language))
    return ModelAnswer(text="", actions=(RecordData(asked.name, value),))
