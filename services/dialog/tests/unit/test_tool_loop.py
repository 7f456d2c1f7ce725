"""The pure side of MCP tools in a turn (issue 16): checks before sending, time
sharing, what the model is told, and where the record goes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dialog_doubles import make_agent

from callbot.common.calls import Turn
from callbot.common.mcp_servers import McpServer, ToolCallRecord
from callbot.dialog.domain.session import Exchange
from callbot.dialog.domain.tool_loop import (
    CheckedCall,
    OfferedTool,
    ToolRequest,
    check_call,
    model_time_limit,
    record,
    time_for_tool,
    tool_message,
    with_tool_calls,
)

SERVER = McpServer(name="orders", url="https://orders.example.com/mcp", timeout_s=2.0)
SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}
LOOKUP = OfferedTool(SERVER, "lookup_order", "Look up an order.", SCHEMA)
OFFERED = {LOOKUP.name: LOOKUP}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_well_formed_call_is_checked_with_its_arguments() -> None:
    checked = check_call(ToolRequest("c1", "orders__lookup_order", '{"order_id": "1"}'), OFFERED)
    assert isinstance(checked, CheckedCall)
    assert (checked.offered, checked.arguments) == (LOOKUP, {"order_id": "1"})
    assert LOOKUP.definition()["function"]["parameters"] == SCHEMA


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        ("orders__refund_order", "{}", "there is no tool named 'orders__refund_order'"),
        ("crm__lookup_order", "{}", "tools: orders__lookup_order"),
        ("orders__lookup_order", "{order", "not valid JSON"),
        ("orders__lookup_order", "[1]", "must be a JSON object"),
        ("orders__lookup_order", '{"order": 1}', "'order_id' is a required property"),
        ("orders__lookup_order", '{"order_id": 1}', "order_id: 1 is not of type 'string'"),
    ],
)
def test_calls_that_cannot_be_sent_say_why(name: str, arguments: str, reason: str) -> None:
    refused = check_call(ToolRequest("c1", name, arguments), OFFERED)
    assert isinstance(refused, str)
    assert reason in refused


def test_a_tool_call_leaves_the_answer_its_share_of_the_turn() -> None:
    assert time_for_tool(SERVER, 10.0) == 2.0  # the server's own timeout
    assert time_for_tool(SERVER, 2.5) == pytest.approx(1.5)  # 40 % kept, at least 0.8 s
    assert time_for_tool(SERVER, 0.5) == 0.0


def test_agents_with_tools_may_use_the_whole_turn() -> None:
    assert model_time_limit(make_agent()) == 1.0
    agent = make_agent(mcp=[SERVER.model_dump()])
    assert model_time_limit(agent) == float("inf")
    assert model_time_limit(make_agent(mcp=[{"legacy": "entry"}])) == 1.0


def test_results_are_clipped_and_errors_told_as_tool_messages() -> None:
    done = record("orders", "lookup_order", {"order_id": "1"}, "ok", "x" * 500, 12, 100)
    assert done.result is not None
    assert len(done.result) == 100
    told_done = tool_message("c1", done)
    assert told_done == {"role": "tool", "tool_call_id": "c1", "content": done.result}
    late = record("orders", "lookup_order", {}, "timeout", "did not answer", 2000, 100)
    told = tool_message("c2", late)["content"]
    assert told.startswith("ERROR: did not answer")
    assert "do not guess" in told


def test_the_record_goes_on_the_line_the_callee_hears() -> None:
    heard = Turn(seq=1, role="user", content="where is my order", at=NOW)
    spoken = Turn(seq=2, role="assistant", content="It shipped.", at=NOW)
    exchange = Exchange(turns=(heard, spoken), data_collected={}, data_complete=False)
    call = ToolCallRecord(server="orders", tool="lookup_order", outcome="ok", result="shipped")
    changed = with_tool_calls(exchange, (call,))
    assert changed.turns[0] == heard
    assert changed.spoken.tool_calls == (call,)
    assert with_tool_calls(exchange, ()) is exchange
