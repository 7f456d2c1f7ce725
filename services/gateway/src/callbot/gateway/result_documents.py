"""Reading calls and recipients for the read API (persistence writes them;
gateway only reads). Newest first, by the keys the indexes hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.mongo import CALLS, RECIPIENTS, Document
from callbot.common.recipients import recipient_key

CALL_ORDER = [("created_at", DESCENDING), ("_id", DESCENDING)]
RECIPIENT_ORDER = [("last_call_at", DESCENDING), ("_id", DESCENDING)]


class StoredResults:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._calls = database[CALLS]
        self._recipients = database[RECIPIENTS]

    def calls(
        self, condition: Document, projection: Document | None, limit: int | None
    ) -> AsyncIterator[Document]:
        cursor = self._calls.find(condition, projection).sort(CALL_ORDER)
        return cursor.limit(limit) if limit else cursor

    def recipients(self, condition: Document, limit: int | None) -> AsyncIterator[Document]:
        cursor = self._recipients.find(condition).sort(RECIPIENT_ORDER)
        return cursor.limit(limit) if limit else cursor

    async def recipient(self, agent_id: str, to: str) -> Document | None:
        return await self._recipients.find_one({"_id": recipient_key(agent_id, to)})
