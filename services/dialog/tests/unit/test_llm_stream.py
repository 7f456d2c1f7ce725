"""Reading a chat completion's event stream off the response: the SSE rules,
`[DONE]`, a lax server's chunk, and the errors a stream can end with."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from callbot.dialog.llm import _is_transient
from callbot.dialog.llm_stream import completion_chunks, event_data, read_streamed_completion
from callbot.dialog.streamed_speech import StreamedSpeech

_REQUEST = httpx2.Request("POST", "http://model.test/v1/chat/completions")


def _chunk(text: str, **fields: object) -> dict[str, object]:
    chunk: dict[str, object] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return {**chunk, **fields}


def _events(*payloads: object) -> bytes:
    return b"".join(f"data: {json.dumps(p)}\n\n".encode() for p in payloads)


def _response(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, request=_REQUEST)


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _texts(response: httpx2.Response) -> list[str | None]:
    return [chunk.choices[0].delta.content async for chunk in completion_chunks(response)]


async def test_each_event_gives_its_data_lines_joined_and_nothing_else() -> None:
    lines = _lines(
        ": a comment, e.g. a keep-alive",
        "event: message",
        "id: 7",
        "data: first",
        "",
        "data:no space",
        "data:  two spaces keep one",
        "",
        "",
        "retry: 100",
        "data: cut off by the stream's end",
    )
    assert [data async for data in event_data(lines)] == [
        "first",
        "no space\n two spaces keep one",
    ]


async def test_the_chunks_end_at_done() -> None:
    body = _events(_chunk("Sure."), _chunk(" Here")) + b"data: [DONE]\n\n" + _events(_chunk("x"))
    assert await _texts(_response(body)) == ["Sure.", " Here"]


async def test_a_chunk_without_the_fields_a_lax_server_leaves_out_is_read() -> None:
    lax = {"id": "1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    assert await _texts(_response(_events(lax))) == ["Hi"]


async def test_a_lax_servers_stream_makes_a_whole_completion() -> None:
    lax = [
        {"id": "1", "model": "m", "choices": [{"index": 0, "delta": {"content": piece}}]}
        for piece in ("Hello", " there.")
    ]
    client = openai.AsyncOpenAI(api_key="unused", base_url="http://model.test/v1")
    stream = openai.AsyncStream(
        cast_to=ChatCompletionChunk, response=_response(_events(*lax)), client=client
    )
    sent: list[str] = []

    async def emit(text: str) -> None:
        sent.append(text)

    completion = await read_streamed_completion(stream, StreamedSpeech(emit))
    assert completion.choices[0].message.content == "Hello there."
    assert (completion.created, completion.model) == (0, "m")
    assert sent == []  # its one clause waits for the turn's line (`finish`)


async def test_an_error_sent_mid_stream_raises_with_the_servers_message() -> None:
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    with pytest.raises(openai.APIError, match="The server had an error") as raised:
        await _texts(_response(_events(_chunk("Sure."), error)))
    assert raised.value.body == error["error"]
    assert not _is_transient(raised.value)


@pytest.mark.parametrize("payload", [["not", "an", "object"], {"error": "overloaded"}])
async def test_an_event_that_is_no_chunk_raises(payload: object) -> None:
    with pytest.raises(openai.APIError):
        await _texts(_response(_events(payload)))


class _BrokenStream(httpx2.AsyncByteStream):
    def __init__(self, failure: Exception) -> None:
        self._failure = failure

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield _events(_chunk("Sure."))
        raise self._failure


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (httpx2.ReadTimeout("slow"), openai.APITimeoutError),
        (httpx2.RemoteProtocolError("peer closed"), openai.APIConnectionError),
    ],
)
async def test_a_broken_read_is_the_clients_own_transient_error(
    failure: Exception, raised: type[openai.APIError]
) -> None:
    response = httpx2.Response(200, stream=_BrokenStream(failure), request=_REQUEST)
    chunks = completion_chunks(response)
    first = await anext(chunks)
    assert first.choices[0].delta.content == "Sure."
    with pytest.raises(raised) as caught:
        await anext(chunks)
    assert _is_transient(caught.value)
