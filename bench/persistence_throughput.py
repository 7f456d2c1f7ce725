"""Persistence throughput: turns written per second, and the lag from an event's
publication to its durable write, with N calls talking at once.

    .venv/bin/python bench/persistence_throughput.py [--calls 50] [--turns 40]

Needs RabbitMQ (RABBITMQ_URL, default the local broker). MongoDB: MONGODB_URL
when set, else the test suite's MongoDB-wire stand-in (figures then describe
the stand-in, not a real server). Each call publishes `call.created`, its
turns as dialog does (the greeting alone, then each utterance with its reply
in one `call.turn`, one after another, each confirmed by the broker), then
its terminal status; the service runs in-process with its real adapters.
Prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from contextlib import AsyncExitStack

from _stats import summary_ms  # bench/ is on sys.path when a script here runs
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from callbot.common.calls import Turn
from callbot.common.contracts import (
    CallCreated,
    CallEvent,
    CallStatusChanged,
    CallTurnRecorded,
    utcnow,
)
from callbot.common.messaging import (
    EventPublisher,
    Topology,
    connect,
    declare_topology,
    delete_topology,
)
from callbot.common.mongo import Document
from callbot.common.settings import Settings
from callbot.persistence.service import PersistenceService


class DurableWrites:
    """Collects the publish→durable-write lag of every `call.turn` the service stores."""

    def __init__(self, expected_turns: int) -> None:
        self.lags_s: list[float] = []
        self.turns_stored = 0
        self.last_write = 0.0
        self._expected = expected_turns
        self.all_turns_stored = asyncio.Event()

    def on_stored(self, event: CallEvent) -> None:
        if not isinstance(event, CallTurnRecorded):
            return
        self.lags_s.append((utcnow() - event.occurred_at).total_seconds())
        self.turns_stored += len(event.turns)
        self.last_write = time.perf_counter()
        if self.turns_stored == self._expected:
            self.all_turns_stored.set()


async def play_call(publisher: EventPublisher, call_id: str, turns: int) -> None:
    sid = f"CA{uuid.uuid4().hex}"
    await publisher.publish(
        CallCreated(
            call_id=call_id, call_sid=sid, agent_id="bench", agent_version=1, to="+1555", from_="+1"
        )
    )
    # The greeting (seq 0) alone, then (1, 2), (3, 4), ...: an utterance and its reply.
    exchanges = [range(1), *(range(first, min(first + 2, turns)) for first in range(1, turns, 2))]
    for seqs in exchanges:
        exchange = tuple(
            Turn(
                seq=seq,
                role="assistant" if seq % 2 == 0 else "user",
                content=f"turn {seq} of {call_id}: a sentence of ordinary length for a phone call",
                at=utcnow(),
            )
            for seq in seqs
        )
        await publisher.publish(
            CallTurnRecorded(
                call_id=call_id, turns=exchange, data_collected={"turns_so_far": seqs[-1]}
            )
        )
    await publisher.publish(
        CallStatusChanged(
            call_id=call_id, call_sid=sid, status="completed", sequence_number=3, call_duration=60
        )
    )


async def run(calls: int, turns: int, mongodb_url: str, mongo_kind: str) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(
        rabbitmq_url=SecretStr(
            os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
        ),
        rabbitmq_namespace=namespace,
        mongodb_url=SecretStr(mongodb_url),
        mongodb_db=f"callbot_{namespace}",
    )
    topology = Topology(namespace, settings.rabbitmq_delivery_limit)
    writes = DurableWrites(expected_turns=calls * turns)
    async with AsyncExitStack() as cleanup:
        connection = await connect(settings, f"bench-{namespace}")
        cleanup.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, topology)
        cleanup.push_async_callback(delete_topology, channel, topology)
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_url)
        cleanup.push_async_callback(mongo.close)
        cleanup.push_async_callback(mongo.drop_database, settings.mongodb_db)

        service = PersistenceService(settings, on_stored=writes.on_stored)
        await service.start()
        cleanup.push_async_callback(service.stop)
        publisher = EventPublisher(
            await channel.get_exchange(topology.events_exchange), app_id="bench"
        )

        started = time.perf_counter()
        await asyncio.gather(
            *(play_call(publisher, f"{namespace}-call-{i}", turns) for i in range(calls))
        )
        published = time.perf_counter()
        await asyncio.wait_for(writes.all_turns_stored.wait(), timeout=300)

    elapsed = writes.last_write - started
    lag = summary_ms(writes.lags_s)
    print(f"MongoDB: {mongo_kind}; prefetch {settings.rabbitmq_prefetch}; one service instance")
    print(
        f"{calls} concurrent calls x {turns} turns = {writes.turns_stored} turns "
        f"in {len(writes.lags_s)} call.turn events"
    )
    print(f"publishing took {published - started:.2f}s; last turn durable after {elapsed:.2f}s")
    print(f"turns written per second: {writes.turns_stored / elapsed:,.0f}")
    print(
        "publish -> durable write lag per event (ms): "
        f"p50 {lag['p50']:.1f}  p95 {lag['p95']:.1f}  p99 {lag['p99']:.1f}  "
        f"max {max(writes.lags_s) * 1000:.1f}  mean {lag['mean']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()
    if url := os.environ.get("MONGODB_URL"):
        asyncio.run(run(args.calls, args.turns, url, "the MongoDB at MONGODB_URL"))
        return
    from callbot.testkit.mongo_standin import start_standin_process

    standin = start_standin_process()
    try:
        asyncio.run(run(args.calls, args.turns, standin.url, "MongoDB-wire stand-in"))
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
