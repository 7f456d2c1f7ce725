"""The media worker: the one place that wires adapters to the handler.

start: object storage client (and the bucket's expiration rule when
`RETENTION_DAYS` is set), Twilio HTTP client, with `TRANSCRIPTION_MODEL` the
transcription client and a MongoDB reader, RabbitMQ connection and topology,
the consumer of `<namespace>.media.events`.
stop: stop taking messages and give up waiting for object storage (messages
in hand are requeued), let in-flight handlers finish, close.
"""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial

import httpx
from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient

from callbot.common.messaging import (
    DeclaredTopology,
    EventConsumer,
    EventPublisher,
    Topology,
    connect,
    declare_topology,
)
from callbot.common.mongo import Document, callbot_database, create_mongo_client
from callbot.common.object_storage import ObjectStorageError, S3ObjectStore
from callbot.common.settings import Settings
from callbot.common.startup import wait_for_mongodb
from callbot.media.call_reader import MongoCallReader
from callbot.media.dead_letters import DeadLetterPublisher
from callbot.media.domain.archive import RECORDINGS_PREFIX
from callbot.media.handlers import ArchivePolicy, MediaPorts, handle_event
from callbot.media.storage_retry import RetryWhileStorageAway
from callbot.media.transcriber import OpenAITranscriber
from callbot.media.transcribing import TranscriptionPorts
from callbot.media.twilio_recordings import TwilioRecordings

log = logging.getLogger(__name__)

# The recordings bucket's lifecycle rule that callbot owns (others are kept).
EXPIRATION_RULE_ID = "callbot-retention"
# A recording is a few MB at most; Twilio may take a while to start sending it.
TWILIO_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class MediaService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stopping = asyncio.Event()
        self._store: S3ObjectStore | None = None
        self._http: httpx.AsyncClient | None = None
        self._connection: AbstractRobustConnection | None = None
        self._declared: DeclaredTopology | None = None
        self._consumer: EventConsumer | None = None
        self._mongo: AsyncMongoClient[Document] | None = None
        self._transcriber: OpenAITranscriber | None = None

    async def start(self) -> None:
        settings = self._settings
        if not settings.twilio_account_sid or not settings.twilio_auth_token.get_secret_value():
            raise RuntimeError(
                "the media worker downloads recordings from Twilio: set TWILIO_ACCOUNT_SID "
                "and TWILIO_AUTH_TOKEN"
            )
        self._store = S3ObjectStore(settings.s3_config())
        await self._store.open()
        await self._set_expiration_rule(self._store)
        self._http = httpx.AsyncClient(timeout=TWILIO_TIMEOUT, follow_redirects=True)
        twilio = TwilioRecordings(
            self._http,
            base_url=settings.twilio_api_base_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
        )

        self._connection = await connect(settings, f"media-{os.getpid()}")
        topology = Topology(settings.rabbitmq_namespace, settings.rabbitmq_delivery_limit)
        consume_channel = await self._connection.channel()
        await consume_channel.set_qos(prefetch_count=settings.rabbitmq_prefetch)
        self._declared = await declare_topology(consume_channel, topology)
        publish_channel = await self._connection.channel(publisher_confirms=True)
        publisher = EventPublisher(
            await publish_channel.get_exchange(topology.events_exchange), app_id="media"
        )
        dead_letters = DeadLetterPublisher(
            await publish_channel.get_exchange(topology.dead_letter_exchange),
            topology.media_queue.name,
        )
        ports = MediaPorts(
            store=self._store,
            twilio=twilio,
            events=publisher,
            dead_letters=dead_letters,
            while_storage_away=RetryWhileStorageAway(self._stopping),
            policy=ArchivePolicy(
                bucket=settings.s3_recordings_bucket,
                delete_after_archive=settings.twilio_delete_recordings_after_archive,
                download_attempts=settings.media_download_attempts,
                first_backoff_s=settings.media_retry_backoff_s,
            ),
        )
        transcription = await self._transcription_ports(ports)
        self._consumer = EventConsumer(
            self._declared.queues[topology.media_queue.name],
            partial(handle_event, ports=ports, transcription=transcription),
            delivery_limit=topology.delivery_limit,
        )
        await self._consumer.start()
        log.info(
            "media worker consuming",
            extra={
                "queue": topology.media_queue.name,
                "bucket": settings.s3_recordings_bucket,
                "delete_after_archive": settings.twilio_delete_recordings_after_archive,
                "transcription_model": settings.transcription_model or None,
            },
        )

    async def _transcription_ports(self, archive: MediaPorts) -> TranscriptionPorts | None:
        settings = self._settings
        if not settings.transcription_configured:
            return None
        await wait_for_mongodb(settings)
        self._mongo = create_mongo_client(settings, "media")
        self._transcriber = OpenAITranscriber(settings)
        return TranscriptionPorts(
            transcriber=self._transcriber,
            calls=MongoCallReader(callbot_database(self._mongo, settings)),
            store=archive.store,
            events=archive.events,
            dead_letters=archive.dead_letters,
            while_storage_away=archive.while_storage_away,
            attempts=settings.transcription_attempts,
            first_backoff_s=settings.transcription_backoff_s,
        )

    async def _set_expiration_rule(self, store: S3ObjectStore) -> None:
        """The bucket expires recordings after RETENTION_DAYS by itself; persistence's
        sweeper erases earlier what an agent keeps for less. A refusal (no
        s3:PutLifecycleConfiguration) is logged: the sweeper still erases."""
        settings = self._settings
        if settings.retention_days == 0:
            return
        bucket = settings.s3_recordings_bucket
        try:
            await store.set_expiration_rule(
                bucket, EXPIRATION_RULE_ID, RECORDINGS_PREFIX, settings.retention_days
            )
        except ObjectStorageError as exc:
            log.error(
                "could not set the recordings bucket's expiration rule; create it yourself "
                "(README, Retention) or grant s3:PutLifecycleConfiguration",
                extra={"bucket": bucket, "error": str(exc)},
            )
            return
        log.info(
            "recordings bucket expires recordings by itself",
            extra={"bucket": bucket, "rule": EXPIRATION_RULE_ID, "days": settings.retention_days},
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._connection is not None:
            await self._connection.close()
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            await self._store.close()
        if self._transcriber is not None:
            await self._transcriber.close()
        if self._mongo is not None:
            await self._mongo.close()
