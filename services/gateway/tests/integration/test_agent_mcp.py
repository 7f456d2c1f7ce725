"""Issue 16: an agent's MCP servers are checked when it is saved.

The example MCP server (`callbot.testkit.mcp_server`) runs as a process of its
own over Streamable HTTP and wants a bearer token; the agent names the token's
environment variable, never the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from gateway_harness import api_headers, demo_agent, gateway_settings, running_gateway

from callbot.common.contracts import AgentSave
from callbot.common.mcp_servers import McpServer
from callbot.common.settings import Settings
from callbot.testkit.mcp_server import McpServerProcess, running_mcp_server
from callbot.testkit.processes import free_port

TOKEN = "Bearer orders-secret"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpServerProcess]:
    with running_mcp_server(require_header=f"Authorization={TOKEN}") as server:
        yield server


@pytest.fixture
async def client(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("ORDERS_TOKEN", TOKEN)
    configured = gateway_settings(settings, mcp_allowed_hosts="127.0.0.1, *.example.internal")
    async with running_gateway(configured) as (_app, client):
        yield client


def _definition(*servers: dict[str, Any]) -> dict[str, Any]:
    agent = demo_agent().model_dump(mode="json", exclude={"agent_id", "version"})
    return {**agent, "mcp": list(servers)}


def _server(url: str, **overrides: Any) -> dict[str, Any]:
    headers = {"Authorization": "env:ORDERS_TOKEN"}
    return {"name": "orders", "url": url, "headers": headers, **overrides}


async def _put(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.put("/v1/agents/orders-bot", json=body, headers=api_headers())


async def test_a_reachable_allowed_server_is_saved_with_its_secret_by_name(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], mcp_server: McpServerProcess
) -> None:
    body = _definition(_server(mcp_server.url, allowed_tools=["lookup_order"]))
    response = await _put(client, body)
    assert response.status_code == 200, response.text
    [saved] = saved_agents
    [server] = saved.agent.mcp
    assert isinstance(server, McpServer)
    assert server.headers == {"Authorization": "env:ORDERS_TOKEN"}
    assert TOKEN not in saved.model_dump_json()  # the secret never leaves the environment


@pytest.mark.parametrize(
    ("server", "loc", "message"),
    [
        pytest.param(
            {"name": "orders", "url": "ftp://127.0.0.1/mcp"}, ["url"], "http://", id="not-http"
        ),
        pytest.param(
            {"name": "Orders Desk", "url": "http://127.0.0.1/mcp"}, ["name"], "pattern", id="name"
        ),
        pytest.param(
            {"name": "orders", "url": "http://127.0.0.1/mcp", "headers": {"X-Key": "abc123"}},
            ["headers"],
            "env:NAME",
            id="secret-in-clear",
        ),
        pytest.param(
            {"name": "orders", "url": "http://127.0.0.1/mcp", "timeout_s": 60},
            ["timeout_s"],
            "less than or equal to 12",
            id="timeout",
        ),
        pytest.param({"name": "orders"}, ["url"], "Field required", id="no-url"),
    ],
)
async def test_a_malformed_server_is_422_naming_the_field(
    client: httpx.AsyncClient,
    saved_agents: list[AgentSave],
    server: dict[str, Any],
    loc: list[str],
    message: str,
) -> None:
    response = await _put(client, _definition(server))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mcp", 0, *loc]
    assert message in error["msg"]
    assert saved_agents == []


async def test_two_servers_with_one_name_are_422(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], mcp_server: McpServerProcess
) -> None:
    response = await _put(client, _definition(_server(mcp_server.url), _server(mcp_server.url)))
    assert response.status_code == 422
    assert "duplicate mcp server names ['orders']" in response.text
    assert saved_agents == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # a cloud metadata address
        "http://localhost:8080/mcp",  # loopback by another name
        "https://orders.example.com/mcp",
    ],
)
async def test_a_host_not_on_the_allow_list_is_422(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], url: str
) -> None:
    response = await _put(client, _definition(_server(url)))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mcp", 0, "url"]
    assert "is not on MCP_ALLOWED_HOSTS" in error["msg"]
    assert saved_agents == []


async def test_an_unreachable_server_is_422_saying_so(
    client: httpx.AsyncClient, saved_agents: list[AgentSave]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    response = await _put(client, _definition(_server(url)))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mcp", 0, "url"]
    assert "could not list the tools" in error["msg"]
    assert "ConnectError" in error["msg"]
    assert saved_agents == []


async def test_a_server_refusing_the_credentials_is_422(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], mcp_server: McpServerProcess
) -> None:
    server = _server(mcp_server.url, headers={"Authorization": "env:NO_SUCH_TOKEN_VARIABLE"})
    response = await _put(client, _definition(server))
    assert response.status_code == 422
    assert "NO_SUCH_TOKEN_VARIABLE, which is not set" in response.text

    response = await _put(client, _definition(_server(mcp_server.url, headers={})))
    assert response.status_code == 422
    assert "could not list the tools" in response.text  # the server answered 401
    assert saved_agents == []


async def test_an_allowed_tool_the_server_does_not_offer_is_422(
    client: httpx.AsyncClient, saved_agents: list[AgentSave], mcp_server: McpServerProcess
) -> None:
    server = _server(mcp_server.url, allowed_tools=["lookup_order", "cancel_order"])
    response = await _put(client, _definition(server))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mcp", 0, "allowed_tools"]
    assert "offers no tool ['cancel_order']" in error["msg"]
    assert "lookup_order" in error["msg"]
    assert saved_agents == []
