"""What the media worker reads from MongoDB: a call and its agent. Read only:
persistence is the one writer, and learns what media found through events."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.mongo import AGENTS, CALLS, Document

log = logging.getLogger(__name__)


class MongoCallReader:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._calls = database[CALLS]
        self._agents = database[AGENTS]

    async def call(self, call_id: str) -> CallDocument | None:
        document = await self._calls.find_one({"_id": call_id})
        return None if document is None else CallDocument.model_validate(document)

    async def agent(self, agent_id: str) -> Agent | None:
        document = await self._agents.find_one({"_id": agent_id})
        if document is None:
            return None
        try:
            return Agent.model_validate(document)
        except ValidationError as exc:
            log.warning(
                "stored agent does not load; its settings are not applied",
                extra={"agent_id": agent_id, "error": str(exc)[:500]},
            )
            return None
