"""Reading a streamed chat completion: text pieces go to the callee as they
come (through `StreamedSpeech`), tool-call pieces are put back together, and
the whole is returned as the `ChatCompletion` the non-streamed request would
have given, so the tool loop and `to_answer` serve both paths unchanged.

The stream is read inside `async with`: a turn cancelled mid-stream (the
callee interrupted) closes the HTTP response, and the model stops generating.
"""

from __future__ import annotations

from typing import Any

from openai import AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from callbot.dialog.streamed_speech import StreamedSpeech


async def read_streamed_completion(
    stream: AsyncStream[ChatCompletionChunk], speech: StreamedSpeech
) -> ChatCompletion:
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = "stop"
    header: dict[str, Any] = {"id": "streamed", "created": 0, "model": ""}
    speech.begin_completion()
    async with stream:
        async for chunk in stream:
            header = {"id": chunk.id, "created": chunk.created, "model": chunk.model}
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
