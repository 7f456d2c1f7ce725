"""The persistence service: the one place that wires adapters to handlers.

start: MongoDB client and indexes, the object-storage client (it only ever
erases), RabbitMQ connection and topology, the call-event consumer, the RPC
server (agents, idempotency claims, erasure), the completion and retention sweepers.
stop: stop taking messages, give up waiting for MongoDB (messages in hand are
requeued), let in-flight handlers finish, cancel background tasks, close.
"""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial

from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from callbot.common.contracts import (
    PERSISTENCE_REQUEST_ADAPTER,
    AgentSave,
    AgentSaved,
    AnyEvent,
    CallClaim,
    CallClaimed,
    CallClaimRelease,
    CallClaimReleased,
    PersistenceRequest,
    RecipientAttemptsErased,
    RecipientErase,
    RecipientErased,
)
from callbot.common.messaging import (
    Deadline,
    DeclaredTopology,
    EventConsumer,
    EventPublisher,
    RpcServer,
    Topology,
    connect,
    declare_topology,
)
from callbot.common.mongo import (
    AGENTS,
    AUDIT,
    CALL_CLAIMS,
    CALLS,
    RECIPIENTS,
    Document,
    callbot_database,
    create_mongo_client,
)
from callbot.common.object_storage import S3ObjectStore
from callbot.common.settings import Settings
from callbot.common.startup import wait_for_mongodb
from callbot.persistence.call_claims import MongoCallClaims, claim_call, release_call_claim
from callbot.persistence.completion import CallCompletionPublisher
from callbot.persistence.erasure import (
    CallEraser,
    RetentionSweeper,
    erase_recipient,
    expiry_index,
    record_attempts_erased,
)
from callbot.persistence.handlers import StoredHook, save_agent, store_call_event
from callbot.persistence.recipient_store import MongoRecipientStore, RecipientStore
from callbot.persistence.store import (
    STORE_UNREACHABLE,
    MongoAgentStore,
    MongoCallStore,
    RetryWhileUnreachable,
)

log = logging.getLogger(__name__)

DEFAULT_COMPLETION_GRACE_S = 2.0
# Longer than a publish may take (EventPublisher gives up after 10 s), so a
# claim is only taken over when its holder has surely crashed or failed.
DEFAULT_CLAIM_TIMEOUT_S = 60.0
# Start-up waits this long for MongoDB to create the indexes, then fails (and
# the orchestrator restarts the process); once running, outages are waited out.
INDEX_WAIT_S = 60.0


class PersistenceService:
    def __init__(
        self,
        settings: Settings,
        *,
        completion_grace_s: float = DEFAULT_COMPLETION_GRACE_S,
        claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
        on_stored: StoredHook | None = None,
    ) -> None:
        self._settings = settings
        self._completion_grace_s = completion_grace_s
        self._claim_timeout_s = claim_timeout_s
        self._on_stored = on_stored
        self._stopping = asyncio.Event()
        self._mongo: AsyncMongoClient[Document] | None = None
        self._connection: AbstractRobustConnection | None = None
        self._declared: DeclaredTopology | None = None
        self._consumer: EventConsumer | None = None
        self._rpc: RpcServer[PersistenceRequest] | None = None
        self._completions: CallCompletionPublisher | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._objects: S3ObjectStore | None = None

    async def start(self) -> None:
        settings = self._settings
        await wait_for_mongodb(settings)
        self._mongo = create_mongo_client(settings, "persistence")
        database = callbot_database(self._mongo, settings)
        calls = MongoCallStore(database[CALLS])
        agents = MongoAgentStore(database[AGENTS])
        recipients = MongoRecipientStore(database[RECIPIENTS])
        claims = MongoCallClaims(database[CALL_CLAIMS])
        await _create_indexes(calls, recipients, claims)
        await database[CALLS].create_indexes([expiry_index(settings.retention_ttl_grace_days)])
        self._objects = S3ObjectStore(settings.s3_config())
        await self._objects.open()
        eraser = CallEraser(database[CALLS], self._objects)

        self._connection = await connect(settings, f"persistence-{os.getpid()}")
        topology = Topology(settings.rabbitmq_namespace, settings.rabbitmq_delivery_limit)
        consume_channel = await self._connection.channel()
        await consume_channel.set_qos(prefetch_count=settings.rabbitmq_prefetch)
        self._declared = await declare_topology(consume_channel, topology)
        publish_channel = await self._connection.channel(publisher_confirms=True)
        publisher = EventPublisher(
            await publish_channel.get_exchange(topology.events_exchange), app_id="persistence"
        )

        completions = CallCompletionPublisher(
            calls,
            publisher,
            grace_s=self._completion_grace_s,
            claim_timeout_s=self._claim_timeout_s,
            recipients=recipients,
            summary_wait_s=settings.summary_wait_s,
        )
        self._completions = completions
        store_event = partial(
            store_call_event,
            calls=calls,
            completions=completions,
            events=publisher,
            durably=RetryWhileUnreachable(self._stopping),
            recipients=recipients,
            on_stored=self._on_stored,
        )

        async def on_event(event: AnyEvent) -> None:
            if isinstance(event, RecipientAttemptsErased):
                await record_attempts_erased(event, audit=database[AUDIT])
            else:
                await store_event(event)

        self._consumer = EventConsumer(
            self._declared.queues[topology.persistence_queue.name],
            on_event,
            delivery_limit=topology.delivery_limit,
        )

        async def serve_request(
            request: PersistenceRequest, _deadline: Deadline
        ) -> AgentSaved | CallClaimed | CallClaimReleased | RecipientErased:
            if isinstance(request, RecipientErase):
                return await erase_recipient(
                    request,
                    calls=database[CALLS],
                    recipients=database[RECIPIENTS],
                    audit=database[AUDIT],
                    eraser=eraser,
                    publish=publisher.publish,
                )
            if isinstance(request, CallClaim):
                return await claim_call(request, claims=claims)
            if isinstance(request, CallClaimRelease):
                return await release_call_claim(request, claims=claims)
            assert isinstance(request, AgentSave)
            return await save_agent(request, agents=agents, events=publisher)

        rpc_channel = await self._connection.channel()
        await rpc_channel.set_qos(prefetch_count=settings.rabbitmq_prefetch)
        rpc_queue = await rpc_channel.get_queue(topology.persistence_rpc_queue)
        self._rpc = RpcServer(
            rpc_channel,
            rpc_queue,
            PERSISTENCE_REQUEST_ADAPTER,
            serve_request,
            dead_letters=self._declared.dead_letters,
        )

        await self._consumer.start()
        await self._rpc.start()
        self._sweeper = asyncio.create_task(
            completions.run_sweeper(settings.completed_sweep_interval_s), name="completed-sweeper"
        )
        self._retention = asyncio.create_task(
            RetentionSweeper(database[CALLS], eraser).run(settings.retention_sweep_interval_s),
            name="retention-sweeper",
        )
        log.info(
            "persistence consuming",
            extra={
                "queue": topology.persistence_queue.name,
                "rpc_queue": topology.persistence_rpc_queue,
                "prefetch": settings.rabbitmq_prefetch,
            },
        )

    async def stop(self) -> None:
        # First, so handlers waiting for MongoDB give up and requeue their message.
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._rpc is not None:
            await self._rpc.stop()
        for task in (self._sweeper, self._retention):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._completions is not None:
            await self._completions.close()
        if self._connection is not None:
            await self._connection.close()
        if self._objects is not None:
            await self._objects.close()
        if self._mongo is not None:
            await self._mongo.close()


async def _create_indexes(
    calls: MongoCallStore, recipients: RecipientStore, claims: MongoCallClaims
) -> None:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(STORE_UNREACHABLE),
        stop=stop_after_delay(INDEX_WAIT_S),
        wait=wait_exponential(multiplier=0.2, max=3.0),
        reraise=True,
    ):
        with attempt:
            await calls.ensure_indexes()
            await recipients.ensure_indexes()
            await claims.ensure_indexes()
