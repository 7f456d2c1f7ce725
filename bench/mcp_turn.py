"""What one fast MCP tool call adds to a turn: dialog's conversation model
answering a turn with one `lookup_order` call against the same turn without
tools, measured in one run, the two kinds interleaved.

Both sides are processes of their own: the scripted OpenAI-compatible server
(answering at once) and the example MCP server over Streamable HTTP. The turn
with the tool costs two model requests (the call, then the answer with its
result) and the tool call (a new MCP connection on a kept HTTP client, the
protocol version known from the listing). The tool list is read once, before
the measured turns, as dialog does once per agent version.

Usage: .venv/bin/python bench/mcp_turn.py [--turns 300]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import uvloop
from _stats import print_row, summary_ms  # bench/ is on sys.path when a script here runs

from callbot.common.agents import Agent
from callbot.common.calls import Turn
from callbot.common.mcp_client import McpClient
from callbot.common.settings import Settings
from callbot.dialog.domain.session import Session
from callbot.dialog.llm import OpenAIConversation
from callbot.dialog.mcp_tools import AgentToolbox
from callbot.dialog.tool_conversation import ToolUsingConversation
from callbot.testkit.fake_openai import start_fake_openai_process
from callbot.testkit.mcp_server import ORDERS, running_mcp_server

WARM_UP = 30


def agent(tag: str, mcp_url: str | None) -> Agent:
    servers = [{"name": "orders", "url": mcp_url, "timeout_s": 2.0}] if mcp_url else []
    return Agent.model_validate(
        {
            "_id": tag,
            "name": "Acme",
            "greeting": "Hi",
            "prompt": f"[{tag}] You help callers with their orders.",
            "llm": {"timeout_s": 3.0},
            "mcp": servers,
        }
    )


async def measure(base_url: str, mcp_url: str, turns: int) -> None:
    settings = Settings(openai_base_url=base_url, openai_api_key=None)
    llm = OpenAIConversation(settings)
    toolbox = AgentToolbox(McpClient(frozenset({"127.0.0.1"})), ttl_s=3600)
    model = ToolUsingConversation(llm, toolbox, max_steps=3)
    with_tool = Session(call_id="bench-tool", agent=agent("tool", mcp_url))
    without = Session(call_id="bench-plain", agent=agent("plain", None))
    heard = Turn(seq=1, role="user", content="Where is my order 1042?", at=datetime.now(UTC))
    samples: dict[str, list[float]] = {"without": [], "with": []}
    started = time.perf_counter()
    for index in range(WARM_UP + turns):
        for kind, session in (("without", without), ("with", with_tool)):
            begun = time.perf_counter()
            answer = await model.answer(session, heard, 3.5)
            elapsed = time.perf_counter() - begun
            if kind == "with":
                [call] = answer.tool_calls
                assert call.outcome == "ok", call
            if index >= WARM_UP:
                samples[kind].append(elapsed)
    total = time.perf_counter() - started
    print_row("turn without tools (1 model request)", samples["without"], total / 2)
    print_row("turn with one MCP tool call (2 requests)", samples["with"], total / 2)
    plain, tool = summary_ms(samples["without"]), summary_ms(samples["with"])
    print(
        f"added by the tool call: p50 {tool['p50'] - plain['p50']:.2f} ms, "
        f"p99 {tool['p99'] - plain['p99']:.2f} ms"
    )
    await toolbox.client.close()
    await llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    options = parser.parse_args()
    with start_fake_openai_process() as fake, running_mcp_server() as server:
        fake.control.add_rules(
            [
                {
                    "match": {"system_regex": r"\[tool\]", "any_regex": '"role": "tool"'},
                    "response": {"text": f"Let me see. {ORDERS['1042']}"},
                    "times": None,
                },
                {
                    "match": {"system_regex": r"\[tool\]"},
                    "response": {
                        "tool_calls": [
                            {"name": "orders__lookup_order", "arguments": {"order_id": "1042"}}
                        ]
                    },
                    "times": None,
                },
            ]
        )
        fake.control.set_default({"text": "Let me see. It shipped on Monday."})
        uvloop.run(measure(fake.base_url, server.url, options.turns))
        print(f"MCP server requests: {server.stats()}")


if __name__ == "__main__":
    main()
