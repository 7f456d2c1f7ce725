"""Reading campaigns and their attempts from MongoDB. The campaigns service
alone writes them; gateway reads, and asks the service (RPC) for changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.campaigns import counters_from_groups, counters_pipeline
from callbot.common.contracts import CampaignCounters
from callbot.common.mongo import Document

CAMPAIGNS = "campaigns"
ATTEMPTS = "attempts"
# What an attempt shows through the API (the rest is the service's bookkeeping).
ATTEMPT_FIELDS = (
    "row",
    "to",
    "timezone",
    "state",
    "skip_reason",
    "problem",
    "outcome",
    "tries",
    "due_at",
    "call_id",
    "erased",  # {audit_id, at}: the number and fields were erased on request
    "fields",
)


class CampaignDocuments:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._campaigns = database[CAMPAIGNS]
        self._attempts = database[ATTEMPTS]

    async def campaign(self, campaign_id: str) -> Document | None:
        return await self._campaigns.find_one({"_id": campaign_id})

    async def campaigns(self, limit: int) -> list[Document]:
        """The newest campaigns (drafts are never shown: they are not created yet)."""
        cursor = (
            self._campaigns.find(
                {"state": {"$ne": "draft"}}, {"settings": 1, "state": 1, "created_at": 1}
            )
            .sort("created_at", -1)
            .limit(limit)
        )
        return [document async for document in cursor]

    async def counters(self, campaign_id: str) -> CampaignCounters:
        cursor = await self._attempts.aggregate(counters_pipeline(campaign_id))
        return counters_from_groups(await cursor.to_list(None))

    async def attempts(
        self, campaign_id: str, *, after_row: int, limit: int | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Attempts in list order, from the row after `after_row`."""
        cursor = self._attempts.find(
            {"campaign_id": campaign_id, "row": {"$gt": after_row}},
            projection=dict.fromkeys(ATTEMPT_FIELDS, 1) | {"_id": 0},
            sort=[("row", ASCENDING)],
            limit=limit or 0,
        )
        async for document in cursor:
            yield document
