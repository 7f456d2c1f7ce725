"""Issue 20, "Must show" 2: a whole call with tracing on, one turn is one trace.

gateway, dialog and persistence run as processes with the standard OTEL_*
variables pointing at an OTLP/HTTP receiver in this test process
(`callbot.testkit.otlp_receiver`); the turn asks the scripted LLM, which
calls a tool on the MCP test server (another process). The spans of a turn
must form one tree under gateway's webhook span, cross both RabbitMQ hops
(the `dialog.rpc` request, the `call.turn` event), and carry the `call_id`.
Then the receiver goes away, as a collector may: calls go on as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_harness import E2EStack, agent_definition, running_e2e_stack

from callbot.testkit.fake_openai import FakeOpenAIProcess
from callbot.testkit.mcp_server import ORDERS, McpServerProcess, running_mcp_server
from callbot.testkit.otlp_receiver import OtlpReceiver, ReceivedSpan, running_otlp_receiver

pytestmark = pytest.mark.e2e

TAG = "traced"
QUESTION = "Where is my order 1042?"
ANSWER = f"Let me look. {ORDERS['1042']}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with running_otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServerProcess]:
    with running_mcp_server(tmp_path_factory.mktemp("e2e-tracing-mcp")) as server:
        yield server


@pytest.fixture(scope="module")
def e2e(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    fake_llm: FakeOpenAIProcess,
    receiver: OtlpReceiver,
    mcp_server: McpServerProcess,
) -> Iterator[E2EStack]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
        "MCP_ALLOWED_HOSTS": "127.0.0.1",
    }
    log_dir = tmp_path_factory.mktemp("e2e-test_tracing")
    with running_e2e_stack(log_dir, rabbitmq_url, mongodb_url, fake_llm, env) as stack:
        yield stack


def _rule(response: dict[str, Any], **match: str) -> dict[str, Any]:
    return {
        "match": {"system_regex": re.escape(f"[{TAG}]"), **match},
        "response": response,
        "times": None,
    }


def _orders_agent(e2e: E2EStack, mcp_server: McpServerProcess, to: str) -> None:
    """The agent, its scripted model (a tool call, then the answer) and a callee at `to`."""
    e2e.put_agent(
        "e2e-traced",
        agent_definition(
            TAG,
            data_to_fill=[],
            mcp=[{"name": "orders", "url": mcp_server.url, "timeout_s": 2.0}],
        ),
    )
    lookup = {"name": "orders__lookup_order", "arguments": {"order_id": "1042"}}
    e2e.fake_llm.control.add_rules(
        [
            _rule({"text": ANSWER}, any_regex='"role": "tool".*shipped on Monday'),
            _rule({"tool_calls": [lookup]}, last_user_regex="order 1042"),
        ]
    )
    e2e.add_scenario({"name": f"traced-{to}", "to": to, "steps": [{"say": QUESTION}]})


def _one(spans: list[ReceivedSpan], service: str, kind: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if (s.service, s.kind, s.name) == (service, kind, name)]
    assert len(found) == 1, f"{service} {kind} {name!r}: {len(found)} spans, wanted one"
    return found[0]


def test_a_turn_is_one_trace_across_gateway_dialog_and_persistence(
    e2e: E2EStack, receiver: OtlpReceiver, mcp_server: McpServerProcess
) -> None:
    to = "+15005550401"
    _orders_agent(e2e, mcp_server, to)

    call = e2e.call("e2e-traced", to, {"name": "Ada"})
    call_id = call.placed.call_id
    assert call.played.lines("agent")[1:2] == [ANSWER]  # the turn went through the tool

    def webhook(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next(
            (
                s
                for s in spans
                if s.service == "gateway"
                and s.kind == "SERVER"
                and s.attributes.get("http.route") == "/voice/process-speech"
                and s.attributes.get("call_id") == call_id
            ),
            None,
        )

    def turn_complete(spans: list[ReceivedSpan]) -> bool:
        root = webhook(spans)
        if root is None:
            return False
        in_trace = [s for s in spans if s.trace_id == root.trace_id]
        return any(s.service == "persistence" and s.kind == "CLIENT" for s in in_trace)

    spans = receiver.wait_for(turn_complete, f"the spans of call {call_id}'s first turn")
    root = webhook(spans)
    assert root is not None
    turn = [s for s in spans if s.trace_id == root.trace_id]
    events = f"{e2e.stack.config.namespace}.events"
    rpc_queue = f"{e2e.stack.config.namespace}.dialog.rpc"

    # Every service's spans are in the one trace, and each names the call.
    for service in ("gateway", "dialog", "persistence"):
        named = [s for s in turn if s.service == service and s.attributes.get("call_id")]
        assert named, f"no {service} span of the turn carries call_id"
        assert {s.attributes["call_id"] for s in named} == {call_id}

    # One tree: the webhook is the root and every other span's parent is in the trace.
    assert root.parent_span_id == ""
    span_ids = {s.span_id for s in turn}
    orphans = [(s.service, s.name) for s in turn if s.parent_span_id not in {"", *span_ids}]
    assert orphans == []

    # The path, hop by hop, each span the child of the one before.
    request = _one(turn, "gateway", "PRODUCER", f"send {rpc_queue}")
    served = _one(turn, "dialog", "CONSUMER", f"process {rpc_queue}")
    assert served.parent_span_id == request.span_id
    assert request.attributes["messaging.system"] == "rabbitmq"
    assert request.attributes["messaging.rabbitmq.destination.routing_key"] == rpc_queue
    assert request.attributes["call_id"] == call_id
    llm = [s for s in turn if s.service == "dialog" and s.name.startswith("chat ")]
    assert len(llm) == 2  # the tool call, then the answer
    assert all(s.attributes["gen_ai.operation.name"] == "chat" for s in llm)
    tool = _one(turn, "dialog", "INTERNAL", "execute_tool lookup_order")
    assert tool.attributes["callbot.mcp.outcome"] == "ok"
    # The MCP SDK's own client span nests in ours.
    assert any(s.parent_span_id == tool.span_id and s.kind == "CLIENT" for s in turn)
    published = _one(turn, "dialog", "PRODUCER", f"send {events}")
    assert published.attributes["messaging.rabbitmq.destination.routing_key"] == "call.turn"
    consumed = [s for s in turn if s.service == "persistence" and s.kind == "CONSUMER"]
    assert [s.parent_span_id for s in consumed] == [published.span_id]
    writes = [s for s in turn if s.service == "persistence" and s.kind == "CLIENT"]
    assert writes
    assert all(s.attributes["db.system"] == "mongodb" for s in writes)
    assert {s.parent_span_id for s in writes} == {consumed[0].span_id}

    # call.completed is published under a span that names the call, too.
    completed = receiver.wait_for(
        lambda found: any(
            s.service == "persistence"
            and s.kind == "PRODUCER"
            and s.attributes.get("messaging.rabbitmq.destination.routing_key") == "call.completed"
            and s.attributes.get("call_id") == call_id
            for s in found
        ),
        f"the call.completed publish of {call_id}",
    )
    assert completed


def test_a_collector_that_is_away_loses_spans_never_turns(
    e2e: E2EStack, receiver: OtlpReceiver, mcp_server: McpServerProcess
) -> None:
    to = "+15005550402"
    _orders_agent(e2e, mcp_server, to)
    receiver.stop()  # every export from now on is refused

    call = e2e.call("e2e-traced", to, {"name": "Ada"})

    assert call.played.errors == []
    assert [hook.status_code for hook in call.played.webhooks if hook.status_code >= 400] == []
    assert call.played.lines("agent")[1:2] == [ANSWER]  # the model's answer, not the fallback
    assert [turn.content for turn in call.document.turns if turn.role == "user"] == [QUESTION]
