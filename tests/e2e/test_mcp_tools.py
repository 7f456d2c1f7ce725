"""Issue 16, "Must show" 1-4: whole calls in which the agent's model calls tools on
an MCP server. The example server (`callbot.testkit.mcp_server`, built with the
MCP SDK) runs as a process of its own over Streamable HTTP, beside the
emulator, gateway, dialog and persistence; the scripted LLM calls its tools.
The server wants a bearer token, which only the services' environment holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_harness import E2EStack, FinishedCall, agent_definition, running_e2e_stack

from callbot.common.calls import Turn
from callbot.testkit.fake_openai import FakeOpenAIProcess
from callbot.testkit.mcp_server import ORDERS, McpServerProcess, running_mcp_server

pytestmark = pytest.mark.e2e

TOKEN = "Bearer e2e-orders-token"
SHIPPED = ORDERS["1042"]


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServerProcess]:
    log_dir = tmp_path_factory.mktemp("e2e-mcp-server")
    with running_mcp_server(log_dir, require_header=f"Authorization={TOKEN}") as server:
        yield server


@pytest.fixture(scope="module")
def e2e(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    fake_llm: FakeOpenAIProcess,
    mcp_server: McpServerProcess,
) -> Iterator[E2EStack]:
    """The stack, allowed to reach the MCP server, with its token in the environment."""
    env = {"MCP_ALLOWED_HOSTS": "127.0.0.1", "ORDERS_TOKEN": TOKEN}
    log_dir = tmp_path_factory.mktemp("e2e-test_mcp_tools")
    with running_e2e_stack(log_dir, rabbitmq_url, mongodb_url, fake_llm, env) as stack:
        yield stack


def orders_agent(tag: str, url: str) -> dict[str, Any]:
    return agent_definition(
        tag,
        data_to_fill=[],
        greeting="Hi {recipient.name}, this is Ava from Acme orders. How can I help?",
        mcp=[
            {
                "name": "orders",
                "url": url,
                "headers": {"Authorization": "env:ORDERS_TOKEN"},
                "timeout_s": 1.0,
            }
        ],
    )


def rule(tag: str, response: dict[str, Any], **match: str) -> dict[str, Any]:
    return {
        "match": {"system_regex": re.escape(f"[{tag}]"), **match},
        "response": response,
        "times": None,
    }


def after_tool(tag: str, text: str, told: str) -> dict[str, Any]:
    """The model's answer once a tool message (`told`) is in its context."""
    return rule(tag, {"text": text}, any_regex=f'"role": "tool".*{told}')


def calls_tool(tag: str, heard: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"name": f"orders__{name}", "arguments": arguments}
    return rule(tag, {"tool_calls": [call]}, last_user_regex=heard)


def agent_turns(call: FinishedCall) -> list[Turn]:
    return [turn for turn in call.document.turns if turn.role == "assistant"]


def check_no_webhook_failed(call: FinishedCall) -> None:
    assert call.played.errors == []
    assert [hook.status_code for hook in call.played.webhooks if hook.status_code >= 400] == []


def test_the_agent_looks_up_an_order_and_tools_are_listed_once_per_version(
    e2e: E2EStack, mcp_server: McpServerProcess
) -> None:
    tag, to = "mcp-orders", "+15005550301"
    e2e.put_agent("e2e-mcp-orders", orders_agent(tag, mcp_server.url))
    mcp_server.reset()  # the save listed the tools once (gateway's check)
    answer = f"Let me see. {SHIPPED}"
    e2e.fake_llm.control.add_rules(
        [
            after_tool(tag, answer, "shipped on Monday"),
            calls_tool(tag, "order 1042", "lookup_order", {"order_id": "1042"}),
        ]
    )
    steps = [{"say": f"Where is my order 1042? Question {n}."} for n in range(1, 11)]
    e2e.add_scenario({"name": "mcp-orders", "to": to, "steps": steps})

    calls = [e2e.call("e2e-mcp-orders", to, {"name": "Ada"}) for _ in range(2)]

    for call in calls:
        check_no_webhook_failed(call)
        replies = agent_turns(call)[1:]
        assert len(replies) == 10  # a 10-turn call
        assert [turn.content for turn in replies] == [answer] * 10
        assert call.played.lines("agent")[1:] == [answer] * 10  # what the callee heard
        for turn in replies:
            [tool_call] = turn.tool_calls
            assert (tool_call.server, tool_call.tool) == ("orders", "lookup_order")
            assert tool_call.arguments == {"order_id": "1042"}
            assert (tool_call.outcome, tool_call.result) == ("ok", SHIPPED)
        assert call.completed.call.turns == call.document.turns  # in call.completed too
    # One tools/list for this agent version across 20 turns in two calls.
    assert mcp_server.stats() == {"tools_list": 1, "tools_call": 20}


def test_a_hanging_tool_and_an_erroring_one_do_not_stop_the_call(
    e2e: E2EStack, mcp_server: McpServerProcess
) -> None:
    tag, to = "mcp-faults", "+15005550302"
    e2e.put_agent("e2e-mcp-faults", orders_agent(tag, mcp_server.url))
    could_not = "I could not check the stock just now. Anything else?"
    no_refund = "Sorry, refunds are not working right now."
    shipped = f"Good news. {SHIPPED}"
    e2e.fake_llm.control.add_rules(
        [
            after_tool(tag, could_not, "did not answer within"),
            after_tool(tag, no_refund, "ERROR"),
            after_tool(tag, shipped, "shipped on Monday"),
            calls_tool(tag, "in stock", "check_stock", {"sku": "A-1"}),
            calls_tool(tag, "refund", "refund_order", {"order_id": "1042"}),
            calls_tool(tag, "where is", "lookup_order", {"order_id": "1042"}),
        ]
    )
    steps = [
        {"say": "Is item A-1 in stock?"},
        {"say": "Then please refund order 1042."},
        {"say": "OK, and where is order 1042?"},
    ]
    e2e.add_scenario({"name": "mcp-faults", "to": to, "steps": steps})

    call = e2e.call("e2e-mcp-faults", to, {"name": "Ada"})

    check_no_webhook_failed(call)
    stock, refund, where = agent_turns(call)[1:]
    # The hanging tool was cancelled at its timeout; the model's answer was spoken
    # in time (not gateway's apology), and the call went on.
    assert stock.content == could_not
    [hung] = stock.tool_calls
    assert (hung.tool, hung.outcome) == ("check_stock", "timeout")
    assert 900 <= hung.duration_ms < 3000
    assert refund.content == no_refund
    [failed] = refund.tool_calls
    assert (failed.tool, failed.outcome) == ("refund_order", "tool_error")
    assert where.content == shipped
    assert where.tool_calls[0].outcome == "ok"
    assert call.played.lines("agent")[1:] == [could_not, no_refund, shipped]
