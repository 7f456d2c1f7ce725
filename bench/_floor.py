"""The floor our turn is measured against: what any design with one HTTP
request and one broker round trip pays, with none of callbot's work.

- a bare FastAPI endpoint returning fixed TwiML, served by uvicorn
  (uvloop + httptools) in a process of its own:
  `python bench/_floor.py PORT`;
- one raw aio-pika RPC round trip over direct reply-to, with no contracts,
  no deadlines, no logging.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

FIXED_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="speech" '
    'action="/voice/process-speech?call_id=bench&amp;seq=3" method="POST" '
    'actionOnEmptyResult="true"><Say>OK.</Say></Gather></Response>'
)
REPLY_TO = "amq.rabbitmq.reply-to"


def serve_bare(port: int) -> None:
    """The baseline: FastAPI on the same uvicorn stack, returning fixed TwiML."""
    import uvicorn
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.post("/voice/process-speech")
    async def process_speech() -> Response:
        return Response(FIXED_TWIML, media_type="application/xml")

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


async def start_bare(port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, str(port),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/docs")
    return process


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


async def raw_rpc_round_trips(rabbitmq_url: str, count: int, warm_up: int = 200) -> list[float]:
    """`count` sequential request/reply round trips through a fresh queue."""
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        server_channel = await connection.channel()
        queue = await server_channel.declare_queue(
            f"bench.floor.{uuid.uuid4().hex}", exclusive=True
        )

        async def reply(message: AbstractIncomingMessage) -> None:
            await server_channel.default_exchange.publish(
                aio_pika.Message(b"OK.", correlation_id=message.correlation_id),
                routing_key=message.reply_to or "",
            )
            await message.ack()

        await queue.consume(reply)
        client_channel = await connection.channel()
        replies = await client_channel.get_queue(REPLY_TO, ensure=False)
        waiting: dict[str, asyncio.Future[bytes]] = {}

        async def on_reply(message: AbstractIncomingMessage) -> None:
            future = waiting.pop(message.correlation_id or "", None)
            if future is not None:
                future.set_result(message.body)

        await replies.consume(on_reply, no_ack=True)
        samples: list[float] = []
        for index in range(warm_up + count):
            correlation_id = uuid.uuid4().hex
            answered = waiting[correlation_id] = asyncio.get_running_loop().create_future()
            sent = time.perf_counter()
            await client_channel.default_exchange.publish(
                aio_pika.Message(b"speech", correlation_id=correlation_id, reply_to=REPLY_TO),
                routing_key=queue.name,
            )
            await answered
            if index >= warm_up:
                samples.append(time.perf_counter() - sent)
        return samples


if __name__ == "__main__":
    serve_bare(int(sys.argv[1]))
