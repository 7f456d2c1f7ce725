"""RPC round trip (direct reply-to) and publisher-confirm latency on RabbitMQ.

Prints p50/p95/p99 and throughput, sequential and with 50 requests in flight.
Usage: .venv/bin/python bench/rpc_latency.py [--requests 2000] [--rabbitmq-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import uvloop
from _stats import print_row  # bench/ is on sys.path when a script here runs
from pydantic import SecretStr

from callbot.common.contracts import (
    DIALOG_REQUEST_ADAPTER,
    DIALOG_RESPONSE_ADAPTER,
    CallAnswered,
    DialogReply,
    DialogRequest,
    DialogTurn,
)
from callbot.common.messaging import (
    Deadline,
    EventPublisher,
    RpcClient,
    RpcServer,
    Topology,
    connect,
    declare_topology,
    delete_topology,
)
from callbot.common.settings import Settings


async def measure(
    label: str, operation: Callable[[], Awaitable[object]], total: int, in_flight: int
) -> None:
    samples: list[float] = []
    semaphore = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with semaphore:
            started = time.perf_counter()
            await operation()
            samples.append(time.perf_counter() - started)

    for _ in range(min(100, total)):  # warm-up
        await operation()
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    print_row(f"{label} (in flight {in_flight})", samples, time.perf_counter() - started)


async def main(requests: int, rabbitmq_url: str) -> None:
    settings = Settings(
        rabbitmq_url=SecretStr(rabbitmq_url), rabbitmq_namespace=f"bench{uuid.uuid4().hex[:8]}"
    )
    topology = Topology(settings.rabbitmq_namespace)
    server_connection = await connect(settings, "bench-server")
    client_connection = await connect(settings, "bench-client")
    channel = await server_connection.channel()
    await declare_topology(channel, topology)

    async def answer(request: DialogRequest, deadline: Deadline) -> DialogReply:
        return DialogReply(call_id=request.call_id, say="OK.", action="gather", next_seq=3)

    await channel.set_qos(prefetch_count=100)
    queue = await channel.get_queue(topology.dialog_rpc_queue)
    server = RpcServer(channel, queue, DIALOG_REQUEST_ADAPTER, answer)
    await server.start()
    client = RpcClient(await client_connection.channel(publisher_confirms=False))
    await client.start()
    request = DialogTurn(call_id="bench", seq=1, speech="my email is ada@example.com")

    async def rpc() -> object:
        return await client.call(
            topology.dialog_rpc_queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=5
        )

    confirm_channel = await client_connection.channel(publisher_confirms=True)
    publisher = EventPublisher(
        await confirm_channel.get_exchange(topology.events_exchange), app_id="bench"
    )
    # The events go to the persistence queue, which nobody consumes here; purged below.
    event = CallAnswered(call_id="bench", call_sid="CA0", answered_by="human")

    async def confirm() -> None:
        await publisher.publish(event)

    print(f"RabbitMQ {rabbitmq_url.split('@')[-1]}  cores={os.cpu_count()}  requests={requests}")
    await measure("rpc round trip", rpc, requests, 1)
    await measure("rpc round trip", rpc, requests, 50)
    await measure("publish with confirm", confirm, requests, 1)
    await measure("publish with confirm", confirm, requests, 50)

    await server.stop()
    cleanup = await server_connection.channel()
    await delete_topology(cleanup, topology)
    await client_connection.close()
    await server_connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    arguments = parser.parse_args()
    uvloop.run(main(arguments.requests, arguments.rabbitmq_url))
