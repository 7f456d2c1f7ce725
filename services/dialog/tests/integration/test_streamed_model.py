"""A streamed turn through the openai client and the scripted server's SSE:
text released at clause boundaries, tool calls put back together, a model
error before any text retried, one after it not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from dialog_doubles import make_agent

from callbot.common.agents import LlmOptions
from callbot.common.settings import Settings
from callbot.dialog.domain.actions import ModelUnavailable
from callbot.dialog.domain.prompt import LlmRequest, build_tools
from callbot.dialog.llm import OpenAIConversation
from callbot.dialog.streamed_speech import StreamedSpeech
from callbot.testkit.fake_openai import (
    FakeOpenAI,
    Rule,
    RuleMatch,
    ScriptedResponse,
    ScriptedToolCall,
)

REQUEST = LlmRequest(
    messages=({"role": "user", "content": "It's Ada Lovelace"},),
    tools=build_tools(make_agent()),
    options=LlmOptions(),
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def conversation(settings: Settings, fake: FakeOpenAI) -> AsyncIterator[OpenAIConversation]:
    pointed = settings.model_copy(update={"openai_base_url": fake.base_url})
    conversation = OpenAIConversation(pointed)
    yield conversation
    await conversation.close()


class Heard:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.speech = StreamedSpeech(self.emit)

    async def emit(self, text: str) -> None:
        self.texts.append(text)


def _stream(fake: FakeOpenAI, *responses: ScriptedResponse) -> None:
    fake.add_rules([Rule(match=RuleMatch(), response=r, times=1) for r in responses])


async def test_text_goes_out_by_clauses_and_the_tool_call_comes_back_whole(
    fake: FakeOpenAI, conversation: OpenAIConversation
) -> None:
    record = {"field": "full_name", "value": "Ada Lovelace"}
    _stream(
        fake,
        ScriptedResponse(
            text="Thanks, Ada. What is your email?",
            tool_calls=[ScriptedToolCall(name="record_data", arguments=record)],
            token_interval_s=0.001,
        ),
    )
    heard = Heard()
    completion = await conversation.complete(REQUEST, 3.0, heard.speech)

    # Each clause once the next piece shows it ended; the rest at the tool call.
    assert heard.texts == ["Thanks, ", "Ada. ", "What is your email?"]
    message = completion.choices[0].message
    assert message.content == "Thanks, Ada. What is your email?"
    assert completion.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("record_data", record)
    assert fake.streams()[0].outcome == "finished"


async def test_an_error_before_any_text_is_retried_within_the_budget(
    fake: FakeOpenAI, conversation: OpenAIConversation
) -> None:
    fake.when(times=1).reply_error(503, "overloaded")
    _stream(fake, ScriptedResponse(text="Hello there."))
    heard = Heard()
    completion = await conversation.complete(REQUEST, 3.0, heard.speech)
    assert completion.choices[0].message.content == "Hello there."
    # The answer's last clause waits for the turn's line (`finish`), not the stream.
    assert heard.texts == []
    assert len(fake.requests) == 2


async def test_a_model_that_never_answers_in_the_budget_is_unavailable(
    fake: FakeOpenAI, conversation: OpenAIConversation
) -> None:
    _stream(fake, ScriptedResponse(text="Too late.", first_token_s=2.0))
    heard = Heard()
    with pytest.raises(ModelUnavailable):
        await conversation.complete(REQUEST, 0.5, heard.speech)
    assert heard.texts == []
