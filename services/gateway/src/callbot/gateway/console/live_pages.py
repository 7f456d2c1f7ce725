"""The live page: the calls in progress, updated by server-sent events as
things happen (a call placed, each exchange of lines, status changes, the end).

On connecting, a stream first starts listening, then sends the calls in
progress as MongoDB has them, then every event: what happened in between
comes twice and the page keeps one copy (each line has its id), never none.
A stream ends after `STREAM_MAX_S` (the browser reconnects, and the session
is checked again) or when its page fell too far behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from callbot.common.calls import TERMINAL_STATUSES, CallDocument
from callbot.common.contracts import (
    AnyEvent,
    CallAnswered,
    CallCompleted,
    CallCreated,
    CallEnding,
    CallStatusChanged,
    CallTurnRecorded,
)
from callbot.gateway.console.web import PREFIX, SECURITY_HEADERS, Console, Session, SignedPage
from callbot.gateway.console.web import templates as jinja
from callbot.gateway.deps import Resources

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HEARTBEAT_S = 15.0
STREAM_MAX_S = 300.0
SNAPSHOT_CALLS = 50


def _fragments() -> Any:
    return jinja.get_template("_call_parts.html").module


def call_message(event: AnyEvent) -> dict[str, Any] | None:
    """What the page does with an event (rendered, escaped HTML), or None to ignore it."""
    parts = _fragments()
    if isinstance(event, CallCreated):
        call = CallDocument.model_validate(
            {**event.model_dump(by_alias=True), "created_at": event.occurred_at}
        )
        return {"call_id": event.call_id, "card": str(parts.live_card(call, PREFIX))}
    if isinstance(event, CallTurnRecorded):
        return {"call_id": event.call_id, "lines": str(parts.lines(event.call_id, event.turns))}
    if isinstance(event, CallAnswered):
        return {"call_id": event.call_id, "status": "answered"}
    if isinstance(event, CallStatusChanged):
        final = event.status in TERMINAL_STATUSES
        return {"call_id": event.call_id, "status": event.status, "final": final}
    if isinstance(event, CallEnding):
        return {"call_id": event.call_id, "status": f"ending: {event.ended_by}"}
    if isinstance(event, CallCompleted):
        call = event.call
        return {
            "call_id": event.call_id,
            "status": f"{call.status}, {call.ended_by or 'ended'}",
            "final": True,
            "completed": True,
        }
    return None


def _sse(message: dict[str, Any]) -> str:
    return f"data: {json.dumps(message)}\n\n"


@router.get("/live")
async def live_page(page: SignedPage) -> Response:
    return page.render("live.html")


@router.get("/live/stream")
async def live_stream(resources: Resources, console: Console, _session: Session) -> Response:
    async def stream() -> AsyncIterator[str]:
        ends_at = time.monotonic() + STREAM_MAX_S
        async with console.live.listening() as listener:
            yield "retry: 1000\n\n"
            parts = _fragments()
            async for call in resources.results.calls_in_progress(SNAPSHOT_CALLS):
                card = str(parts.live_card(CallDocument.model_validate(call), PREFIX))
                yield _sse({"call_id": call["_id"], "card": card})
            while not listener.dropped.is_set() and time.monotonic() < ends_at:
                try:
                    event = await asyncio.wait_for(listener.events.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": still here\n\n"
                    continue
                message = call_message(event)
                if message is not None:
                    yield _sse(message)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
    )
