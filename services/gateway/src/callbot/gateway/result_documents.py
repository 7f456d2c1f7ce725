"""Reading calls and recipients for the read API (persistence writes them;
gateway only reads). Newest first, by the keys the indexes hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import get_args

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.calls import TERMINAL_STATUSES, CallStatus
from callbot.common.mongo import AGENTS, CALLS, RECIPIENTS, Document
from callbot.common.recipients import recipient_key

CALL_ORDER = [("created_at", DESCENDING), ("_id", DESCENDING)]
RECIPIENT_ORDER = [("last_call_at", DESCENDING), ("_id", DESCENDING)]


class StoredResults:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._agents = database[AGENTS]
        self._calls = database[CALLS]
        self._recipients = database[RECIPIENTS]

    def calls(
        self, condition: Document, projection: Document | None, limit: int | None
    ) -> AsyncIterator[Document]:
        cursor = self._calls.find(condition, projection).sort(CALL_ORDER)
        return cursor.limit(limit) if limit else cursor

    async def agents(self, limit: int) -> list[Document]:
        """Agents by id: the id, name, version and last save of each."""
        projection = {"name": 1, "version": 1, "updated_at": 1}
        cursor = self._agents.find({}, projection).sort("_id", 1).limit(limit)
        return [document async for document in cursor]

    def calls_in_progress(self, limit: int) -> AsyncIterator[Document]:
        """The newest calls not yet in a final status (the `{status, created_at, _id}` index)."""
        in_progress = sorted(set(get_args(CallStatus)) - TERMINAL_STATUSES)
        return self._calls.find({"status": {"$in": in_progress}}).sort(CALL_ORDER).limit(limit)

    def recipients(self, condition: Document, limit: int | None) -> AsyncIterator[Document]:
        cursor = self._recipients.find(condition).sort(RECIPIENT_ORDER)
        return cursor.limit(limit) if limit else cursor

    async def recipient(self, agent_id: str, to: str) -> Document | None:
        return await self._recipients.find_one({"_id": recipient_key(agent_id, to)})
