"""The conversation model with the agent's MCP tools: ask the model, run the
tools it calls, ask again with their results, a bounded number of steps.

Step by step, all inside the turn's budget (which gateway's deadline bounds):
1. the model gets the turn's request with the agent's tools added;
2. if it calls MCP tools, each call is checked (offered, schema) and the
   checked ones run side by side, each cut to leave the answer its share of
   the time (`domain.tool_loop.time_for_tool`); a call that would overrun is
   cancelled and reported as a timeout;
3. its message and one `tool` message per call go back to the model;
4. after `MCP_MAX_TOOL_STEPS` steps, or when little time is left, the model
   is asked without the MCP tools, so it must answer.
`record_data` and `end_call` calls made along the way are kept and applied
with the final answer. An agent without servers skips all this: one request,
as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from openai.types.chat import ChatCompletion

from callbot.common.calls import Turn
from callbot.common.mcp_servers import ToolCallRecord
from callbot.common.storable import well_formed_text
from callbot.dialog.domain.actions import Action, ModelAnswer, ModelUnavailable, parse_tool_call
from callbot.dialog.domain.passages import Passage
from callbot.dialog.domain.prompt import LlmRequest, build_llm_request
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.tool_loop import (
    CheckedCall,
    ToolRequest,
    assistant_message,
    check_call,
    has_tools,
    is_mcp_tool,
    refused,
    time_for_tool,
    tool_message,
)
from callbot.dialog.llm import OpenAIConversation, to_answer
from callbot.dialog.mcp_tools import AgentToolbox, ToolRunner
from callbot.dialog.metrics import MCP_TOOL_CALLS
from callbot.dialog.streamed_speech import StreamedSpeech

# Below this, another tool step could not finish: ask for the answer instead.
MIN_STEP_S = 1.0


class ToolUsingConversation:
    def __init__(self, llm: OpenAIConversation, toolbox: AgentToolbox, max_steps: int) -> None:
        self._llm = llm
        self._toolbox = toolbox
        self._runner = ToolRunner(toolbox)
        self._max_steps = max_steps

    async def answer(
        self,
        session: Session,
        heard: Turn,
        budget_s: float,
        speech: StreamedSpeech | None = None,
        passages: Sequence[Passage] = (),
    ) -> ModelAnswer:
        agent = session.agent
        if not has_tools(agent):
            return await self._llm.answer(session, heard, budget_s, speech, passages)
        give_up_at = time.monotonic() + budget_s

        def left() -> float:
            return give_up_at - time.monotonic()

        offered = await self._toolbox.offered(agent, left())
        base = build_llm_request(session, heard, passages)
        definitions = tuple(tool.definition() for tool in offered.values())
        messages: list[dict[str, Any]] = list(base.messages)
        kept: list[Action] = []
        records: list[ToolCallRecord] = []
        for step in range(self._max_steps + 1):
            may_call = bool(offered) and step < self._max_steps and left() > MIN_STEP_S
            request = LlmRequest(
                messages=tuple(messages),
                tools=base.tools + definitions if may_call else base.tools,
                options=base.options,
            )
            completion = await self._llm.complete(request, min(agent.llm.timeout_s, left()), speech)
            requests = _tool_requests(completion)
            if not may_call or not any(is_mcp_tool(item.name) for item in requests):
                answer = to_answer(completion)
                # Streamed: the callee heard the earlier steps' text too.
                said = speech.earlier if speech is not None else ""
                return replace(
                    answer,
                    text=said + answer.text,
                    actions=(*kept, *answer.actions),
                    tool_calls=tuple(records),
                )
            message = completion.choices[0].message
            messages.append(assistant_message(message.content, [_wire(item) for item in requests]))
            outcomes = await self._run_step(session, requests, offered, left())
            for item, (action, told) in zip(requests, outcomes, strict=True):
                if action is not None:
                    kept.append(action)
                if isinstance(told, ToolCallRecord):
                    records.append(told)
                    messages.append(tool_message(item.call_id, told))
                else:
                    messages.append({"role": "tool", "tool_call_id": item.call_id, "content": told})
        raise ModelUnavailable("unreachable: the last step offers no MCP tools")

    async def _run_step(
        self,
        session: Session,
        requests: list[ToolRequest],
        offered: dict[str, Any],
        time_left_s: float,
    ) -> list[tuple[Action | None, ToolCallRecord | str]]:
        """For each call: an action to keep (record_data, end_call) and what the model is told."""

        async def one(item: ToolRequest) -> tuple[Action | None, ToolCallRecord | str]:
            if not is_mcp_tool(item.name):
                action = parse_tool_call(item.name, item.arguments)
                return action, "noted; it takes effect with your answer"
            checked = check_call(item, offered)
            if not isinstance(checked, CheckedCall):
                told = refused(item, checked)
                MCP_TOOL_CALLS.labels(told.server, told.tool, "refused").inc()
                return None, told
            timeout_s = time_for_tool(checked.offered.server, time_left_s)
            return None, await self._runner.run(session.agent, checked, timeout_s)

        return list(await asyncio.gather(*(one(item) for item in requests)))


def _tool_requests(completion: ChatCompletion) -> list[ToolRequest]:
    if not completion.choices:
        return []
    found = []
    for call in completion.choices[0].message.tool_calls or ():
        function: Any = getattr(call, "function", None)  # custom (non-function) tools have none
        if function is not None:
            name = well_formed_text(function.name)
            found.append(ToolRequest(call.id, name, function.arguments or ""))
    return found


def _wire(request: ToolRequest) -> dict[str, Any]:
    return {
        "id": request.call_id,
        "type": "function",
        "function": {"name": request.name, "arguments": request.arguments},
    }
