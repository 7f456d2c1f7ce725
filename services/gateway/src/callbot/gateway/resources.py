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
from twilio.request_validator import RequestValidator

from callbot.common.mcp_client import McpClient
from callbot.common.messaging import (
    DeclaredTopology,
    EventPublisher,
    RpcClient,
    Topology,
    connect,
    declare_topology,
)
from callbot.common.mongo import callbot_database, create_mongo_client
from callbot.common.object_storage import ObjectStore, S3ObjectStore
from callbot.common.settings import Settings
from callbot.gateway.campaign_documents import CampaignDocuments
from callbot.gateway.dialog_rpc import DialogRpc
from callbot.gateway.domain.callback_urls import CallbackUrls
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
    documents: DocumentReader
    twilio: TwilioCalls
    mcp: McpClient  # lists an agent's MCP tools when it is saved
    campaigns: CampaignDocuments
    results: StoredResults  # the read API's listings
    # Archived recordings (`GET /v1/calls/{id}/recording`).
    objects: ObjectStore
    # What the reconciler reads: the quietest non-final calls, and agents.
    calls: StoredDocuments


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
            documents=stored,
            results=StoredResults(callbot_database(mongo, settings)),
            twilio=twilio,
            mcp=mcp,
            campaigns=CampaignDocuments(callbot_database(mongo, settings)),
            objects=objects,
            calls=stored,
        )
    finally:
        await objects.close()
        await mcp.close()
        twilio.close()
        await mongo.close()
        await connection.close()
        log.info("gateway connections closed")
