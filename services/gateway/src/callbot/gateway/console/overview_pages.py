"""The overview: calls per day by outcome, data completion, average length
and turns, for one agent (or all) over the last days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from callbot.gateway.console.presenting import overview
from callbot.gateway.console.web import PREFIX, SignedPage, redirect
from callbot.gateway.domain.result_queries import calls_condition

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# Read at most this many calls of the period (newest first); the page says when it did.
MAX_CALLS = 20_000
PROJECTION = {
    "created_at": 1,
    "answered_at": 1,
    "ended_by": 1,
    "status": 1,
    "data_complete": 1,
    "duration_s": 1,
    "turns.seq": 1,
}


@router.get("")
@router.get("/")
async def console_home() -> Response:
    return redirect(f"{PREFIX}/overview")


@router.get("/overview")
async def overview_page(
    page: SignedPage,
    agent_id: str = "",
    days: Annotated[int, Query(ge=1, le=31)] = 7,
) -> Response:
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=days - 1)
    condition = calls_condition(
        agent_id=agent_id.strip() or None,
        to=None,
        status=None,
        ended_by=None,
        data_complete=None,
        created_from=datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC),
        created_to=None,
        cursor=None,
    )
    calls = [d async for d in page.resources.results.calls(condition, PROJECTION, MAX_CALLS)]
    return page.render(
        "overview.html",
        agents=await page.resources.results.agents(500),
        agent_id=agent_id.strip(),
        period_days=days,
        summary=overview(calls, first_day, today),
        truncated=len(calls) == MAX_CALLS,
    )
