"""Everything the gateway opens at start and closes at stop: the broker
connection and its channels, the RPC client, the event publisher, MongoDB,
the Twilio REST client and object storage. Opened in the app's lifespan,
never at import time."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient
from twilio.request_validator import RequestValidator

from callbot.common.mcp_client import McpClient
from callbot.common.messaging import (
    DeclaredTopology,
    EventPublisher,
    RpcClient,
    StreamingRpcClient,
    Topology,
    connect,
    declare_topology,
    stream_cancel_exchange,
)
from callbot.common.mongo import Document, callbot_database, create_mongo_client
from callbot.common.object_storage import ObjectStore, S3ObjectStore
from callbot.common.settings import Settings
from callbot.common.startup import wait_for_mongodb
from callbot.gateway.agent_audio import AgentAudioUrls
from callbot.gateway.call_placing import CallClaims, CallPlacer
from callbot.gateway.campaign_documents import CampaignDocuments
from callbot.gateway.dialog_rpc import DialogRpc
from callbot.gateway.domain.callback_urls import CallbackUrls
from callbot.gateway.domain.outbound_call import e164_number
from callbot.gateway.idempotency_claims import PersistenceCallClaims
from callbot.gateway.placed_calls import PlacedCalls
from callbot.gateway.result_documents import StoredResults
from callbot.gateway.stored_documents import DocumentReader, StoredDocuments
from callbot.gateway.twilio_rest import TwilioCalls

log = logging.getLogger(__name__)


class GatewayMisconfigured(RuntimeError):
    """A setting the gateway cannot run without is missing."""


def check_settings(settings: Settings) -> None:
    """Refuse to start without Twilio credentials or API keys: a gateway that
    cannot check signatures or callers must not serve."""
    missing = [
        name
        for name, value in (
            ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
            ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token.get_secret_value()),
            ("CALLBOT_API_KEYS", ",".join(settings.api_keys)),
        )
        if not value.strip()
    ]
    if missing:
        raise GatewayMisconfigured(
            f"gateway cannot start: set {', '.join(missing)} "
            "(Twilio credentials to place calls and check webhook signatures; "
            "comma-separated API keys for /v1)"
        )
    _check_from_number(settings.twilio_from_number)


def _check_from_number(number: str) -> None:
    """Every call needs a caller ID: without a default, each would fail at Twilio."""
    if not number.strip():
        raise GatewayMisconfigured(
            "gateway cannot start: set TWILIO_FROM_NUMBER, the default caller ID (E.164, a "
            "number you own at Twilio, e.g. +14155550100); a call may still give its own "
            "`from`, but one without it would be refused by Twilio"
        )
    try:
        e164_number(number)
    except ValueError as exc:
        raise GatewayMisconfigured(f"gateway cannot start: TWILIO_FROM_NUMBER {exc}") from None


@dataclass
class GatewayResources:
    settings: Settings
    topology: Topology
    urls: CallbackUrls
    validator: RequestValidator
    connection: AbstractRobustConnection
    # Kept referenced so the robust connection restores the declared topology.
    declared: DeclaredTopology
    publisher: EventPublisher
    rpc: RpcClient
    dialog: DialogRpc
    # ConversationRelay turns: dialog's replies in chunks, cancelled on barge-in.
    dialog_stream: StreamingRpcClient
    documents: DocumentReader
    twilio: TwilioCalls
    mcp: McpClient  # lists an agent's MCP tools when it is saved
    campaigns: CampaignDocuments
    results: StoredResults  # the read API's listings
    # Archived recordings (`GET /v1/calls/{id}/recording`) and agent files.
    objects: ObjectStore
    agent_audio: AgentAudioUrls  # presigned URLs of the agent's recorded lines
    claims: CallClaims
    mongo: AsyncMongoClient[Document]
    # What the reconciler reads: the quietest non-final calls, and agents.
    calls: StoredDocuments
    # Whether a callback's call is callbot's (an orphan's is not stored).
    placed_calls: PlacedCalls

    @property
    def call_placer(self) -> CallPlacer:
        """The one path that places calls (checks, Idempotency-Key, Twilio, call.created)."""
        return CallPlacer(
            documents=self.documents,
            twilio=self.twilio,
            publisher=self.publisher,
            claims=self.claims,
            urls=self.urls,
            default_from=self.settings.twilio_from_number,
            default_retention_days=self.settings.retention_days,
        )


async def wait_for_dependencies(settings: Settings) -> None:
    """RabbitMQ and MongoDB answer (within `STARTUP_TIMEOUT_S`), else
    `StartupFailed`: checked before uvicorn starts, where signals still stop it."""
    connection = await connect(settings, f"gateway-{os.getpid()}-check")
    await connection.close()
    await wait_for_mongodb(settings)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[GatewayResources]:
    topology = Topology(settings.rabbitmq_namespace, settings.rabbitmq_delivery_limit)
    connection = await connect(settings, f"gateway-{os.getpid()}")
    mongo = create_mongo_client(settings, "callbot-gateway")
    mcp = McpClient(settings.mcp_allowed_host_set)
    twilio = TwilioCalls(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        settings.twilio_api_base_url,
    )
    objects = S3ObjectStore(settings.s3_config())  # connects on first use, not here
    await objects.open()
    try:
        events_channel = await connection.channel(publisher_confirms=True)
        declared = await declare_topology(events_channel, topology)
        # The reply is the RPC's confirmation: confirms would only add latency.
        rpc = RpcClient(await connection.channel(publisher_confirms=False))
        await rpc.start()
        dialog_stream = StreamingRpcClient(
            await connection.channel(publisher_confirms=False),
            stream_cancel_exchange(topology.namespace),
        )
        await dialog_stream.start()
        stored = StoredDocuments(callbot_database(mongo, settings))
        yield GatewayResources(
            settings=settings,
            topology=topology,
            urls=CallbackUrls(settings.public_base_url),
            validator=RequestValidator(settings.twilio_auth_token.get_secret_value()),
            connection=connection,
            declared=declared,
            publisher=EventPublisher(declared.events, app_id="gateway"),
            rpc=rpc,
            dialog=DialogRpc(rpc, topology.dialog_rpc_queue, settings.dialog_deadline_ms / 1000),
            dialog_stream=dialog_stream,
            documents=stored,
            results=StoredResults(callbot_database(mongo, settings)),
            twilio=twilio,
            claims=PersistenceCallClaims(rpc, topology.persistence_rpc_queue),
            mongo=mongo,
            mcp=mcp,
            campaigns=CampaignDocuments(callbot_database(mongo, settings)),
            objects=objects,
            agent_audio=AgentAudioUrls(objects, expires_s=settings.s3_presigned_url_ttl_s),
            calls=stored,
            placed_calls=PlacedCalls(stored, wait_s=settings.orphan_wait_ms / 1000),
        )
    finally:
        await objects.close()
        await mcp.close()
        twilio.close()
        await mongo.close()
        await connection.close()
        log.info("gateway connections closed")
