"""Reading a streamed chat completion: text pieces go to the callee as they
come (through `StreamedSpeech`), tool-call pieces are put back together, and
the whole is returned as the `ChatCompletion` the non-streamed request would
have given, so the tool loop and `to_answer` serve both paths unchanged.

The openai client sends the request and raises on an error status; the
events are read here, off its response: the client's own stream iterator
builds each chunk with a pure-Python walk of the chunk's type hints and
decodes the event stream byte by byte, together ~0.3 ms of a turn's first
words on a cold path (docs/performance.md). A chunk is validated from its
JSON by pydantic's core instead; one a lax OpenAI-compatible server sends
without a field the type requires (`created`, `object`) is still read, as
the client would.

The stream is read inside `async with`: a turn cancelled mid-stream (the
callee interrupted) closes the HTTP response, and the model stops generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from callbot.dialog.streamed_speech import StreamedSpeech

END_OF_STREAM = "[DONE]"
# The completion's id, created and model when no chunk gave them.
_NO_HEADER: dict[str, Any] = {"id": "streamed", "created": 0, "model": ""}


async def read_streamed_completion(
    stream: AsyncStream[ChatCompletionChunk], speech: StreamedSpeech
) -> ChatCompletion:
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = "stop"
    header = dict(_NO_HEADER)
    speech.begin_completion()
    async with stream:
        async for chunk in completion_chunks(stream.response):
            # A lax server's chunk may lack these (see `_chunk`); the completion needs them.
            header = {field: getattr(chunk, field) or empty for field, empty in _NO_HEADER.items()}
            if not chunk.choices:
                continue  # the usage chunk
            choice = chunk.choices[0]
            delta = choice.delta
            if delta.tool_calls:
                await speech.end_of_text()
                for piece in delta.tool_calls:
                    _add_tool_call_piece(calls, piece.index, piece.id, piece.function)
            if delta.content:
                text.append(delta.content)
                await speech.model_text(delta.content)
            if choice.finish_reason:
                finish_reason = choice.finish_reason
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return ChatCompletion.model_validate(
        {
            **header,
            "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
        }
    )


def _add_tool_call_piece(
    calls: dict[int, dict[str, Any]], index: int, call_id: str | None, function: Any
) -> None:
    call = calls.setdefault(
        index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if call_id:
        call["id"] = call_id
    if function is not None:
        call["function"]["name"] += function.name or ""
        call["function"]["arguments"] += function.arguments or ""


async def completion_chunks(response: httpx2.Response) -> AsyncIterator[ChatCompletionChunk]:
    """The chunks of a chat completion's event stream, up to `[DONE]`; an
    `error` the server sends mid-stream raises `openai.APIError`, a broken or
    timed-out read the client's own connection and timeout errors."""
    try:
        async for data in event_data(response.aiter_lines()):
            if data == END_OF_STREAM:
                # The body's end came with it: closing the response keeps the connection.
                return
            yield _chunk(data, response)
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except httpx2.RequestError as exc:
        raise openai.APIConnectionError(request=response.request) from exc


async def event_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The `data` of each server-sent event (WHATWG HTML, "Server-sent
    events": an event ends at a blank line, its `data` lines joined by a
    newline; comments, `event`, `id` and `retry` fields, and an event cut off
    by the stream's end are dropped)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))


def _chunk(data: str, response: httpx2.Response) -> ChatCompletionChunk:
    try:
        return ChatCompletionChunk.model_validate_json(data)
    except ValidationError:
        payload = json.loads(data)
    if not isinstance(payload, dict):
        raise openai.APIError(
            "the model streamed an event that is not a JSON object", response.request, body=payload
        )
    error = payload.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str) or not message:
            message = "An error occurred during streaming"  # the client's words
        raise openai.APIError(message, response.request, body=error)
    # What the client itself accepts: a chunk built without validation.
    return ChatCompletionChunk.construct(**payload)
