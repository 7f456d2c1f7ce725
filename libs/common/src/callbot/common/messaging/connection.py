"""Robust RabbitMQ connections that come back by themselves after the broker
restarts or drops them."""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from tenacity import AsyncRetrying, before_sleep_log, stop_after_delay, wait_exponential

from callbot.common.settings import Settings

log = logging.getLogger(__name__)

# Errors a broker that is still starting (or restarting) answers with.
_NOT_READY = (ConnectionError, OSError, aio_pika.exceptions.AMQPConnectionError)


async def connect(
    settings: Settings, connection_name: str, *, wait_s: float = 60.0
) -> AbstractRobustConnection:
    """Open a robust connection, waiting up to `wait_s` for the broker to come up
    (compose starts services alongside RabbitMQ). Once open, aio-pika restores
    it, its channels, queues and consumers after any later drop."""
    async for attempt in AsyncRetrying(
        retry=lambda state: isinstance(state.outcome and state.outcome.exception(), _NOT_READY),
        stop=stop_after_delay(wait_s),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            return await aio_pika.connect_robust(
                settings.rabbitmq_url.get_secret_value(),
                client_properties={"connection_name": connection_name},
                reconnect_interval=settings.rabbitmq_reconnect_interval_s,
            )
    raise AssertionError("unreachable: tenacity reraises the last error")


def is_connected(connection: AbstractRobustConnection) -> bool:
    """The connection is open now (not closed, not in the middle of reconnecting).

    A robust connection is never `is_closed` while it reconnects: its
    `connected` event is what drops while the broker is away."""
    return not connection.is_closed and connection.connected.is_set()
