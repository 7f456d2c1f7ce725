"""Reading agents and calls from MongoDB. persistence alone writes them;
gateway only reads (DESIGN.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.mongo import AGENTS, CALLS, RECIPIENTS, Document
from callbot.common.recipients import RecipientDocument, recipient_key


class DocumentReader(Protocol):
    """What the API reads; tests give an in-memory one."""

    async def agent(self, agent_id: str) -> Agent | None: ...

    async def call(self, call_id: str) -> CallDocument | None: ...

    async def recipient(self, agent_id: str, to: str) -> RecipientDocument | None: ...


class StoredDocuments:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._agents = database[AGENTS]
        self._calls = database[CALLS]
        self._recipients = database[RECIPIENTS]

    async def agent(self, agent_id: str) -> Agent | None:
        document = await self._agents.find_one({"_id": agent_id})
        return None if document is None else Agent.model_validate(document)

    async def call(self, call_id: str) -> CallDocument | None:
        document = await self._calls.find_one({"_id": call_id})
        return None if document is None else CallDocument.model_validate(document)

    async def call_placed(self, call_id: str) -> bool:
        """The call's `call.created` is stored (its document has an `agent_id`)."""
        found = await self._calls.find_one(
            {"_id": call_id, "agent_id": {"$type": "string"}}, projection={"_id": True}
        )
        return found is not None

    async def quiet_non_final_calls(
        self, statuses: Sequence[str], *, quiet_since: datetime, limit: int
    ) -> list[CallDocument]:
        """Calls in one of `statuses` with no write since `quiet_since`, the
        quietest first (the `{status, updated_at}` index)."""
        cursor = (
            self._calls.find(
                {"status": {"$in": list(statuses)}, "updated_at": {"$lt": quiet_since}},
                projection={"turns": False},
            )
            .sort("updated_at", 1)
            .limit(limit)
        )
        return [CallDocument.model_validate(document) async for document in cursor]

    async def recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        document = await self._recipients.find_one({"_id": recipient_key(agent_id, to)})
        return None if document is None else RecipientDocument.model_validate(document)
