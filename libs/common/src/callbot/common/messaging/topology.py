"""The RabbitMQ topology: every exchange, queue and binding callbot uses.

All names derive from one namespace (`RABBITMQ_NAMESPACE`, default `callbot`),
so tests and deployments can share a broker without seeing each other's
messages. Declaration is idempotent and every service declares the queues of
the events it publishes too, so an event is never published before the queue
that must keep it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

PERSISTENCE_EVENT_KEYS: tuple[str, ...] = (
    "call.created",
    "call.answered",
    "call.answered_by",
    "call.turn",
    "call.fallback",
    "call.turn_interrupted",
    "call.ending",
    "call.status",
    "call.recording",
    "call.summarized",
    "call.recording_archived",
    "call.recording_transcribed",
    "call.recording_transcription_failed",
    # The campaigns service's part of an erasure, for the audit record.
    "recipient.attempts_erased",
)
# The media worker archives every finished recording, then transcribes the archive.
MEDIA_EVENT_KEYS: tuple[str, ...] = ("call.recording", "call.recording_archived")
DIALOG_EVENT_KEYS: tuple[str, ...] = ("agent.updated", "call.status", "call.turn_interrupted")
# dialog remakes a call's summary with its recording's transcript: once, by
# whichever replica takes the event from the queue they share.
DIALOG_SUMMARY_KEYS: tuple[str, ...] = ("call.recording_transcribed",)
# `recipient.erased`: the erased number's rows leave the agent's campaigns.
CAMPAIGNS_EVENT_KEYS: tuple[str, ...] = ("call.completed", "recipient.erased")

# On a message an RPC server dead-letters itself (the broker writes `x-death`
# on those it dead-letters): the queue it came from, and why.
DEAD_LETTER_QUEUE_HEADER = "x-callbot-dead-letter-queue"
DEAD_LETTER_REASON_HEADER = "x-callbot-dead-letter-reason"


@dataclass(frozen=True)
class QueueSpec:
    """A durable quorum queue fed by `routing_keys` of the events exchange."""

    name: str
    routing_keys: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    namespace: str = "callbot"
    delivery_limit: int = 5
    persistence_queue: QueueSpec = field(init=False)
    media_queue: QueueSpec = field(init=False)
    dialog_summaries_queue: QueueSpec = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "persistence_queue",
            QueueSpec(f"{self.namespace}.persistence.events", PERSISTENCE_EVENT_KEYS),
        )
        object.__setattr__(
            self, "media_queue", QueueSpec(f"{self.namespace}.media.events", MEDIA_EVENT_KEYS)
        )
        object.__setattr__(
            self,
            "dialog_summaries_queue",
            QueueSpec(f"{self.namespace}.dialog.summaries", DIALOG_SUMMARY_KEYS),
        )

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead-letters"

    @property
    def dialog_rpc_queue(self) -> str:
        return f"{self.namespace}.dialog.rpc"

    @property
    def dialog_stream_queue(self) -> str:
        """Streaming requests (ConversationRelay turns): their replies come in chunks."""
        return f"{self.namespace}.dialog.stream"

    @property
    def persistence_rpc_queue(self) -> str:
        return f"{self.namespace}.persistence.rpc"

    @property
    def campaigns_rpc_queue(self) -> str:
        return f"{self.namespace}.campaigns.rpc"

    @property
    def campaigns_events_queue(self) -> str:
        return f"{self.namespace}.campaigns.events"

    def dead_letter_arguments(self) -> dict[str, Any]:
        """For a queue of a replica's own (not quorum, no delivery limit): a
        rejected message still reaches the dead-letter queue."""
        return {"x-dead-letter-exchange": self.dead_letter_exchange}

    def quorum_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
        }


@dataclass
class DeclaredTopology:
    """Strong references to what was declared: a robust channel only restores
    the exchanges and queues that are still referenced (aio-pika issue 536)."""

    events: AbstractExchange
    dead_letters: AbstractExchange
    queues: dict[str, AbstractQueue] = field(default_factory=dict)


async def declare_topology(channel: AbstractChannel, topology: Topology) -> DeclaredTopology:
    """Declare the exchanges, the dead-letter queue, the shared event queues and
    the RPC queues. Safe to call from every service, any number of times."""
    events = await channel.declare_exchange(
        topology.events_exchange, ExchangeType.TOPIC, durable=True
    )
    dead_letters = await channel.declare_exchange(
        topology.dead_letter_exchange, ExchangeType.TOPIC, durable=True
    )
    declared = DeclaredTopology(events=events, dead_letters=dead_letters)

    dlq = await channel.declare_queue(
        topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(dead_letters, routing_key="#")
    declared.queues[dlq.name] = dlq

    campaigns_spec = QueueSpec(topology.campaigns_events_queue, CAMPAIGNS_EVENT_KEYS)
    for spec in (
        topology.persistence_queue,
        campaigns_spec,
        topology.media_queue,
        topology.dialog_summaries_queue,
    ):
        queue = await channel.declare_queue(
            spec.name, durable=True, arguments=topology.quorum_arguments()
        )
        for key in spec.routing_keys:
            await queue.bind(events, routing_key=key)
        declared.queues[queue.name] = queue

    # RPC requests are short-lived (they carry an expiration); a classic queue
    # keeps their latency low, and durability means a broker restart does not
    # lose the queue the clients publish to.
    for rpc_queue in (
        topology.dialog_rpc_queue,
        topology.dialog_stream_queue,
        topology.persistence_rpc_queue,
        topology.campaigns_rpc_queue,
    ):
        declared.queues[rpc_queue] = await channel.declare_queue(rpc_queue, durable=True)
    return declared


async def delete_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Remove everything `declare_topology` made (test clean-up)."""
    for queue_name in (
        topology.persistence_queue.name,
        topology.media_queue.name,
        topology.dialog_summaries_queue.name,
        topology.dead_letter_queue,
        topology.dialog_rpc_queue,
        topology.dialog_stream_queue,
        topology.persistence_rpc_queue,
        topology.campaigns_rpc_queue,
        topology.campaigns_events_queue,
    ):
        await channel.queue_delete(queue_name)
    for exchange_name in (topology.events_exchange, topology.dead_letter_exchange):
        await channel.exchange_delete(exchange_name)
