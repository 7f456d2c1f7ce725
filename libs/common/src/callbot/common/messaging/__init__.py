"""Messaging over RabbitMQ (aio-pika): topology, publisher, consumer, RPC."""

from callbot.common.messaging.connection import connect, connect_once, is_connected
from callbot.common.messaging.consumer import EventConsumer, EventHandler
from callbot.common.messaging.publisher import EventPublisher, PublishFailed
from callbot.common.messaging.rpc import (
    Deadline,
    RpcBadReply,
    RpcClient,
    RpcError,
    RpcServer,
    RpcTimeout,
    RpcUnavailable,
)
from callbot.common.messaging.rpc_stream import (
    RpcStream,
    StreamEmit,
    StreamingRpcClient,
    StreamingRpcServer,
    stream_cancel_exchange,
)
from callbot.common.messaging.topology import (
    DeclaredTopology,
    QueueSpec,
    Topology,
    declare_topology,
    delete_topology,
)

__all__ = [
    "Deadline",
    "DeclaredTopology",
    "EventConsumer",
    "EventHandler",
    "EventPublisher",
    "PublishFailed",
    "QueueSpec",
    "RpcBadReply",
    "RpcClient",
    "RpcError",
    "RpcServer",
    "RpcStream",
    "RpcTimeout",
    "RpcUnavailable",
    "StreamEmit",
    "StreamingRpcClient",
    "StreamingRpcServer",
    "Topology",
    "connect",
    "connect_once",
    "declare_topology",
    "delete_topology",
    "is_connected",
    "stream_cancel_exchange",
]
