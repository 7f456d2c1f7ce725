"""The scripted OpenAI server, exercised through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from callbot.testkit.fake_openai import (
    AsyncFakeOpenAIControl,
    FakeOpenAI,
    FakeOpenAIControl,
    FakeOpenAIProcess,
    Rule,
    start_fake_openai_process,
)

MODEL = "gpt-test"
RECORD_DATA: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "record_data",
        "description": "Store a value the callee gave.",
        "parameters": {
            "type": "object",
            "properties": {"field": {"type": "string"}, "value": {"type": "string"}},
            "required": ["field", "value"],
        },
    },
}
END_CALL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "end_call", "parameters": {"type": "object", "properties": {}}},
}
EMAIL_CALL = {"name": "record_data", "arguments": {"field": "email", "value": "a@b.co"}}


def user_says(text: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": "You collect contact data."},
        {"role": "user", "content": text},
    ]


async def ask(client: openai.AsyncOpenAI, text: str) -> str | None:
    completion = await client.chat.completions.create(model=MODEL, messages=user_says(text))
    return completion.choices[0].message.content


async def test_default_answer_is_ok_in_openai_shape(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=user_says("hi"))

    assert completion.id == "chatcmpl-1"
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "OK.")
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_tool_calls_are_parsed_by_the_client(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when(last_user_regex="email").reply_tool_calls(
        EMAIL_CALL, {"name": "end_call"}, text="Thanks!"
    )

    completion = await client.chat.completions.create(
        model=MODEL, messages=user_says("my email is a@b.co"), tools=[RECORD_DATA, END_CALL]
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Thanks!"
    calls = choice.message.tool_calls
    assert calls is not None
    assert [call.id for call in calls] == ["call_1", "call_2"]
    assert [call.type for call in calls] == ["function", "function"]
    record, end = calls
    assert record.type == "function"
    assert end.type == "function"
    assert record.function.name == "record_data"
    assert json.loads(record.function.arguments) == {"field": "email", "value": "a@b.co"}
    assert (end.function.name, end.function.arguments) == ("end_call", "{}")


async def test_string_arguments_are_sent_verbatim(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when().reply_tool_calls({"name": "record_data", "arguments": '{"field": "email",'})

    completion = await client.chat.completions.create(model=MODEL, messages=user_says("x"))

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].type == "function"
    assert calls[0].function.arguments == '{"field": "email",'


async def test_streamed_text_arrives_in_pieces_that_join_to_the_text(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    text = " Hello there,\nhow are  you? "
    fake.when().reply_text(text)

    stream = await client.chat.completions.create(
        model=MODEL,
        messages=user_says("hi"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert {c.id for c in chunks} == {"chatcmpl-1"}


async def test_streamed_tool_call_deltas_reassemble(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when().reply_tool_calls(EMAIL_CALL, {"name": "end_call"})

    stream = await client.chat.completions.create(
        model=MODEL, messages=user_says("a@b.co"), tools=[RECORD_DATA, END_CALL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish_reasons = []
    async for chunk in stream:
        choice = chunk.choices[0]
        finish_reasons.append(choice.finish_reason)
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""

    assert calls == {
        0: {
            "id": "call_1",
            "name": "record_data",
            "arguments": json.dumps({"field": "email", "value": "a@b.co"}),
        },
        1: {"id": "call_2", "name": "end_call", "arguments": "{}"},
    }
    assert finish_reasons[-1] == "tool_calls"


async def test_stream_helper_accumulates_the_same_completion(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when().reply_tool_calls(EMAIL_CALL, text="Noted, thanks.")

    async with client.chat.completions.stream(
        model=MODEL, messages=user_says("a@b.co"), tools=[RECORD_DATA]
    ) as stream:
        completion = await stream.get_final_completion()

    message = completion.choices[0].message
    assert message.content == "Noted, thanks."
    assert message.tool_calls is not None
    assert message.tool_calls[0].type == "function"
    assert json.loads(message.tool_calls[0].function.arguments) == EMAIL_CALL["arguments"]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError)],
)
async def test_scripted_errors_raise_the_clients_exceptions(
    fake: FakeOpenAI,
    client: openai.AsyncOpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
) -> None:
    fake.when().reply_error(status, "scripted failure")

    with pytest.raises(error_class) as raised:
        await ask(client, "hi")

    assert raised.value.status_code == status
    assert raised.value.body == {
        "message": "scripted failure",
        "type": "requests" if status == 429 else "server_error",
        "param": None,
        "code": "rate_limit_exceeded" if status == 429 else None,
    }
    headers = raised.value.response.headers
    assert headers.get("retry-after") == ("0" if status == 429 else None)
    assert headers.get("retry-after-ms") == ("1" if status == 429 else None)


async def test_a_429_is_retried_at_once_by_a_retrying_client(fake: FakeOpenAI) -> None:
    fake.when().reply_error(429)

    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=1) as c:
        assert await ask(c, "hi") == "OK."

    assert len(fake.requests) == 2


async def test_a_delay_beyond_the_client_timeout_times_out(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when().reply_text("too late", delay_s=30)

    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=user_says("hi"), timeout=0.2)


async def test_a_slow_answer_does_not_hold_up_others(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when(last_user_regex="slow").reply_text("slow answer", delay_s=1.0)

    slow = asyncio.create_task(ask(client, "slow please"))
    assert await ask(client, "quick") == "OK."
    assert not slow.done()
    assert await slow == "slow answer"


async def test_first_fitting_rule_answers_until_its_times_are_used(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when(last_user_regex="email").reply_text("first")
    fake.when(last_user_regex="email", times=2).reply_text("second")
    fake.when(last_user_regex="(?i)EMAIL", times=None).reply_text("forever")
    fake.set_default({"text": "default"})

    answers = [await ask(client, text) for text in ["email", "email", "phone", "email"] * 2]

    assert answers == [
        "first",
        "second",
        "default",
        "second",
        "forever",
        "forever",
        "default",
        "forever",
    ]


async def test_match_looks_at_the_last_user_message_system_and_all_messages(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add_rule(match={"last_user_regex": "bye"}, response={"text": "last user"}, times=None)
    fake.add_rule(match={"system_regex": "^Be brief"}, response={"text": "system"}, times=None)
    fake.add_rule(match={"any_regex": "earlier"}, response={"text": "anywhere"}, times=None)

    async def answer(messages: list[ChatCompletionMessageParam]) -> str | None:
        completion = await client.chat.completions.create(model=MODEL, messages=messages)
        return completion.choices[0].message.content

    assert await answer([{"role": "user", "content": "bye"}]) == "last user"
    assert (
        await answer([{"role": "user", "content": "bye"}, {"role": "user", "content": "no"}])
        == "OK."
    )
    assert await answer([{"role": "user", "content": [{"type": "text", "text": "bye"}]}]) == (
        "last user"
    )
    assert await answer([{"role": "system", "content": "Be brief."}]) == "system"
    assert (
        await answer(
            [
                {"role": "assistant", "content": "said earlier"},
                {"role": "user", "content": "now"},
            ]
        )
        == "anywhere"
    )


async def test_requests_are_recorded_as_sent(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(
        model=MODEL,
        messages=user_says("first"),
        tools=[RECORD_DATA, END_CALL],
        temperature=0.2,
        max_tokens=50,
    )
    await ask(client, "second")

    first, second = fake.requests
    assert (first.index, second.index) == (0, 1)
    assert first.received_at <= second.received_at
    assert first.body["model"] == MODEL
    assert first.body["messages"] == user_says("first")
    assert first.body["tools"] == [RECORD_DATA, END_CALL]
    assert (first.body["temperature"], first.body["max_tokens"]) == (0.2, 50)
    assert second.body["messages"][-1] == {"role": "user", "content": "second"}


async def test_reset_forgets_rules_requests_and_ids(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.when(times=None).reply_tool_calls(EMAIL_CALL)
    fake.set_default({"text": "custom default"})
    await ask(client, "hi")

    fake.reset()
    completion = await client.chat.completions.create(model=MODEL, messages=user_says("hi"))

    assert (completion.id, completion.choices[0].message.content) == ("chatcmpl-1", "OK.")
    assert len(fake.requests) == 1


async def test_the_path_without_v1_is_served_too(fake: FakeOpenAI) -> None:
    base_url = fake.base_url.removesuffix("/v1")
    async with openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0) as c:
        assert await ask(c, "hi") == "OK."


@pytest.mark.parametrize(
    "rule",
    [
        {"match": {"last_user_regex": "("}, "response": {"text": "x"}},
        {"match": {"last_user_rgx": "x"}, "response": {"text": "x"}},
        {"response": {"text": "x", "error": {"status": 500}}},
        {"response": {"delay_s": 1}},
        {"response": {"text": "x"}, "times": 0},
    ],
    ids=["bad-regex", "unknown-field", "error-and-text", "no-answer", "zero-times"],
)
async def test_invalid_rules_are_refused(fake: FakeOpenAI, rule: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        fake.add_rules([rule])


@pytest.fixture
def fake_process() -> Iterator[FakeOpenAIProcess]:
    with start_fake_openai_process() as process:
        yield process
    assert process.process.returncode == 0


def test_process_is_scripted_through_the_control_client(
    fake_process: FakeOpenAIProcess,
) -> None:
    control = fake_process.control
    assert fake_process.base_url.endswith("/v1")
    control.add_rules([Rule.model_validate({"response": {"text": "scripted"}})])
    control.add_rule(match={"last_user_regex": "email"}, response={"tool_calls": [EMAIL_CALL]})
    control.set_default({"text": "process default"})

    client = openai.OpenAI(base_url=fake_process.base_url, api_key="test", max_retries=0)
    with client:
        answers = [
            client.chat.completions.create(model=MODEL, messages=user_says(text)).choices[0].message
            for text in ["hi", "email", "hi"]
        ]

    assert [answer.content for answer in answers] == ["scripted", None, "process default"]
    assert answers[1].tool_calls is not None
    assert [request.body["messages"] for request in control.requests()] == [
        user_says(text) for text in ["hi", "email", "hi"]
    ]
    control.reset()
    assert control.requests() == []


def test_invalid_rules_are_refused_by_client_and_server(
    fake_process: FakeOpenAIProcess,
) -> None:
    invalid = {"response": {"text": "x"}, "times": "many"}
    with pytest.raises(pydantic.ValidationError):
        fake_process.control.add_rules([invalid])

    control_url = fake_process.base_url.removesuffix("/v1") + "/_control/rules"
    refused = httpx.post(control_url, json=[invalid])
    assert refused.status_code == 422
    assert "times" in refused.text


def test_the_control_client_says_which_call_failed(fake_process: FakeOpenAIProcess) -> None:
    control = FakeOpenAIControl(fake_process.base_url + "/nowhere")
    with pytest.raises(RuntimeError, match=r"GET .*/nowhere/_control/requests answered 404"):
        control.requests()


async def test_async_control_client_drives_the_process(fake_process: FakeOpenAIProcess) -> None:
    control = AsyncFakeOpenAIControl(fake_process.base_url)
    await control.add_rule(response={"error": {"status": 429}})
    async with openai.AsyncOpenAI(
        base_url=fake_process.base_url, api_key="test", max_retries=0
    ) as client:
        with pytest.raises(openai.RateLimitError):
            await ask(client, "hi")
        await control.reset()
        await control.set_default({"text": "after reset"})
        assert await ask(client, "hi") == "after reset"

    [request] = await control.requests()
    assert request.index == 0


async def test_a_stream_waits_its_time_to_first_piece_and_between_pieces(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add_rule(
        response={"text": "one two three", "first_token_s": 0.2, "token_interval_s": 0.05}
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=user_says("hi"), stream=True
    )
    _ = [chunk async for chunk in stream]
    [record] = fake.streams()
    assert record.outcome == "finished"
    assert record.pieces_sent == record.pieces_total == 3
    assert record.first_piece_at is not None
    # Lower bounds only: the pauses are sleeps, never shorter than scripted.
    assert record.first_piece_at - record.received_at >= 0.2


async def test_a_stream_the_client_closes_early_is_recorded_as_closed(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add_rule(
        response={
            "text": " ".join(f"w{index}" for index in range(200)),
            "token_interval_s": 0.01,
        }
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=user_says("hi"), stream=True
    )
    read = 0
    async for _chunk in stream:
        read += 1
        if read == 3:
            break
    await stream.close()
    for _ in range(200):
        if fake.streams()[0].outcome != "streaming":
            break
        await asyncio.sleep(0.02)
    [record] = fake.streams()
    assert record.outcome == "closed_by_client"
    assert record.pieces_sent < record.pieces_total == 200
