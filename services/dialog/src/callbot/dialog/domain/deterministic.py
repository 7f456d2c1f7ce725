"""The deterministic policy: the conversation without an LLM.

Used when no LLM is configured (the demo default). It asks for each missing
field in turn, in the agent's order, and first tells what the utterance is
(`utterance.classify`):
- an answer: the value for the field it asked for is taken out of the speech
  (`validators.extract_value`) and judged by the shared policy: accepted moves
  on to the next field (or completes the call), rejected is asked again;
- a refusal or "call me later": the call ends politely (`user_goodbye`) with
  a callback request (the time asked for, if any) on the call, unless the
  words also give the typed value asked for ("call me back at +1 415 ...");
- a question back ("who is this?"): who is calling and why, then the
  question again;
- "I don't know": nothing is recorded and the question is asked again;
- a correction ("sorry, that's ..."): replaces the value of the field it
  names, or else of the field collected last.
Endings on silence, goodbye and limits are the shared policy's.
"""

from __future__ import annotations

from callbot.common.agents import DataField
from callbot.common.calls import Turn
from callbot.dialog.domain.actions import ModelAnswer, OptOut, RecordData, RequestCallback
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.utterance import classify, clip
from callbot.dialog.domain.validators import (
    Accepted,
    extract_value,
    region_of,
    validate_value,
)

_REASONS = {
    "refusal": "the callee declined to answer",
    "call_later": "the callee asked to be called back later",
}


def deterministic_answer(session: Session, heard: Turn) -> ModelAnswer:
    """The answer to `heard`. An empty text with a `RecordData` lets the policy
    ask the next question (or ask again when the value is rejected)."""
    missing = session.missing_fields()
    if not missing:
        return ModelAnswer(text="")
    asked = missing[0]
    intent = classify(heard.content)
    region = region_of(session.agent.language)
    if intent.kind == "call_later" and _answers(asked, heard.content, region):
        # "You can call me back at +1 415 555 0134": the number asked for, not a request.
        return ModelAnswer(
            text="", actions=(RecordData(asked.name, extract_value(asked, heard.content, region)),)
        )
    match intent.kind:
        case "opt_out":
            return ModelAnswer(text="", actions=(OptOut("the callee asked"),))
        case "refusal" | "call_later":
            said = clip(heard.content)[:500]
            return ModelAnswer(
                text="", actions=(RequestCallback(_REASONS[intent.kind], intent.when, said),)
            )
        case "question":
            return ModelAnswer(text=f"{_who_and_why(session)} {_ask(asked)}")
        case "dont_know":
            return ModelAnswer(text=f"That's alright, take your time. {_ask(asked)}")
        case "correction":
            corrected = _corrected_field(session, intent.rest, region)
            if corrected is not None:
                value = extract_value(corrected, intent.rest, region)
                line = f"Thank you, I've corrected your {corrected.description}. {_ask(asked)}"
                return ModelAnswer(text=line, actions=(RecordData(corrected.name, value),))
            value = extract_value(asked, intent.rest, region)
            return ModelAnswer(text="", actions=(RecordData(asked.name, value),))
        case _:
            value = extract_value(asked, heard.content, region)
            return ModelAnswer(text="", actions=(RecordData(asked.name, value),))


def _ask(field: DataField) -> str:
    return f"Could you tell me your {field.description}?"


def _who_and_why(session: Session) -> str:
    agent = session.agent
    wanted = ", ".join(item.description for item in agent.data_to_fill)
    return f"This is {agent.name} calling to collect your {wanted}." if wanted else ""


def _answers(field: DataField, utterance: str, region: str | None) -> bool:
    """A typed field (not a free string) accepts a value taken out of `utterance`."""
    if field.type == "string":
        return False
    value = extract_value(field, utterance, region)
    return isinstance(validate_value(field, value, region), Accepted)


def _corrected_field(session: Session, rest: str, region: str | None) -> DataField | None:
    """The collected field a correction replaces: the one it names ("my email is
    ..."), else the one collected last whose type accepts the new words."""
    collected = [item for item in session.agent.data_to_fill if item.name in session.data_collected]
    lowered = rest.lower()
    for item in collected:
        if item.description.lower() in lowered or item.name.lower().replace("_", " ") in lowered:
            return item
    for item in reversed(collected):
        if item.type == "string" or _answers(item, rest, region):
            return item
    return None
