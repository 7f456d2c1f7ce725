"""Wiring: the one place that builds dialog's adapters and hands them to the handlers.

- `dialog.rpc` (shared by every replica) is served by `RpcServer`, and
  `dialog.stream` (ConversationRelay turns, replies in chunks) by
  `StreamingRpcServer`, which hears cancels on `<namespace>.rpc.cancel`;
- `agent.updated` and `call.status` reach each replica through a queue of its
  own (exclusive, auto-deleted), since every replica must drop its cached
  agent or session, not just one of them;
- `call.recording_transcribed` comes through `dialog.summaries`, a quorum
  queue all replicas share: one of them remakes the call's summary with it;
- `call.turn` and `call.ending` go out through a publisher-confirms channel.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from pymongo import AsyncMongoClient

from callbot.common.contracts import (
    DIALOG_REQUEST_ADAPTER,
    AgentUpdated,
    AnyEvent,
    CallRecordingTranscribed,
    DialogReply,
    DialogStart,
    DialogTurn,
    RpcFailure,
)
from callbot.common.mcp_client import McpClient
from callbot.common.messaging import (
    Deadline,
    DeclaredTopology,
    EventConsumer,
    EventPublisher,
    RpcServer,
    StreamEmit,
    StreamingRpcServer,
    Topology,
    connect,
    declare_topology,
    stream_cancel_exchange,
)
from callbot.common.messaging.topology import DIALOG_EVENT_KEYS
from callbot.common.mongo import Document, callbot_database, create_mongo_client
from callbot.common.object_storage import S3ObjectStore
from callbot.common.settings import Settings
from callbot.common.startup import wait_for_mongodb
from callbot.dialog.agent_cache import AgentCache, AgentNotFound
from callbot.dialog.handlers import (
    ConversationModel,
    DeterministicConversation,
    DialogPorts,
    handle_event,
    handle_request,
    handle_streamed_request,
)
from callbot.dialog.knowledge import AgentKnowledge
from callbot.dialog.llm import OpenAIConversation, OpenAISummaries
from callbot.dialog.mcp_tools import AgentToolbox
from callbot.dialog.sessions import CallNotFound, SessionRegistry
from callbot.dialog.store import DialogStore, MongoDialogStore
from callbot.dialog.summaries import CallSummarizer
from callbot.dialog.tool_conversation import ToolUsingConversation

log = logging.getLogger(__name__)


class DialogService:
    """`start()` opens connections, declares topology and begins serving;
    `stop()` stops taking requests, finishes those in hand, and closes.

    `store` replaces the MongoDB adapter (tests pass a wrapped one); by default
    the service opens its own client in `start()`.
    """

    def __init__(self, settings: Settings, *, store: DialogStore | None = None) -> None:
        self._settings = settings
        self._store = store
        self._instance = uuid.uuid4().hex[:12]
        self._connection: AbstractRobustConnection | None = None
        self._mongo: AsyncMongoClient[Document] | None = None
        self._llm: OpenAIConversation | None = None
        self._summary_model: OpenAISummaries | None = None
        self._summarizer: CallSummarizer | None = None
        self._toolbox: AgentToolbox | None = None
        self._objects: S3ObjectStore | None = None
        self._rpc: RpcServer[DialogStart | DialogTurn] | None = None
        self._stream_rpc: StreamingRpcServer[DialogStart | DialogTurn] | None = None
        self._consumer: EventConsumer | None = None
        self._summaries_consumer: EventConsumer | None = None
        # Strong references: a robust channel restores only what is still referenced.
        self._declared: DeclaredTopology | None = None
        self._events_queue: AbstractQueue | None = None

    async def start(self) -> None:
        settings = self._settings
        topology = Topology(settings.rabbitmq_namespace, settings.rabbitmq_delivery_limit)
        self._connection = connection = await connect(settings, f"dialog-{self._instance}")
        if self._store is None:
            await wait_for_mongodb(settings)

        rpc_channel = await connection.channel(publisher_confirms=False)
        await rpc_channel.set_qos(prefetch_count=settings.rabbitmq_prefetch)
        self._declared = await declare_topology(rpc_channel, topology)
        events_channel = await connection.channel(publisher_confirms=True)
        publisher = EventPublisher(
            await events_channel.get_exchange(topology.events_exchange), app_id="dialog"
        )

        store = self._store or self._open_mongo_store()
        agents = AgentCache(store)
        # The agents' documents, read from the agent files bucket (with a model only:
        # the deterministic policy has no use for them). Connects on first use.
        knowledge: AgentKnowledge | None = None
        if settings.llm_configured:
            self._objects = S3ObjectStore(settings.s3_config())
            await self._objects.open()
            knowledge = AgentKnowledge(self._objects, settings.s3_agent_files_bucket)
        if settings.llm_configured:
            self._summary_model = OpenAISummaries(settings)
        self._summarizer = summarizer = CallSummarizer(
            self._summary_model, publisher, timeout_s=settings.summary_timeout_s, calls=store
        )
        ports = DialogPorts(
            sessions=SessionRegistry(store, agents, max_size=settings.dialog_session_cache_size),
            agents=agents,
            model=self._conversation_model(),
            events=publisher,
            summaries=self._summarizer,
            knowledge=knowledge,
        )

        self._events_queue = await rpc_channel.declare_queue(
            f"{topology.namespace}.dialog.events.{self._instance}",
            exclusive=True,
            auto_delete=True,
            arguments=topology.dead_letter_arguments(),  # poison messages to the DLQ
        )
        for routing_key in DIALOG_EVENT_KEYS:
            await self._events_queue.bind(topology.events_exchange, routing_key=routing_key)

        async def on_event(event: AnyEvent) -> None:
            await handle_event(event, ports)
            if isinstance(event, AgentUpdated) and self._toolbox is not None:
                self._toolbox.drop(event.agent_id)

        async def on_request(
            request: DialogStart | DialogTurn, deadline: Deadline
        ) -> DialogReply | RpcFailure:
            return await _not_found_answered(request, handle_request(request, deadline, ports))

        async def on_stream_request(
            request: DialogStart | DialogTurn, deadline: Deadline, emit: StreamEmit
        ) -> DialogReply | RpcFailure:
            return await _not_found_answered(
                request, handle_streamed_request(request, deadline, ports, emit)
            )

        async def on_transcribed(event: AnyEvent) -> None:
            if not isinstance(event, CallRecordingTranscribed):
                raise TypeError(f"{event.type} reached dialog's summaries queue")
            await summarizer.summarize_recording(event)

        self._consumer = EventConsumer(self._events_queue, on_event)
        await self._consumer.start()
        self._summaries_consumer = EventConsumer(
            self._declared.queues[topology.dialog_summaries_queue.name], on_transcribed
        )
        await self._summaries_consumer.start()
        self._rpc = RpcServer(
            rpc_channel,
            self._declared.queues[topology.dialog_rpc_queue],
            DIALOG_REQUEST_ADAPTER,
            on_request,
            dead_letters=self._declared.dead_letters,
        )
        await self._rpc.start()
        self._stream_rpc = StreamingRpcServer(
            rpc_channel,
            self._declared.queues[topology.dialog_stream_queue],
            DIALOG_REQUEST_ADAPTER,
            on_stream_request,
            cancel_exchange=stream_cancel_exchange(topology.namespace),
        )
        await self._stream_rpc.start()
        log.info(
            "dialog serving",
            extra={
                "rpc_queue": topology.dialog_rpc_queue,
                "stream_queue": topology.dialog_stream_queue,
                "policy": "llm" if settings.llm_configured else "deterministic",
            },
        )

    def _open_mongo_store(self) -> MongoDialogStore:
        self._mongo = create_mongo_client(self._settings, "callbot-dialog")
        return MongoDialogStore(callbot_database(self._mongo, self._settings))

    def _conversation_model(self) -> ConversationModel:
        settings = self._settings
        if not settings.llm_configured:
            return DeterministicConversation()  # no tools: see README
        self._llm = OpenAIConversation(settings)
        self._toolbox = AgentToolbox(
            McpClient(settings.mcp_allowed_host_set), ttl_s=settings.mcp_tools_ttl_s
        )
        return ToolUsingConversation(self._llm, self._toolbox, settings.mcp_max_tool_steps)

    async def stop(self) -> None:
        if self._rpc is not None:
            await self._rpc.stop()
        if self._stream_rpc is not None:
            await self._stream_rpc.stop()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._summaries_consumer is not None:
            await self._summaries_consumer.stop()
        if self._summarizer is not None:
            await self._summarizer.close()
        if self._connection is not None:
            await self._connection.close()
        if self._llm is not None:
            await self._llm.close()
        if self._summary_model is not None:
            await self._summary_model.close()
        if self._toolbox is not None:
            await self._toolbox.client.close()
        if self._objects is not None:
            await self._objects.close()
        if self._mongo is not None:
            await self._mongo.close()


async def _not_found_answered(
    request: DialogStart | DialogTurn, answering: Coroutine[Any, Any, DialogReply]
) -> DialogReply | RpcFailure:
    try:
        return await answering
    except CallNotFound as exc:
        # A caller's mistake (or a call persistence has not stored yet),
        # not dialog's: say so without a traceback; gateway falls back.
        log.warning(
            "unknown call: no session and no call document; answering not_found",
            extra={"method": request.type, "error": str(exc)},
        )
        return RpcFailure(code="not_found", message=str(exc))
    except AgentNotFound as exc:
        log.warning(
            "unknown agent; answering not_found",
            extra={"method": request.type, "error": str(exc)},
        )
        return RpcFailure(code="not_found", message=str(exc))
