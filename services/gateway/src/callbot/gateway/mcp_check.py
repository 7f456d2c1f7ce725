"""Checking an agent's MCP servers when it is saved: a 422 that says why,
rather than a call that finds out mid-conversation.

gateway itself connects (with the same `McpClient` and `MCP_ALLOWED_HOSTS` as
dialog) and lists each server's tools: the host must be allowed, the header
secrets set, the server reachable and speaking MCP, and every tool in
`allowed_tools` offered. dialog checks the host again before every call, and
lists the tools again for its own cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from callbot.common.mcp_client import McpClient, McpRefused, McpUnavailable
from callbot.common.mcp_servers import McpServer

# Listing the tools of a server at save time; not on a call's critical path.
SAVE_CHECK_TIMEOUT_S = 5.0


async def mcp_errors(servers: Sequence[McpServer], client: McpClient) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape, `loc` under the body) for the servers
    that cannot be used; empty when all can."""
    found = await asyncio.gather(*(_problem(server, client) for server in servers))
    return [
        {"loc": ["body", "mcp", index, *where], "msg": message, "type": "value_error"}
        for index, problem in enumerate(found)
        if problem is not None
        for where, message in (problem,)
    ]


async def _problem(server: McpServer, client: McpClient) -> tuple[list[str], str] | None:
    try:
        listing = await client.list_tools(server, SAVE_CHECK_TIMEOUT_S)
    except McpRefused as exc:
        return ["url"], str(exc)
    except McpUnavailable as exc:
        return ["url"], f"could not list the tools: {exc}; check the url, transport and headers"
    except TimeoutError:
        return ["url"], (
            f"mcp server {server.name!r} did not list its tools within "
            f"{SAVE_CHECK_TIMEOUT_S:.0f}s; check that {server.url} is an MCP endpoint"
        )
    offered = {tool.name for tool in listing.tools}
    missing = [tool for tool in server.allowed_tools or () if tool not in offered]
    if missing:
        return ["allowed_tools"], (
            f"mcp server {server.name!r} offers no tool {missing}; it offers {sorted(offered)}"
        )
    return None
