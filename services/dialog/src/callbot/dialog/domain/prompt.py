"""The LLM request for one turn: messages and tools, in a fixed order.

Messages, in this order: the agent's system prompt (rendered), its few-shot
examples, the earlier conversations with this number, the history of this
call (the new user turn last), the knowledge passages retrieved for this turn
(if any), and the status of the data still to collect. The history comes from
the session's turns alone, so every replica that serves the call sends the
model the same ordered conversation. What changes every turn (passages,
status) comes after the conversation, so the start of the request stays the
same from turn to turn (what providers' prompt caches reuse).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from callbot.common.agents import Agent, DataField, LlmOptions
from callbot.common.calls import Turn
from callbot.dialog.domain.actions import END_CALL, RECORD_DATA
from callbot.dialog.domain.opt_out import OPT_OUT_TOOL
from callbot.dialog.domain.passages import Passage, knowledge_message
from callbot.dialog.domain.session import Session

NO_INPUT_PLACEHOLDER = "(the callee said nothing)"

ChatMessage = dict[str, Any]  # tool calls and tool results carry more than text


@dataclass(frozen=True)
class LlmRequest:
    messages: tuple[ChatMessage, ...]
    tools: tuple[dict[str, Any], ...]
    options: LlmOptions


def build_llm_request(
    session: Session, heard: Turn, passages: Sequence[Passage] = ()
) -> LlmRequest:
    return LlmRequest(
        messages=tuple(build_messages(session, heard, passages)),
        tools=build_tools(session.agent),
        options=session.agent.llm,
    )


def build_messages(
    session: Session, heard: Turn, passages: Sequence[Passage] = ()
) -> list[ChatMessage]:
    agent = session.agent
    messages: list[ChatMessage] = [{"role": "system", "content": session.render(agent.prompt)}]
    messages += [{"role": shot.role, "content": shot.content} for shot in agent.few_shot]
    if session.past_conversations:
        earlier = "\n".join(past.describe() for past in session.past_conversations)
        messages.append(
            {
                "role": "system",
                "content": "Earlier calls with this person, newest first:\n" + earlier,
            }
        )
    messages += history_messages([*session.turns, heard])
    if passages:
        messages.append({"role": "system", "content": knowledge_message(passages)})
    messages.append({"role": "system", "content": collection_status(session)})
    return messages


def history_messages(turns: Iterable[Turn]) -> list[ChatMessage]:
    return [
        {"role": turn.role, "content": NO_INPUT_PLACEHOLDER if turn.no_input else turn.content}
        for turn in sorted(turns, key=lambda turn: turn.seq)
    ]


def collection_status(session: Session) -> str:
    """What is collected, what is missing, and what went wrong last turn."""
    lines: list[str] = []
    missing = session.missing_fields()
    if missing:
        lines.append(
            "Data still to collect, one item at a time; record each value with "
            f"{RECORD_DATA} as soon as the callee gives it:"
        )
        lines += [f"- {item.name}: {_describe_field(item)}" for item in missing]
    elif session.agent.data_to_fill:
        lines.append("All the data is collected.")
    if session.data_collected:
        collected = ", ".join(f"{key}={value}" for key, value in session.data_collected.items())
        lines.append(f"Already collected: {collected}.")
    if session.known_data:
        known = ", ".join(f"{key}={value}" for key, value in session.known_data.items())
        if session.agent.reconfirm_known_data:
            lines.append(
                f"Known from earlier calls: {known}. Confirm each with the callee, and record "
                "it again (corrected if need be)."
            )
        else:
            lines.append(f"Known from earlier calls (do not ask for these again): {known}.")
    for rejection in session.rejections:
        if rejection.field:
            lines.append(
                f"The value {rejection.value!r} for {rejection.field} was not recorded: "
                f"{rejection.reason}. Ask for it again."
            )
        else:
            lines.append(f"A tool call failed: {rejection.reason}.")
    lines.append(f"If the callee wants to end the call, call {END_CALL}.")
    return "\n".join(lines)


def _describe_field(item: DataField) -> str:
    kind = f"one of {', '.join(item.choices)}" if item.choices else item.type
    need = "required" if item.required else "optional"
    return f"{item.description} ({kind}, {need})"


def build_tools(agent: Agent) -> tuple[dict[str, Any], ...]:
    field_schema: dict[str, Any] = {"type": "string", "description": "The field's name."}
    if agent.data_to_fill:
        field_schema["enum"] = [item.name for item in agent.data_to_fill]
    record_data = {
        "type": "function",
        "function": {
            "name": RECORD_DATA,
            "description": "Record one piece of data the callee just gave.",
            "parameters": {
                "type": "object",
                "properties": {
                    "field": field_schema,
                    "value": {"type": "string", "description": "The value, as given."},
                },
                "required": ["field", "value"],
            },
        },
    }
    end_call = {
        "type": "function",
        "function": {
            "name": END_CALL,
            "description": "End the call because the callee said goodbye or wants to stop.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
            },
        },
    }
    opt_out = {
        "type": "function",
        "function": {
            "name": OPT_OUT_TOOL,
            "description": "The callee asked not to be called again (take me off your list).",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
            },
        },
    }
    return (record_data, end_call, opt_out)
