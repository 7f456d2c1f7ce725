"""The campaigns service: the one place that wires adapters to handlers.

start: MongoDB (indexes), RabbitMQ (topology, the `campaigns.rpc` server for
gateway, the `call.completed` consumer on the shared `campaigns.events`
queue, a confirmed publisher), the HTTP client to gateway, and the dialer
loop. Any number of replicas run side by side: they share work through
MongoDB's atomic updates (store.py), never through each other.

stop: stop serving and consuming, stop claiming, let placements in hand
finish (they record what gateway answered), close.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient

from callbot.campaigns.handlers import (
    CampaignPorts,
    Claimed,
    announce,
    claim_next,
    claim_stale,
    handle_call_completed,
    handle_recipient_erased,
    handle_request,
    maybe_finish,
    maybe_publish_progress,
    place,
    settle_overdue_call,
)
from callbot.campaigns.placement import CallPlacer, GatewayCallPlacer
from callbot.campaigns.store import CampaignStore
from callbot.common.campaigns import CAMPAIGN_REQUEST_ADAPTER, CampaignAck, CampaignRequest
from callbot.common.contracts import (
    AnyEvent,
    CallCompleted,
    Event,
    RecipientDataErased,
    RpcFailure,
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
from callbot.common.mongo import Document, callbot_database, create_mongo_client
from callbot.common.settings import Settings

log = logging.getLogger(__name__)

# The dialer looks for work this often; placements themselves are paced by
# each campaign's slots, not by this tick.
TICK_S = 0.02
# Running campaigns are re-read this often (a new, paused or canceled one is
# noticed within it).
REFRESH_S = 0.5


def utc_now() -> datetime:
    return datetime.now(UTC)


class CampaignsService:
    def __init__(self, settings: Settings, *, placer: CallPlacer | None = None) -> None:
        self._settings = settings
        self._placer = placer
        self._instance = uuid.uuid4().hex[:12]
        self._connection: AbstractRobustConnection | None = None
        self._mongo: AsyncMongoClient[Document] | None = None
        self._rpc: RpcServer[CampaignRequest] | None = None
        self._consumer: EventConsumer | None = None
        self._declared: DeclaredTopology | None = None
        self._dialer: asyncio.Task[None] | None = None
        self._placements: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._ports: CampaignPorts | None = None

    async def start(self) -> None:
        settings = self._settings
        self._mongo = create_mongo_client(settings, "callbot-campaigns")
        store = CampaignStore(callbot_database(self._mongo, settings))
        await store.ensure_indexes()

        topology = Topology(settings.rabbitmq_namespace, settings.rabbitmq_delivery_limit)
        self._connection = connection = await connect(settings, f"campaigns-{self._instance}")
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=settings.rabbitmq_prefetch)
        self._declared = await declare_topology(channel, topology)
        events_channel = await connection.channel(publisher_confirms=True)
        publisher = EventPublisher(
            await events_channel.get_exchange(topology.events_exchange), app_id="campaigns"
        )

        async def publish(event: Event) -> None:
            await publisher.publish(event)

        placer = self._placer or GatewayCallPlacer(
            settings.campaigns_gateway_url,
            settings.campaigns_api_key.get_secret_value()
            or next(iter(sorted(settings.api_keys)), ""),
        )
        self._placer = placer
        self._ports = ports = CampaignPorts(
            store=store,
            placer=placer,
            publish=publish,
            clock=utc_now,
            owner=f"campaigns-{self._instance}",
            lease=timedelta(seconds=settings.campaigns_lease_s),
            progress_interval=timedelta(seconds=settings.campaigns_progress_interval_s),
            outcome_timeout=timedelta(seconds=settings.campaigns_outcome_timeout_s),
        )

        async def on_event(event: AnyEvent) -> None:
            if isinstance(event, CallCompleted):
                await handle_call_completed(event.call, ports)
            elif isinstance(event, RecipientDataErased):
                await handle_recipient_erased(event, ports)

        async def on_request(
            request: CampaignRequest, _deadline: Deadline
        ) -> CampaignAck | RpcFailure:
            return await handle_request(request, ports)

        self._consumer = EventConsumer(
            self._declared.queues[topology.campaigns_events_queue],
            on_event,
            delivery_limit=settings.rabbitmq_delivery_limit,
        )
        await self._consumer.start()
        self._rpc = RpcServer(
            channel,
            self._declared.queues[topology.campaigns_rpc_queue],
            CAMPAIGN_REQUEST_ADAPTER,
            on_request,
            dead_letters=self._declared.dead_letters,
        )
        await self._rpc.start()
        self._dialer = asyncio.create_task(self._dial_forever(ports), name="campaigns-dialer")
        log.info("campaigns serving", extra={"rpc_queue": topology.campaigns_rpc_queue})

    async def _dial_forever(self, ports: CampaignPorts) -> None:
        loop = asyncio.get_running_loop()
        refreshed_at = 0.0
        campaigns: list[Document] = []
        while not self._stopping.is_set():
            try:
                if loop.time() - refreshed_at >= REFRESH_S:
                    refreshed_at = loop.time()
                    campaigns = await ports.store.running_campaigns()
                    await self._housekeeping(campaigns, ports)
                for campaign in campaigns:
                    claimed = await claim_next(campaign, ports)
                    if claimed is not None:
                        self._start_placement(claimed, ports)
            except Exception:
                # MongoDB away, a bad document: log, wait, go on (nothing is
                # lost: claims are leased and attempts stay in MongoDB).
                log.exception("dialer step failed; retrying in 1 s")
                await asyncio.sleep(1.0)
            await asyncio.sleep(TICK_S)

    async def _housekeeping(self, campaigns: list[Document], ports: CampaignPorts) -> None:
        for campaign in campaigns:
            await maybe_publish_progress(campaign, ports)
            await maybe_finish(campaign["_id"], ports)
        await settle_overdue_call(ports)
        stale = await claim_stale(ports)
        if stale is not None:
            self._start_placement(stale, ports)
        for ended in await ports.store.unannounced_campaigns():
            if await ports.store.count_active(ended["_id"]) == 0:
                await announce(ended, ports)

    def _start_placement(self, claimed: Claimed, ports: CampaignPorts) -> None:
        task = asyncio.create_task(place(claimed, ports))
        self._placements.add(task)
        task.add_done_callback(self._placement_done)

    def _placement_done(self, task: asyncio.Task[None]) -> None:
        self._placements.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "placement failed; its claim is placed again when the lease runs out",
                exc_info=task.exception(),
            )

    async def stop(self) -> None:
        self._stopping.set()
        if self._rpc is not None:
            await self._rpc.stop()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._dialer is not None:
            await self._dialer
        if self._placements:
            await asyncio.wait(set(self._placements))
        if self._placer is not None:
            await self._placer.close()
        if self._connection is not None:
            await self._connection.close()
        if self._mongo is not None:
            await self._mongo.close()
