"""The tools of an agent's MCP servers, as dialog offers and calls them.

`AgentToolbox` lists each server's tools once per agent version and keeps the
result (`MCP_TOOLS_TTL_S`; dropped on `agent.updated`), so a turn asks no
server for its tool list: one `tools/list` per server per agent version, not
per turn or per call. Concurrent turns of one agent share one listing. A
server that cannot be listed (down, refused, too slow for the turn) offers no
tools, and is tried again after `RETRY_LISTING_S` rather than on every turn.

`ToolRunner` sends one checked call and turns every way it can end into a
`ToolCallRecord` (and a metric): ok, tool_error, timeout (cancelled),
refused (host or secret), unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from opentelemetry.trace import StatusCode

from callbot.common.agents import Agent
from callbot.common.mcp_client import McpClient, McpRefused, McpUnavailable, ServerTools
from callbot.common.mcp_servers import McpServer, ToolCallRecord, ToolOutcome, usable_servers
from callbot.common.tracing import span
from callbot.dialog.domain.tool_loop import CheckedCall, OfferedTool, record
from callbot.dialog.metrics import MCP_TOOL_CALLS, MCP_TOOL_LISTINGS, MCP_TOOL_SECONDS
from callbot.dialog.ttl_cache import TtlLruCache

log = logging.getLogger(__name__)

MAX_AGENTS = 512
RETRY_LISTING_S = 15.0
# A listing inside a turn may take at most this share of the time left.
LISTING_SHARE = 0.3


class AgentToolbox:
    def __init__(
        self,
        client: McpClient,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._listed: TtlLruCache[tuple[str, int, str], ServerTools] = TtlLruCache(
            MAX_AGENTS, ttl_s, clock
        )
        self._failed: TtlLruCache[tuple[str, int, str], str] = TtlLruCache(
            MAX_AGENTS, RETRY_LISTING_S, clock
        )
        self._pending: dict[tuple[str, int, str], asyncio.Task[ServerTools | None]] = {}

    @property
    def client(self) -> McpClient:
        return self._client

    def drop(self, agent_id: str) -> None:
        """`agent.updated`: list this agent's tools again on its next turn."""
        for cache in (self._listed, self._failed):
            for key in [key for key in cache.keys_held() if key[0] == agent_id]:
                cache.pop(key)

    async def offered(self, agent: Agent, time_left_s: float) -> dict[str, OfferedTool]:
        """The tools the model may call for `agent`, by the name it sees."""
        servers = usable_servers(agent.mcp)
        listings = await asyncio.gather(
            *(self._listing(agent, server, time_left_s * LISTING_SHARE) for server in servers)
        )
        offered: dict[str, OfferedTool] = {}
        for server, listing in zip(servers, listings, strict=True):
            for tool in listing.tools if listing else ():
                if server.allows(tool.name):
                    item = OfferedTool(server, tool.name, tool.description or "", tool.input_schema)
                    offered[item.name] = item
        return offered

    def listing(self, agent: Agent, server: McpServer) -> ServerTools | None:
        return self._listed.get((agent.agent_id, agent.version, server.name))

    async def _listing(
        self, agent: Agent, server: McpServer, timeout_s: float
    ) -> ServerTools | None:
        key = (agent.agent_id, agent.version, server.name)
        cached = self._listed.get(key)
        if cached is not None:
            return cached
        if self._failed.get(key) is not None:
            return None
        task = self._pending.get(key)
        if task is None:
            # Shared by concurrent turns, and finished even if this turn stops waiting.
            task = asyncio.create_task(self._list(key, server, max(server.timeout_s, timeout_s)))
            self._pending[key] = task
            task.add_done_callback(lambda _done: self._pending.pop(key, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.warning(
                "MCP tool list not ready within the turn; this turn offers no tools from it",
                extra={"server": server.name, "timeout_s": round(timeout_s, 3)},
            )
            return None

    async def _list(
        self, key: tuple[str, int, str], server: McpServer, timeout_s: float
    ) -> ServerTools | None:
        try:
            listing = await self._client.list_tools(server, timeout_s)
        except (McpRefused, McpUnavailable, TimeoutError) as exc:
            MCP_TOOL_LISTINGS.labels(type(exc).__name__).inc()
            self._failed.put(key, str(exc) or type(exc).__name__)
            log.warning(
                "could not list the tools of an MCP server; its tools are not offered",
                extra={"server": server.name, "error": str(exc) or type(exc).__name__},
            )
            return None
        MCP_TOOL_LISTINGS.labels("ok").inc()
        self._listed.put(key, listing)
        return listing


class ToolRunner:
    """Sends checked calls; every ending becomes a record."""

    def __init__(self, toolbox: AgentToolbox) -> None:
        self._toolbox = toolbox

    async def run(self, agent: Agent, call: CheckedCall, timeout_s: float) -> ToolCallRecord:
        server, tool = call.offered.server, call.offered.tool
        # GenAI semantic conventions' tool span; the MCP SDK's client span nests in it.
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "extension",
            "callbot.mcp.server": server.name,
        }
        with span(f"execute_tool {tool}", attributes=attributes) as current:
            done = await self._run(agent, call, timeout_s)
            if current is not None:
                current.set_attribute("callbot.mcp.outcome", done.outcome)
                if done.outcome != "ok":
                    current.set_status(StatusCode.ERROR, done.outcome)
            return done

    async def _run(self, agent: Agent, call: CheckedCall, timeout_s: float) -> ToolCallRecord:
        server, tool = call.offered.server, call.offered.tool
        listing = self._toolbox.listing(agent, server)
        started = time.perf_counter()
        outcome: ToolOutcome
        if listing is None or (listed := listing.tool(tool)) is None:
            outcome, text = "unavailable", f"the tool list of {server.name!r} expired; try again"
        elif timeout_s <= 0:
            outcome, text = "timeout", "no time was left in the turn for this tool"
        else:
            try:
                result = await self._toolbox.client.call_tool(
                    server, listing, listed, call.arguments, timeout_s
                )
                outcome = "tool_error" if result.is_error else "ok"
                text = result.text
            except TimeoutError:
                outcome, text = "timeout", f"{tool} did not answer within {timeout_s:.1f}s"
            except McpRefused as exc:
                outcome, text = "refused", str(exc)
            except McpUnavailable as exc:
                outcome, text = "unavailable", str(exc)
        elapsed = time.perf_counter() - started
        MCP_TOOL_CALLS.labels(server.name, tool, outcome).inc()
        MCP_TOOL_SECONDS.labels(server.name, outcome).observe(elapsed)
        if outcome != "ok":
            log.warning(
                "MCP tool call failed; the model is told",
                extra={"server": server.name, "tool": tool, "outcome": outcome, "error": text},
            )
        return record(
            server.name,
            tool,
            call.arguments,
            outcome,
            text,
            round(elapsed * 1000),
            server.max_result_chars,
        )
