"""dialog's reads from MongoDB: agents, the call document, past calls.

dialog never writes MongoDB (persistence is the only writer); it rebuilds
what it needs from these three reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import TERMINAL_STATUSES, CallDocument
from callbot.common.mongo import AGENTS, CALLS, RECIPIENTS, Document
from callbot.common.recipients import RecipientDocument, recipient_key

# What the past-calls context uses; the rest of those documents stays on the server.
_PAST_CALL_FIELDS = dict.fromkeys(
    ("agent_id", "to", "status", "ended_by", "created_at", "turns", "summary", "data_collected"),
    True,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DialogStore(Protocol):
    async def load_agent(self, agent_id: str) -> Agent | None: ...

    async def load_call(self, call_id: str) -> CallDocument | None: ...

    async def load_past_calls(
        self, agent_id: str, to: str, exclude_call_id: str, limit: int
    ) -> list[CallDocument]:
        """Finished calls of this agent to this number, newest first."""
        ...

    async def load_recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        """What persistence keeps about this agent's number (its `recipients` document)."""
        ...


class MongoDialogStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._agents = database[AGENTS]
        self._calls = database[CALLS]
        self._recipients = database[RECIPIENTS]

    async def load_agent(self, agent_id: str) -> Agent | None:
        document = await self._agents.find_one({"_id": agent_id})
        return None if document is None else Agent.model_validate(document)

    async def load_call(self, call_id: str) -> CallDocument | None:
        document = await self._calls.find_one({"_id": call_id})
        return None if document is None else CallDocument.model_validate(document)

    async def load_past_calls(
        self, agent_id: str, to: str, exclude_call_id: str, limit: int
    ) -> list[CallDocument]:
        if limit <= 0:
            return []
        # Served by the {agent_id: 1, to: 1, created_at: -1} index persistence creates.
        cursor = (
            self._calls.find(
                {
                    "agent_id": agent_id,
                    "to": to,
                    "_id": {"$ne": exclude_call_id},
                    "status": {"$in": sorted(TERMINAL_STATUSES)},
                },
                projection=_PAST_CALL_FIELDS,
            )
            .sort("created_at", DESCENDING)
            .limit(limit)
        )
        return [CallDocument.model_validate(document) async for document in cursor]

    async def load_recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        document = await self._recipients.find_one({"_id": recipient_key(agent_id, to)})
        return None if document is None else RecipientDocument.model_validate(document)


class InMemoryDialogStore:
    """The store's fake for unit tests: the same answers as MongoDB, from dicts."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, CallDocument] = {}
        self.recipients: dict[str, RecipientDocument] = {}

    async def load_recipient(self, agent_id: str, to: str) -> RecipientDocument | None:
        return self.recipients.get(recipient_key(agent_id, to))

    async def load_agent(self, agent_id: str) -> Agent | None:
        return self.agents.get(agent_id)

    async def load_call(self, call_id: str) -> CallDocument | None:
        return self.calls.get(call_id)

    async def load_past_calls(
        self, agent_id: str, to: str, exclude_call_id: str, limit: int
    ) -> list[CallDocument]:
        finished = [
            call
            for call in self.calls.values()
            if call.agent_id == agent_id
            and call.to == to
            and call.call_id != exclude_call_id
            and call.status in TERMINAL_STATUSES
        ]
        finished.sort(key=lambda call: call.created_at or _EPOCH, reverse=True)
        return finished[: max(limit, 0)]
