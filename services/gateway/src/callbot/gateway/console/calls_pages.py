"""The calls list (filtered, paginated by the read API's keyset cursor) and
the call page (transcript, data, timeline, ending, summary, recording)."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import Response

from callbot.common.calls import CallStatus, EndedBy
from callbot.gateway.console.presenting import (
    CALL_FILTERS,
    data_rows,
    day_start,
    filter_link,
    status_timeline,
)
from callbot.gateway.console.web import PREFIX, Session, SignedPage
from callbot.gateway.deps import Resources
from callbot.gateway.domain.result_queries import (
    BadQuery,
    Document,
    calls_condition,
    encode_cursor,
    mongo_projection,
)
from callbot.gateway.recordings_api import archived_recording

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LIST_FIELDS = ["agent_id", "to", "status", "ended_by", "duration_s", "data_complete"]
STATUSES: tuple[str, ...] = get_args(CallStatus)
ENDINGS: tuple[str, ...] = get_args(EndedBy)
CallId = Annotated[str, Path(min_length=1, max_length=64)]


def _choice(param: str, value: str, allowed: tuple[str, ...]) -> str | None:
    if value and value not in allowed:
        raise BadQuery(param, f"{param} must be one of {', '.join(allowed)}")
    return value or None


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


@router.get("/calls")
async def calls_list(
    page: SignedPage,
    agent_id: str = "",
    to: str = "",
    status: str = "",
    ended_by: str = "",
    data_complete: str = "",
    created_from: str = "",
    created_to: str = "",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    filters = {
        "agent_id": agent_id.strip(),
        "to": to.strip(),
        "status": status,
        "ended_by": ended_by,
        "data_complete": data_complete,
        "created_from": created_from,
        "created_to": created_to,
    }
    calls: list[Document] = []
    error = None
    next_cursor = None
    try:
        condition = calls_condition(
            agent_id=filters["agent_id"] or None,
            to=filters["to"] or None,
            status=_choice("status", status, STATUSES),
            ended_by=_choice("ended_by", ended_by, ENDINGS),
            data_complete=_flag(_choice("data_complete", data_complete, ("true", "false"))),
            created_from=day_start(created_from),
            created_to=day_start(created_to, end=True),
            cursor=cursor,
        )
    except BadQuery as exc:
        error = f"{exc.param}: {exc}"
    except ValueError:
        error = "dates: use YYYY-MM-DD"
    else:
        results = page.resources.results.calls(condition, mongo_projection(LIST_FIELDS), limit)
        calls = [document async for document in results]
        if len(calls) == limit:
            next_cursor = encode_cursor(calls[-1]["created_at"], str(calls[-1]["_id"]))
    kept = {key: filters[key] for key in CALL_FILTERS}
    shown_limit = None if limit == 50 else limit
    return page.render(
        "calls.html",
        calls=calls,
        filters=kept,
        error=error,
        statuses=STATUSES,
        endings=ENDINGS,
        limit=limit,
        first_link=filter_link(f"{PREFIX}/calls", kept, limit=shown_limit) if cursor else None,
        next_link=filter_link(f"{PREFIX}/calls", kept, limit=shown_limit, cursor=next_cursor)
        if next_cursor
        else None,
    )


@router.get("/calls/{call_id}")
async def call_page(call_id: CallId, page: SignedPage) -> Response:
    documents = page.resources.documents
    call = await documents.call(call_id)
    if call is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {call_id!r} not found")
    agent = await documents.agent(call.agent_id) if call.agent_id else None
    return page.render(
        "call.html",
        call=call,
        agent=agent,
        timeline=status_timeline(call),
        data=data_rows(agent.data_to_fill if agent else (), call.data_collected),
        archived=bool(call.recording and call.recording.archive),
    )


@router.get("/calls/{call_id}/recording")
async def call_recording(call_id: CallId, resources: Resources, _session: Session) -> Response:
    return await archived_recording(call_id, resources)
