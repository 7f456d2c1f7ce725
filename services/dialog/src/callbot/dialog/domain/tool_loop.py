"""The agent's MCP tools inside a turn: what the model is offered, what is sent,
what it is told, and how the turn's time is shared. Pure: no I/O.

- Offered: each tool an agent's server lists and `allowed_tools` allows, as an
  OpenAI function named `<server>__<tool>` with the server's JSON schema, beside
  `record_data` and `end_call`.
- Checked before sending: the tool must be offered (a name the model made up, or
  a tool the agent does not allow, is refused) and the arguments must be a JSON
  object that validates against the tool's input schema. A refused call costs no
  request; the model is told why in the tool message, and may try again.
- Told: every result (or error) enters the model's context as a `tool` message
  answering its call, clipped to the server's `max_result_chars`, never as
  system text: a result is data, not an instruction.
- Time: a tool call gets its server's `timeout_s`, cut so that a model request
  still fits in the turn after it (`time_for_tool`); what would overrun is
  cancelled, and the model is told so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from callbot.common.agents import Agent
from callbot.common.mcp_servers import (
    McpServer,
    ToolCallRecord,
    ToolOutcome,
    clip,
    split_tool_name,
    storable_arguments,
    tool_name,
    usable_servers,
)
from callbot.dialog.domain.session import Exchange

# Kept free for the model's answer after the tools, as a share of the time left
# (at least MIN_ANSWER_S): the callee must hear an answer, with or without the result.
ANSWER_SHARE = 0.4
MIN_ANSWER_S = 0.8


@dataclass(frozen=True)
class OfferedTool:
    """One MCP tool as the model sees it."""

    server: McpServer
    tool: str
    description: str
    input_schema: dict[str, Any]

    @property
    def name(self) -> str:
        return tool_name(self.server.name, self.tool)

    def definition(self) -> dict[str, Any]:
        """The OpenAI `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description or f"{self.tool} (from {self.server.name})",
                "parameters": self.input_schema or {"type": "object", "properties": {}},
            },
        }


@dataclass(frozen=True)
class ToolRequest:
    """A model's call of an MCP tool, as sent in its message."""

    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class CheckedCall:
    """A request that may be sent: its tool and parsed arguments."""

    request: ToolRequest
    offered: OfferedTool
    arguments: dict[str, Any]


def has_tools(agent: Agent) -> bool:
    """Whether the agent has MCP servers to offer (the deterministic policy never does)."""
    return bool(usable_servers(agent.mcp))


def model_time_limit(agent: Agent) -> float:
    """The turn's time the model may use: its `llm.timeout_s`, or, for an agent
    with tools, the whole turn (each model request still gets `llm.timeout_s`)."""
    return float("inf") if has_tools(agent) else agent.llm.timeout_s


def is_mcp_tool(name: str) -> bool:
    return split_tool_name(name) is not None


def check_call(request: ToolRequest, offered: dict[str, OfferedTool]) -> CheckedCall | str:
    """The call to send, or why it is refused (what the model is told)."""
    tool = offered.get(request.name)
    if tool is None:
        available = ", ".join(sorted(offered)) or "none"
        return f"there is no tool named {request.name!r} for this call (tools: {available})"
    try:
        arguments = json.loads(request.arguments) if request.arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return f"the arguments were not valid JSON ({exc.msg}); send a JSON object"
    if not isinstance(arguments, dict):
        return "the arguments must be a JSON object"
    problem = schema_problem(tool.input_schema, arguments)
    if problem:
        return f"the arguments do not match the tool's schema: {problem}"
    return CheckedCall(request, tool, arguments)


def schema_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    try:
        validator = Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
    except SchemaError as exc:
        return f"the tool's own schema is invalid ({exc.message})"
    if not errors:
        return None
    first = errors[0]
    where = ".".join(str(part) for part in first.absolute_path)
    return f"{where}: {first.message}" if where else first.message


def time_for_tool(server: McpServer, time_left_s: float) -> float:
    """A tool call's timeout: the server's, cut to leave the answer its share."""
    reserve = max(MIN_ANSWER_S, time_left_s * ANSWER_SHARE)
    return max(min(server.timeout_s, time_left_s - reserve), 0.0)


def tool_message(call_id: str, record: ToolCallRecord) -> dict[str, Any]:
    """What the model is told about one call: its result, or what went wrong."""
    if record.outcome == "ok":
        content = record.result or "(the tool returned nothing)"
    elif record.outcome == "timeout":
        content = (
            f"ERROR: {record.error}. The call was cancelled. Tell the callee you could not "
            "check this right now; do not guess the answer."
        )
    else:
        content = f"ERROR: {record.error}"
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def assistant_message(text: str | None, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's message that asked for tools, as the next request repeats it."""
    return {"role": "assistant", "content": text, "tool_calls": calls}


def record(
    server: str,
    tool: str,
    arguments: dict[str, Any],
    outcome: ToolOutcome,
    text: str,
    duration_ms: int,
    max_chars: int,
) -> ToolCallRecord:
    """The call as stored and told: a result or an error, clipped."""
    clipped = clip(text, max_chars)
    return ToolCallRecord(
        server=server,
        tool=tool,
        arguments=storable_arguments(arguments),
        outcome=outcome,
        result=clipped if outcome == "ok" else None,
        error=None if outcome == "ok" else clipped,
        duration_ms=max(duration_ms, 0),
    )


def refused(request: ToolRequest, reason: str) -> ToolCallRecord:
    server, tool = split_tool_name(request.name) or ("", request.name)
    return ToolCallRecord(server=server, tool=tool, outcome="refused", error=reason)


def with_tool_calls(exchange: Exchange, calls: tuple[ToolCallRecord, ...]) -> Exchange:
    """The exchange with the turn's tool calls on the line the callee hears."""
    if not calls:
        return exchange
    spoken = exchange.spoken.model_copy(update={"tool_calls": calls})
    return replace(exchange, turns=(*exchange.turns[:-1], spoken))
