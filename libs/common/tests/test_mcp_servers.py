"""The MCP server settings of an agent (issue 16): tolerant reading of old
entries, the host allow-list, tool names and clipping. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from callbot.common.agents import Agent
from callbot.common.mcp_servers import (
    McpServer,
    UnusableMcpEntry,
    clip,
    host_problem,
    parse_allowed_hosts,
    split_tool_name,
    storable_arguments,
    tool_name,
)

AGENT: dict[str, Any] = {"_id": "orders", "name": "Orders", "greeting": "Hi", "prompt": "Help."}


def test_old_free_form_entries_still_load_and_are_stored_back_unchanged() -> None:
    old_entries = [{"server": "crm", "token": "abc"}, {"url": "http://x", "name": "Bad Name"}]
    agent = Agent.model_validate({**AGENT, "mcp": old_entries})
    assert all(isinstance(entry, UnusableMcpEntry) for entry in agent.mcp)
    first = agent.mcp[0]
    assert isinstance(first, UnusableMcpEntry)
    assert "name: Field required" in first.problem
    assert list(agent.to_document()["mcp"]) == old_entries
    assert agent.model_dump(mode="json")["mcp"] == old_entries


def test_well_formed_entries_load_as_servers_beside_old_ones() -> None:
    entries = [{"name": "orders", "url": "https://orders.example.com/mcp"}, {"legacy": True}]
    agent = Agent.model_validate({**AGENT, "mcp": entries})
    server, old = agent.mcp
    assert isinstance(server, McpServer)
    assert isinstance(old, UnusableMcpEntry)
    assert (server.transport, server.allowed_tools, server.timeout_s) == (
        "streamable_http",
        None,
        2.0,
    )
    assert Agent.model_validate(agent.to_document()) == agent


@pytest.mark.parametrize(
    ("url", "allowed", "verdict"),
    [
        ("https://orders.example.com/mcp", "orders.example.com", None),
        ("https://ORDERS.example.com/mcp", "orders.example.com", None),
        ("http://127.0.0.1:9000/mcp", "127.0.0.1:9000", None),
        ("http://127.0.0.1:9001/mcp", "127.0.0.1:9000", "is not on MCP_ALLOWED_HOSTS"),
        ("https://a.tools.example.com/mcp", "*.tools.example.com", None),
        ("https://eviltools.example.com/mcp", "*.tools.example.com", "is not on"),
        ("http://169.254.169.254/latest", "orders.example.com", "is not on"),
        ("http://localhost/mcp", "127.0.0.1", "is not on"),
        ("https://orders.example.com/mcp", "", "MCP_ALLOWED_HOSTS is empty"),
    ],
)
def test_the_host_allow_list(url: str, allowed: str, verdict: str | None) -> None:
    problem = host_problem(url, parse_allowed_hosts(allowed))
    if verdict is None:
        assert problem is None
    else:
        assert problem is not None
        assert verdict in problem


def test_tool_names_are_namespaced_by_server() -> None:
    assert tool_name("orders", "lookup_order") == "orders__lookup_order"
    assert split_tool_name("orders__lookup_order") == ("orders", "lookup_order")
    assert split_tool_name("record_data") is None
    with pytest.raises(ValueError, match="pattern"):
        McpServer(name="my__orders", url="http://x/mcp")


def test_results_are_clipped_and_say_so() -> None:
    assert clip("short", 100) == "short"
    clipped = clip("x" * 500, 100)
    assert len(clipped) == 100
    assert clipped.endswith("[clipped: 500 characters]")


def test_unstorable_arguments_are_replaced_by_why() -> None:
    assert storable_arguments({"order_id": "1"}) == {"order_id": "1"}
    assert "outside the 8-byte" in storable_arguments({"n": 2**70})["unstorable"]
