"""Test doubles for the campaigns handlers: a call placer that records what it
was asked and answers as told, a clock the test moves, an event list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from callbot.campaigns.handlers import CampaignPorts
from callbot.campaigns.placement import CallOrder, Placed, PlacementResult
from callbot.campaigns.store import CampaignStore
from callbot.common.contracts import Event
from callbot.common.mongo import Document


@dataclass
class FakeClock:
    now: datetime = datetime(2026, 1, 14, 18, 0, tzinfo=UTC)  # 13:00 in New York

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class RecordingPlacer:
    """Answers each order with `answer(order)` (default: placed, a new call id)."""

    orders: list[CallOrder] = field(default_factory=list)
    answer: Callable[[CallOrder], PlacementResult] | None = None

    async def place(self, order: CallOrder) -> PlacementResult:
        self.orders.append(order)
        if self.answer is not None:
            return self.answer(order)
        return Placed(f"call-{len(self.orders)}")

    async def close(self) -> None:
        return None


@dataclass
class Harness:
    ports: CampaignPorts
    clock: FakeClock
    placer: RecordingPlacer
    events: list[Event]
    db: AsyncDatabase[Document]

    def replica(self, owner: str) -> CampaignPorts:
        """The same collections seen by another replica."""
        return CampaignPorts(
            store=self.ports.store,
            placer=self.placer,
            publish=self.ports.publish,
            clock=self.clock,
            owner=owner,
            lease=self.ports.lease,
        )


async def harness(db: AsyncDatabase[Document]) -> Harness:
    store = CampaignStore(db)
    await store.ensure_indexes()
    clock = FakeClock()
    placer = RecordingPlacer()
    events: list[Event] = []

    async def publish(event: Event) -> None:
        events.append(event)

    ports = CampaignPorts(
        store=store,
        placer=placer,
        publish=publish,
        clock=clock,
        owner="replica-a",
        lease=timedelta(seconds=10),
    )
    return Harness(ports, clock, placer, events, db)


def call_document(attempt_id: str, try_number: int, **fields: Any) -> dict[str, Any]:
    """A final call document as persistence would announce it."""
    return {
        "_id": f"call-of-{attempt_id}-{try_number}",
        "status": "completed",
        "variables": {"campaign_attempt_id": attempt_id, "campaign_try": try_number},
        **fields,
    }
