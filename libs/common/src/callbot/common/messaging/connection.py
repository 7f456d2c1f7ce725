"""Robust RabbitMQ connections that come back by themselves after the broker
restarts or drops them."""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import ProbableAuthenticationError

from callbot.common.settings import Settings
from callbot.common.startup import DependencyRefused, wait_until_reachable

log = logging.getLogger(__name__)

# Errors a broker that is away, or still starting, answers with.
_NOT_READY = (ConnectionError, OSError, aio_pika.exceptions.AMQPConnectionError)


async def connect(
    settings: Settings, connection_name: str, *, wait_s: float | None = None
) -> AbstractRobustConnection:
    """Open a robust connection, waiting up to `wait_s` (default
    `STARTUP_TIMEOUT_S`) for the broker to come up (compose starts services
    alongside RabbitMQ); raises `callbot.common.startup.StartupFailed` after
    that, or at once when the broker refuses the credentials. Once open,
    aio-pika restores it, its channels, queues and consumers after any later drop."""
    url = settings.rabbitmq_url.get_secret_value()
    # aiormq logs every refused attempt as an error: one line of ours says it instead.
    transport_log = logging.getLogger("aiormq.connection")
    level = transport_log.level

    async def open_connection() -> AbstractRobustConnection:
        try:
            return await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": connection_name},
                reconnect_interval=settings.rabbitmq_reconnect_interval_s,
            )
        except ProbableAuthenticationError:
            raise DependencyRefused(
                "the user name or password in RABBITMQ_URL was refused (or the vhost is not theirs)"
            ) from None

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


def is_connected(connection: AbstractRobustConnection) -> bool:
    """The connection is open now (not closed, not in the middle of reconnecting).

    A robust connection is never `is_closed` while it reconnects: its
    `connected` event is what drops while the broker is away."""
    return not connection.is_closed and connection.connected.is_set()
