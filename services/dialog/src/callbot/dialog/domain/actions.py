"""What a conversation model answers: text to say and tool calls to act on.

The LLM adapter and the deterministic policy both produce a `ModelAnswer`;
`parse_tool_call` turns the LLM's raw tool calls into actions without ever
raising, because a malformed call must not cost the callee their turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from callbot.common.mcp_servers import ToolCallRecord
from callbot.common.storable import well_formed_text
from callbot.dialog.domain.opt_out import OPT_OUT_TOOL

RECORD_DATA = "record_data"
END_CALL = "end_call"


@dataclass(frozen=True)
class RecordData:
    field: str
    value: object


@dataclass(frozen=True)
class EndCall:
    reason: str


@dataclass(frozen=True)
class OptOut:
    """The callee asked not to be called again."""

    reason: str


@dataclass(frozen=True)
class RequestCallback:
    """The callee refused or asked to be called later: end politely, record the request."""

    reason: str
    when: str | None
    said: str


@dataclass(frozen=True)
class UnusableToolCall:
    """A tool call we could not act on; the model is told why on its next request."""

    problem: str


Action = RecordData | EndCall | OptOut | RequestCallback | UnusableToolCall


class ModelUnavailable(Exception):
    """The model gave no usable answer within the turn's budget."""


@dataclass(frozen=True)
class ModelAnswer:
    text: str
    actions: tuple[Action, ...] = ()
    tool_calls: tuple[ToolCallRecord, ...] = ()  # MCP tools called on the way (tool_loop)


def parse_tool_call(name: str, arguments: str) -> Action:
    """One tool call as the LLM sent it (`arguments` is a JSON string)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return UnusableToolCall(f"the arguments of {name} were not valid JSON ({exc.msg})")
    if not isinstance(parsed, dict):
        return UnusableToolCall(f"the arguments of {name} must be a JSON object")
    if name == RECORD_DATA:
        field = parsed.get("field")
        if not isinstance(field, str) or not field:
            return UnusableToolCall("record_data needs a 'field' name")
        # The value is judged by the field's validator, which refuses what MongoDB cannot store.
        return RecordData(field=well_formed_text(field), value=parsed.get("value"))
    if name == END_CALL:
        reason = parsed.get("reason")
        return EndCall(reason=well_formed_text(reason) if isinstance(reason, str) else "")
    if name == OPT_OUT_TOOL:
        reason = parsed.get("reason")
        return OptOut(reason=well_formed_text(reason) if isinstance(reason, str) else "")
    return UnusableToolCall(
        f"there is no tool named {name!r}; use record_data, end_call or {OPT_OUT_TOOL}"
    )
