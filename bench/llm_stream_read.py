"""A streamed completion's first pieces, read two ways: the openai client's own
stream iterator, and dialog's `completion_chunks` (the events read off the
same client's response, each chunk validated by pydantic's core).

A bare SSE server in the same event loop answers each streamed request with
its headers, waits `--idle` seconds (a model thinking; the reader's process
sleeps meanwhile, as dialog does), then writes the first piece alone and the
rest at once. Each sample is the time from the server's write of the first
piece to the reader holding it, and to it holding the second (dialog's
release rule speaks the first clause once the next piece shows it ended):
client-side work only, no process hop. The two readers alternate, twice each.

Usage: .venv/bin/python bench/llm_stream_read.py [--streams 600] [--idle 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import openai
import uvloop
from _stats import summary_ms
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk

from callbot.dialog.llm_stream import completion_chunks

PIECES = ("Sure.", " Here", " is", " one", " short", " sentence.")
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _event(text: str) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return _chunked(f"data: {json.dumps(chunk)}\n\n".encode())


def _chunked(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1's chunked transfer coding."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class SseServer:
    """Reads a request, answers with the pieces; notes when the first went out."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.first_written = 0.0
        rest = [_event(piece) for piece in PIECES[1:]] + [_chunked(b"data: [DONE]\n\n")]
        self._rest = b"".join(rest) + b"0\r\n\r\n"  # the last chunk: the body ends

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client hung up
            await self._answer_each(reader, writer)

    async def _answer_each(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(HEAD)
            await asyncio.sleep(self.idle_s)
            self.first_written = time.perf_counter()
            writer.write(_event(PIECES[0]))
            writer.write(self._rest)
            await writer.drain()


async def run(reader: str, server: SseServer, base_url: str, streams: int) -> None:
    client = openai.AsyncOpenAI(
        api_key="bench", base_url=base_url, max_retries=0, http_client=openai.DefaultAioHttpClient()
    )
    body = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    first: list[float] = []
    second: list[float] = []
    try:
        for _ in range(streams):
            stream = await client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletionChunk,
                stream=True,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
            chunks: AsyncIterator[ChatCompletionChunk] = (
                stream if reader == "client" else completion_chunks(stream.response)
            )
            async with stream:
                async for _ in chunks:
                    taken = time.perf_counter() - server.first_written
                    if len(first) == len(second):
                        first.append(taken)
                    else:
                        second.append(taken)
                        break
    finally:
        await client.close()
    for label, samples in (("first piece", first), ("second piece", second)):
        figures = summary_ms(samples)
        print(
            f"{reader:<20} {label:<13} p50={figures['p50']:.3f}ms "
            f"p95={figures['p95']:.3f}ms p99={figures['p99']:.3f}ms"
        )


async def main(streams: int, idle_s: float) -> None:
    server = SseServer(idle_s)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    base_url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/v1"
    async with listening:
        for reader in ("client", "completion_chunks", "client", "completion_chunks"):
            await run(reader, server, base_url, streams)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=600)
    parser.add_argument("--idle", type=float, default=0.02)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.streams, arguments.idle))
