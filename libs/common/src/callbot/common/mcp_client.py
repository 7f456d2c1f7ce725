"""Talking to an agent's MCP servers with the official MCP SDK (`mcp`).

dialog lists a server's tools (once per agent version, cached) and calls them
during a turn; gateway lists them once when an agent is saved, to refuse an
unreachable server with a 422. Both go through `McpClient`, which checks the
host against `MCP_ALLOWED_HOSTS` before every connection and reads header
secrets from the environment (`env:NAME`) when it connects.

One MCP connection per request (list or call): the SDK's session lives in a
task group that must close in the task that opened it, and a turn's tool call
must be cancellable on its own. What makes a connection cheap is kept instead
(bench/mcp_turn.py): one HTTP client per server (its connection pool; a new
client costs ~25 ms of TLS setup), and the protocol version the listing
negotiated, so a call skips the version probe. A call also hands the SDK the
cached listing of its tool, which the SDK otherwise fetches again on every new
session (to validate structured results): `tools/list` stays once per agent
version.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ListToolsResult, TextContent, Tool
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from callbot.common.mcp_servers import McpServer, host_problem


class McpRefused(Exception):
    """callbot will not connect: the host is not allowed, or a header's secret is missing."""


class McpUnavailable(Exception):
    """The server could not be reached, or answered outside the protocol."""


@dataclass(frozen=True)
class ServerTools:
    """A server's listing, and the protocol version it was listed with."""

    tools: tuple[Tool, ...]
    protocol_version: str

    def tool(self, name: str) -> Tool | None:
        return next((tool for tool in self.tools if tool.name == name), None)


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool


class McpClient:
    def __init__(
        self, allowed_hosts: frozenset[str], environ: Mapping[str, str] | None = None
    ) -> None:
        self._allowed_hosts = allowed_hosts
        self._environ = os.environ if environ is None else environ
        self._http: dict[tuple[str, tuple[tuple[str, str], ...]], httpx2.AsyncClient] = {}

    async def close(self) -> None:
        clients, self._http = list(self._http.values()), {}
        for client in clients:
            await client.aclose()

    def refusal(self, server: McpServer) -> str | None:
        """Why callbot may not connect to `server`; None when it may."""
        problem = host_problem(server.url, self._allowed_hosts)
        if problem:
            return f"mcp server {server.name!r}: {problem}"
        for header, variable in server.header_variables().items():
            if not self._environ.get(variable):
                return (
                    f"mcp server {server.name!r}: header {header!r} needs the environment "
                    f"variable {variable}, which is not set"
                )
        return None

    async def list_tools(self, server: McpServer, timeout_s: float) -> ServerTools:
        """Every tool the server lists (all pages); raises McpRefused, McpUnavailable or
        TimeoutError."""
        tools: list[Tool] = []
        async with asyncio.timeout(timeout_s), self._connected(server, None) as client:
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
            protocol_version = client.protocol_version
        return ServerTools(tuple(tools), protocol_version)

    async def call_tool(
        self,
        server: McpServer,
        listing: ServerTools,
        tool: Tool,
        arguments: dict[str, Any],
        timeout_s: float,
    ) -> ToolResult:
        """The tool's result (`is_error` when the tool failed or the server refused the
        call); raises McpRefused, McpUnavailable or TimeoutError."""
        async with (
            asyncio.timeout(timeout_s),
            self._connected(server, listing.protocol_version) as client,
        ):
            # The SDK keeps listings per session; give it ours instead of a new tools/list.
            client.session._absorb_tool_listing(ListToolsResult(tools=[tool]), complete=False)
            try:
                result = await client.call_tool(tool.name, arguments)
            except MCPError as exc:
                return ToolResult(f"the server refused the call: {exc}", is_error=True)
        return ToolResult(_result_text(result), result.is_error)

    @asynccontextmanager
    async def _connected(
        self, server: McpServer, protocol_version: str | None
    ) -> AsyncIterator[Client]:
        refusal = self.refusal(server)
        if refusal:
            raise McpRefused(refusal)
        headers = {
            header: self._environ[variable]
            for header, variable in server.header_variables().items()
        }
        transport: AbstractAsyncContextManager[Any]
        if server.transport == "sse":
            transport = sse_client(server.url, headers=headers, timeout=server.timeout_s)
            mode = "legacy"
        else:
            transport = streamable_http_client(
                server.url, http_client=self._http_client(server.url, headers)
            )
            # A modern server needs no probe once its version is known; others handshake.
            known = protocol_version in MODERN_PROTOCOL_VERSIONS
            mode = protocol_version if known and protocol_version else "auto"
        client = Client(transport, mode=mode, cache=None)
        try:
            async with client:
                yield client
        except (TimeoutError, McpRefused, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise _unavailable(server, exc) from exc

    def _http_client(self, url: str, headers: dict[str, str]) -> httpx2.AsyncClient:
        key = (url, tuple(sorted(headers.items())))
        client = self._http.get(key)
        if client is None:
            # Timeouts are the caller's (asyncio.timeout around each request).
            client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(None))
            self._http[key] = client
        return client


def _unavailable(server: McpServer, exc: BaseException) -> McpUnavailable:
    # The SDK reports transport failures inside exception groups: name the first cause.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return McpUnavailable(f"mcp server {server.name!r} ({server.url}): {type(exc).__name__}: {exc}")


def _result_text(result: CallToolResult) -> str:
    parts = [
        block.text if isinstance(block, TextContent) else f"[{block.type} content]"
        for block in result.content
    ]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)
