"""Issue 16: the model calls the agent's MCP tools during a turn.

dialog runs as a service (real RabbitMQ, the MongoDB fixture, the scripted LLM
with the real openai client) and the example MCP server runs as a process of
its own over Streamable HTTP (`callbot.testkit.mcp_server`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from dialog_doubles import make_agent
from dialog_harness import Caller, CountingStore, TurnWriter, seed_agent, seed_call
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import Turn
from callbot.common.contracts import AgentUpdated, CallTurnRecorded
from callbot.common.messaging import EventPublisher, RpcClient, Topology
from callbot.common.mongo import Document
from callbot.common.settings import Settings
from callbot.dialog.service import DialogService
from callbot.dialog.store import MongoDialogStore
from callbot.testkit.fake_openai import FakeOpenAI, RecordedRequest
from callbot.testkit.mcp_server import ORDERS, McpServerProcess, running_mcp_server

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

SHIPPED = ORDERS["1042"]


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpServerProcess]:
    with running_mcp_server() as server:
        yield server


@dataclass
class Running:
    caller: Caller
    fake: FakeOpenAI
    writer: TurnWriter
    database: AsyncDatabase[Document]
    mcp: McpServerProcess
    amqp: AbstractRobustConnection
    topology: Topology

    async def assistant_turn(self, call_id: str, seq: int) -> Turn:
        """The turn as dialog published it (once the stand-in for persistence stored it)."""
        await self.writer.wait_for_turns(call_id, seq + 1)
        for event in self.writer.events:
            if isinstance(event, CallTurnRecorded) and event.call_id == call_id:
                for turn in event.turns:
                    if turn.seq == seq:
                        return turn
        raise AssertionError(f"no turn {seq} of {call_id} was published")


def orders_agent(url: str, **server: Any) -> Agent:
    return make_agent(
        mcp=[{"name": "orders", "url": url, "timeout_s": 1.0, **server}],
        prompt="[orders] You help {recipient.name} with their orders.",
    )


async def _running(
    settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    mongo_db: AsyncDatabase[Document],
    mcp_server: McpServerProcess,
    allowed_hosts: str,
    agent: Agent | None = None,
) -> AsyncIterator[Running]:
    mcp_server.reset()
    await seed_agent(mongo_db, agent or orders_agent(mcp_server.url))
    writer = TurnWriter(mongo_db)
    await writer.start(amqp_connection, topology)
    async with FakeOpenAI() as fake:
        service = DialogService(
            settings.model_copy(
                update={"openai_base_url": fake.base_url, "mcp_allowed_hosts": allowed_hosts}
            ),
            store=CountingStore(MongoDialogStore(mongo_db)),
        )
        await service.start()
        client = RpcClient(await amqp_connection.channel(publisher_confirms=False))
        await client.start()
        try:
            yield Running(
                Caller(client, topology),
                fake,
                writer,
                mongo_db,
                mcp_server,
                amqp_connection,
                topology,
            )
        finally:
            await service.stop()
            await writer.stop()


@pytest.fixture
async def running(
    settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    mongo_db: AsyncDatabase[Document],
    mcp_server: McpServerProcess,
) -> AsyncIterator[Running]:
    async for value in _running(
        settings, amqp_connection, topology, mongo_db, mcp_server, "127.0.0.1"
    ):
        yield value


def lookup(order_id: object) -> dict[str, Any]:
    return {"name": "orders__lookup_order", "arguments": {"order_id": order_id}}


def tool_messages(request: RecordedRequest) -> list[dict[str, Any]]:
    return [message for message in request.body["messages"] if message["role"] == "tool"]


def offered_names(request: RecordedRequest) -> list[str]:
    return [tool["function"]["name"] for tool in request.body.get("tools", [])]


async def test_the_model_calls_a_tool_and_answers_with_its_result(running: Running) -> None:
    fake = running.fake
    fake.when(any_regex="shipped on Monday").reply_text("Good news: it shipped on Monday.")
    fake.when(last_user_regex="order").reply_tool_calls(lookup("1042"))
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")

    reply = await running.caller.turn("call-1", 1, "Where is my order 1042?")

    assert reply.say == "Good news: it shipped on Monday."
    first, second = fake.requests
    assert "orders__lookup_order" in offered_names(first)
    assert {"record_data", "end_call"} <= set(offered_names(first))
    [told] = tool_messages(second)
    assert told["content"] == SHIPPED
    # The result is data in a tool message, never system text.
    assert all(SHIPPED not in str(m["content"]) for m in second.body["messages"][:-1])
    [call] = (await running.assistant_turn("call-1", 2)).tool_calls
    assert (call.server, call.tool) == ("orders", "lookup_order")
    assert call.arguments == {"order_id": "1042"}
    assert (call.outcome, call.result, call.error) == ("ok", SHIPPED, None)
    await running.writer.wait_for_turns("call-1", 3)
    stored = await running.database["calls"].find_one({"_id": "call-1"})
    assert stored is not None
    assert stored["turns"][2]["tool_calls"][0]["result"] == SHIPPED


async def test_a_result_is_clipped_to_the_agents_size(
    settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    mongo_db: AsyncDatabase[Document],
    mcp_server: McpServerProcess,
) -> None:
    agent = orders_agent(mcp_server.url, max_result_chars=64)
    async for running in _running(
        settings, amqp_connection, topology, mongo_db, mcp_server, "127.0.0.1", agent
    ):
        running.fake.when(last_user_regex="order", times=1).reply_tool_calls(lookup("x" * 200))
        running.fake.set_default({"text": "I could not find that order."})
        await seed_call(running.database, "call-1")
        await running.caller.start("call-1")
        await running.caller.turn("call-1", 1, "my order number is long")
        [call] = (await running.assistant_turn("call-1", 2)).tool_calls
        assert call.result is not None
        assert len(call.result) == 64
        assert call.result.endswith("characters]")
        assert tool_messages(running.fake.requests[1])[0]["content"] == call.result


async def test_a_tool_that_errors_is_told_to_the_model_and_recorded(running: Running) -> None:
    fake = running.fake
    fake.when(any_regex="ERROR").reply_text("Sorry, I cannot refund it right now.")
    fake.when(last_user_regex="refund").reply_tool_calls(
        {"name": "orders__refund_order", "arguments": {"order_id": "1042"}}
    )
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    reply = await running.caller.turn("call-1", 1, "Please refund order 1042")
    assert reply.say == "Sorry, I cannot refund it right now."
    [call] = (await running.assistant_turn("call-1", 2)).tool_calls
    assert call.outcome == "tool_error"
    assert call.error is not None
    assert tool_messages(fake.requests[1])[0]["content"].startswith("ERROR:")
    assert running.mcp.stats()["tools_call"] == 1


async def test_arguments_that_do_not_match_the_schema_are_not_sent(running: Running) -> None:
    fake = running.fake
    fake.when(any_regex="do not match").reply_tool_calls(lookup("1042"))
    fake.when(any_regex="shipped on Monday").reply_text("It shipped on Monday.")
    fake.when(last_user_regex="order").reply_tool_calls(
        {"name": "orders__lookup_order", "arguments": {"order": 1042}}
    )
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    reply = await running.caller.turn("call-1", 1, "Where is my order 1042?")
    assert reply.say == "It shipped on Monday."
    refused, done = (await running.assistant_turn("call-1", 2)).tool_calls
    assert refused.outcome == "refused"
    assert refused.error is not None
    assert "'order_id' is a required property" in refused.error
    assert done.outcome == "ok"
    assert running.mcp.stats()["tools_call"] == 1  # only the well-formed call was sent


async def test_a_tool_the_agent_does_not_allow_is_neither_offered_nor_sent(
    settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    mongo_db: AsyncDatabase[Document],
    mcp_server: McpServerProcess,
) -> None:
    agent = orders_agent(mcp_server.url, allowed_tools=["lookup_order"])
    async for running in _running(
        settings, amqp_connection, topology, mongo_db, mcp_server, "127.0.0.1", agent
    ):
        running.fake.when(last_user_regex="refund").reply_tool_calls(
            {"name": "orders__refund_order", "arguments": {"order_id": "1042"}}
        )
        running.fake.set_default({"text": "I cannot do refunds, sorry."})
        await seed_call(running.database, "call-1")
        await running.caller.start("call-1")
        reply = await running.caller.turn("call-1", 1, "Please refund order 1042")
        assert reply.say == "I cannot do refunds, sorry."
        offered = offered_names(running.fake.requests[0])
        assert [name for name in offered if name.startswith("orders__")] == ["orders__lookup_order"]
        assert {"record_data", "end_call"} <= set(offered)
        [call] = (await running.assistant_turn("call-1", 2)).tool_calls
        assert call.outcome == "refused"
        assert call.error is not None
        assert "no tool named 'orders__refund_order'" in call.error
        assert running.mcp.stats().get("tools_call", 0) == 0


async def test_a_host_not_on_dialogs_allow_list_is_never_contacted(
    settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    mongo_db: AsyncDatabase[Document],
    mcp_server: McpServerProcess,
) -> None:
    """The agent was saved when its host was allowed; dialog's list no longer has it."""
    async for running in _running(
        settings, amqp_connection, topology, mongo_db, mcp_server, "orders.example.com"
    ):
        running.fake.when(last_user_regex="order").reply_tool_calls(lookup("1042"))
        running.fake.set_default({"text": "Let me note that down."})
        await seed_call(running.database, "call-1")
        await running.caller.start("call-1")
        reply = await running.caller.turn("call-1", 1, "Where is my order 1042?")
        assert reply.action == "gather"
        assert "orders__lookup_order" not in offered_names(running.fake.requests[0])
        assert running.mcp.stats() == {}  # neither listed nor called


async def test_a_hanging_tool_is_cancelled_and_the_turn_still_answers(running: Running) -> None:
    fake = running.fake
    fake.when(any_regex="did not answer within").reply_text(
        "I could not check the stock just now. Anything else?"
    )
    fake.when(last_user_regex="stock").reply_tool_calls(
        {"name": "orders__check_stock", "arguments": {"sku": "A-1"}}
    )
    fake.when(any_regex="shipped on Monday").reply_text("It shipped on Monday.")
    fake.when(last_user_regex="order").reply_tool_calls(lookup("1042"))
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")

    reply = await running.caller.turn("call-1", 1, "Is item A-1 in stock?")  # RPC timeout: 4 s
    assert reply.say == "I could not check the stock just now. Anything else?"
    [call] = (await running.assistant_turn("call-1", 2)).tool_calls
    assert call.outcome == "timeout"
    assert call.duration_ms >= 900  # the server's timeout_s (1 s), not the whole turn

    following = await running.caller.turn("call-1", 3, "And where is my order 1042?")
    assert following.say == "It shipped on Monday."


async def test_tools_are_listed_once_per_agent_version(running: Running) -> None:
    running.fake.when(any_regex="shipped on Monday", times=None).reply_text("It shipped.")
    running.fake.when(last_user_regex="order", times=None).reply_tool_calls(lookup("1042"))
    for call_id in ("call-1", "call-2"):
        await seed_call(running.database, call_id)
        await running.caller.start(call_id)
        for seq in range(1, 11, 2):
            await running.caller.turn(call_id, seq, f"Where is my order 1042? ({seq})")
    assert running.mcp.stats() == {"tools_list": 1, "tools_call": 10}

    # A new version of the agent is listed again, once, after agent.updated.
    updated = orders_agent(running.mcp.url).model_copy(update={"version": 2})
    await seed_agent(running.database, updated)
    channel = await running.amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(running.topology.events_exchange)
    await EventPublisher(exchange, app_id="test").publish(AgentUpdated(agent_id="acme", version=2))
    await channel.close()
    give_up_at = time.monotonic() + 10
    attempt = 0
    while running.mcp.stats()["tools_list"] < 2 and time.monotonic() < give_up_at:
        attempt += 1  # until dialog has taken the event: a new call loads version 2
        await seed_call(running.database, f"call-v2-{attempt}")
        await running.caller.start(f"call-v2-{attempt}")
        await running.caller.turn(f"call-v2-{attempt}", 1, "Where is my order 1042?")
    assert running.mcp.stats()["tools_list"] == 2
