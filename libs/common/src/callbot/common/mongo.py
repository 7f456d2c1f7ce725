"""MongoDB access: the client factory and the collection names.

An `AsyncMongoClient` belongs to the event loop it was first used on: create
it inside a service's start-up, never at import time.

A replica set is named in `MONGODB_URL` itself (`mongodb://m0,m1,m2/?replicaSet=rs0`):
the driver finds the primary and follows elections. Every write waits for a
majority of the members (`w=majority`), so a write acknowledged to callbot
(a turn persistence stored, then acked its event for) survives the primary's
loss; with one server, a majority is that server.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.settings import Settings

AGENTS = "agents"
CALLS = "calls"
# persistence's record of the `Idempotency-Key`s of `POST /v1/calls` (one per key, 24 h).
CALL_CLAIMS = "call_claims"
RECIPIENTS = "recipients"
# persistence's record of each erasure request (who asked, what was erased).
AUDIT = "audit"

Document = dict[str, Any]


def create_mongo_client(settings: Settings, app_name: str) -> AsyncMongoClient[Document]:
    timeout = settings.mongodb_timeout_ms
    return AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=max(timeout, 10_000),
        w="majority",
    )


def callbot_database(
    client: AsyncMongoClient[Document], settings: Settings
) -> AsyncDatabase[Document]:
    return client[settings.mongodb_db]
