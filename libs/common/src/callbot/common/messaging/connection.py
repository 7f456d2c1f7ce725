"""Robust RabbitMQ connections that come back by themselves after the broker
restarts or drops them, to any node of a cluster (`RABBITMQ_URL` naming several).

aio-pika connects to one URL. `ClusterConnection` moves on to the next node
after each failed (re)connection attempt, so a robust connection whose node
stopped comes back on another one, with its channels, queues and consumers
(the event queues are quorum queues, served by any node; docs/deploy.md says
what a node's loss does to the classic RPC queues)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika import RobustConnection
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aiormq.exceptions import ProbableAuthenticationError
from pamqp.common import FieldTable
from yarl import URL

from callbot.common.settings import Settings
from callbot.common.startup import DependencyRefused, wait_until_reachable

log = logging.getLogger(__name__)

# Errors a broker that is away, or still starting, answers with.
_NOT_READY = (ConnectionError, OSError, aio_pika.exceptions.AMQPConnectionError)


class ClusterConnection(RobustConnection):
    """A robust connection that goes on to the next of `nodes` after each failed
    attempt (the first attempt goes to `nodes[0]`)."""

    def __init__(self, nodes: Sequence[str], **kwargs: Any) -> None:
        self._nodes = itertools.cycle([URL(node) for node in nodes])
        super().__init__(next(self._nodes), **kwargs)

    # aio-pika's robust connection makes every (re)connection attempt through
    # this name-mangled private method; overriding it is the one way to choose
    # the node per attempt. aio-pika is pinned, and
    # libs/common/tests/test_broker_cluster.py fails if the hook stops being called.
    async def _RobustConnection__connect_transport(self) -> None:
        try:
            await _connect_transport(self)
        except BaseException:
            self.url = next(self._nodes)
            raise


_connect_transport = RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]


async def connect(
    settings: Settings, connection_name: str, *, wait_s: float | None = None
) -> AbstractRobustConnection:
    """Open a robust connection, waiting up to `wait_s` (default
    `STARTUP_TIMEOUT_S`) for the broker to come up (compose starts services
    alongside RabbitMQ); raises `callbot.common.startup.StartupFailed` after
    that, or at once when the broker refuses the credentials. Once open,
    aio-pika restores it, its channels, queues and consumers after any later
    drop, on whichever node of `RABBITMQ_URL` answers."""
    url = settings.rabbitmq_url.get_secret_value()
    nodes = settings.rabbitmq_nodes
    first_nodes = itertools.count()
    # aiormq logs every refused attempt as an error: one line of ours says it instead.
    transport_log = logging.getLogger("aiormq.connection")
    level = transport_log.level

    async def open_connection() -> AbstractRobustConnection:
        # Each start-up attempt begins at the next node: a node that drops
        # packets uses up one attempt's time, not all of them.
        first = next(first_nodes) % len(nodes)
        connection = ClusterConnection(
            nodes[first:] + nodes[:first],
            client_properties={"connection_name": connection_name},
            reconnect_interval=settings.rabbitmq_reconnect_interval_s,
        )
        try:
            await connection.connect()
        except ProbableAuthenticationError:
            raise DependencyRefused(
                "the user name or password in RABBITMQ_URL was refused (or the vhost is not theirs)"
            ) from None
        return connection

    transport_log.setLevel(logging.CRITICAL)
    try:
        return await wait_until_reachable(
            "RabbitMQ",
            url,
            "RABBITMQ_URL",
            open_connection,
            budget_s=settings.startup_timeout_s if wait_s is None else wait_s,
            retry_on=_NOT_READY,
        )
    finally:
        transport_log.setLevel(level)


async def connect_once(settings: Settings, connection_name: str) -> AbstractConnection:
    """A plain connection (not restored after a drop) to the first node of
    `RABBITMQ_URL` that takes it; raises the last node's error."""
    *others, last = settings.rabbitmq_nodes
    properties: FieldTable = {"connection_name": connection_name}
    for node in others:
        with contextlib.suppress(*_NOT_READY):
            return await aio_pika.connect(node, client_properties=properties)
    return await aio_pika.connect(last, client_properties=properties)


def is_connected(connection: AbstractRobustConnection) -> bool:
    """The connection is open now (not closed, not in the middle of reconnecting).

    A robust connection is never `is_closed` while it reconnects: its
    `connected` event is what drops while the broker is away."""
    return not connection.is_closed and connection.connected.is_set()
