"""An MCP server for the tests, the bench and the README example, built with the
official SDK's server side (`MCPServer`, formerly FastMCP) and served over
Streamable HTTP at `/mcp`.

Tools:
- `lookup_order(order_id)`: an order's status (a fast tool);
- `check_stock(sku)`: hangs far longer than any turn allows (a slow tool);
- `refund_order(order_id)`: always fails (a tool that errors).

`GET /stats` answers how many `tools/list` and `tools/call` requests the server
has served (`POST /stats/reset` zeroes them). With `--require-header NAME=VALUE`
every MCP request must carry that header (as a secret the agent names with
`env:`), or gets a 401.

    python -m callbot.testkit.mcp_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import Tool as ListedTool
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from callbot.testkit.processes import ServiceProcess, free_port

ORDERS = {
    "1042": "Order 1042 shipped on Monday and arrives on Thursday.",
    "2077": "Order 2077 is being packed and ships tomorrow.",
}
HANG_S = 3600.0


class CountingServer(MCPServer):
    """Counts the requests the tests assert on."""

    def __init__(self) -> None:
        super().__init__(name="orders")
        self.counts: Counter[str] = Counter()

    async def list_tools(self) -> list[ListedTool]:
        self.counts["tools_list"] += 1
        return await super().list_tools()


def build_server() -> CountingServer:
    server = CountingServer()

    @server.tool()
    def lookup_order(order_id: str) -> str:
        """Look up the status of an order by its number."""
        server.counts["tools_call"] += 1
        return ORDERS.get(order_id, f"There is no order {order_id}.")

    @server.tool()
    async def check_stock(sku: str) -> str:
        """Check whether an item is in stock (slow: it asks the warehouse)."""
        server.counts["tools_call"] += 1
        await asyncio.sleep(HANG_S)
        return f"{sku} is in stock."

    @server.tool()
    def refund_order(order_id: str) -> str:
        """Refund an order."""
        server.counts["tools_call"] += 1
        raise RuntimeError(f"the refund service is down; order {order_id} was not refunded")

    return server


class StatsAndCredentials:
    """`/stats` and `/stats/reset`; a 401 for an MCP request without the required header."""

    def __init__(self, server: CountingServer, required: str | None) -> None:
        self._counts = server.counts
        self._app = server.streamable_http_app(
            streamable_http_path="/mcp", json_response=True, stateless_http=True
        )
        name, _, value = (required or "").partition("=")
        self._required = (name.lower().encode(), value.encode()) if required else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        response: Response | None = None
        if path == "/stats":
            response = JSONResponse(dict(self._counts))
        elif path == "/stats/reset":
            self._counts.clear()
            response = JSONResponse({})
        elif self._required is not None and path.startswith("/mcp"):
            name, value = self._required
            if dict(scope["headers"]).get(name) != value:
                response = JSONResponse({"error": "unauthorized"}, status_code=401)
        if response is not None:
            await response(scope, receive, send)
        else:
            await self._app(scope, receive, send)


def build_app(require_header: str | None = None) -> ASGIApp:
    return StatsAndCredentials(build_server(), require_header)


class McpServerProcess:
    """The example server as a process of its own: `url` for an agent, `stats()`."""

    def __init__(self, process: ServiceProcess, port: int) -> None:
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/mcp"

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(f"{self.base_url}/stats", timeout=5).json()
        return counts

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/stats/reset", timeout=5).raise_for_status()


@contextmanager
def running_mcp_server(
    log_dir: Path | None = None, require_header: str | None = None
) -> Iterator[McpServerProcess]:
    port = free_port()
    arguments = ["--port", str(port)]
    if require_header:
        arguments += ["--require-header", require_header]
    with tempfile.TemporaryDirectory() as scratch:
        process = ServiceProcess(
            "mcp-server",
            "callbot.testkit.mcp_server",
            {},
            log_dir or Path(scratch),
            arguments=arguments,
            ready_url=f"http://127.0.0.1:{port}/stats",
        )
        process.start()
        try:
            yield McpServerProcess(process, port)
        finally:
            process.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--require-header", default=None, metavar="NAME=VALUE")
    options = parser.parse_args(argv)
    uvicorn.run(
        build_app(options.require_header),
        host=options.host,
        port=options.port,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
