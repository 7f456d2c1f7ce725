"""One reconciler at a time across gateway replicas, leased from RabbitMQ.

The lease is an exclusive queue: RabbitMQ lets one connection declare it and
refuses the others (`RESOURCE_LOCKED`) until that connection closes, which it
does when its replica stops, dies (the TCP connection drops) or loses the
broker (heartbeats). No MongoDB write is needed (gateway writes nothing), and
a replica that cannot reach the broker could not publish what it reconciled
anyway. The lease has a plain (not robust) connection of its own, so a lost
lease is never restored behind the holder's back: `held()` notices and tries
again.
"""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPError, ChannelLockedResource

from callbot.common.messaging import connect_once
from callbot.common.settings import Settings

log = logging.getLogger(__name__)


class ExclusiveQueueLease:
    def __init__(self, settings: Settings, queue_name: str, holder: str) -> None:
        self._settings = settings
        self.queue_name = queue_name
        self._holder = holder
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def held(self) -> bool:
        """True while this replica holds the lease; takes it when it is free."""
        if self._is_open():
            return True
        await self.release()
        try:
            connection = await connect_once(self._settings, f"{self._holder}-lease")
        except (OSError, AMQPError, aio_pika.exceptions.AMQPConnectionError) as exc:
            log.info("reconciler lease not taken: broker unreachable", extra={"error": str(exc)})
            return False
        try:
            channel = await connection.channel()
            await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        except ChannelLockedResource:
            await connection.close()
            return False
        except (OSError, AMQPError) as exc:
            await connection.close()
            log.warning("reconciler lease not taken", extra={"error": str(exc)})
            return False
        self._connection, self._channel = connection, channel
        log.info("reconciler lease taken: this replica reconciles calls with Twilio")
        return True

    async def release(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()

    def _is_open(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )
