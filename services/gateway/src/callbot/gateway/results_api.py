"""The read API: `GET /v1/calls`, `GET /v1/recipients` (JSON pages or CSV,
`Accept: text/csv` or the `.csv` path) and `GET /v1/recipients/{agent_id}/{to}`.
Read-only against MongoDB; the same API keys as the rest of `/v1`."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from callbot.common.calls import CallStatus, EndedBy
from callbot.common.recipients import RecipientDocument
from callbot.gateway.deps import Resources, require_api_key
from callbot.gateway.domain.result_queries import (
    BadQuery,
    Document,
    call_csv_header,
    call_csv_row,
    call_item,
    calls_condition,
    encode_cursor,
    mongo_projection,
    recipient_csv_header,
    recipient_csv_row,
    recipients_condition,
    requested_fields,
)
from callbot.gateway.resources import GatewayResources

router = APIRouter(tags=["results"], dependencies=[Depends(require_api_key)])

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page.")]
FIELD_NAME = r"^[a-z][a-z0-9_]{0,63}$"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "A JSON page, or every row as CSV."}
}


def _wants_csv(request: Request) -> bool:
    return request.url.path.endswith(".csv") or "text/csv" in request.headers.get("accept", "")


def _bad(exc: BadQuery) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ["query", exc.param], "msg": str(exc), "type": "value_error"}]
    )


async def _data_fields(resources: GatewayResources, agent_id: str | None) -> list[str]:
    """The CSV's data columns: the agent's fields, in its order."""
    if agent_id is None:
        raise _bad(BadQuery("agent_id", "a CSV export needs agent_id: its fields are the columns"))
    agent = await resources.documents.agent(agent_id)
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_id!r} not found")
    return [field.name for field in agent.data_to_fill]


def _csv(
    header: list[str],
    rows: AsyncIterator[Document],
    row: Callable[[Document], list[str]],
    name: str,
) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        async for document in rows:
            writer.writerow(row(document))
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        lines(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/v1/calls", responses=CSV_RESPONSE)
@router.get("/v1/calls.csv", responses=CSV_RESPONSE, include_in_schema=False)
async def list_calls(
    request: Request,
    resources: Resources,
    agent_id: str | None = None,
    to: str | None = None,
    status_: Annotated[CallStatus | None, Query(alias="status")] = None,
    ended_by: EndedBy | None = None,
    data_complete: bool | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    fields: Annotated[str | None, Query(description="Comma-separated fields to return.")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """Calls, newest first (`created_at`), filtered; a page and `next_cursor`,
    or every matching call as CSV (one column per data field of `agent_id`)."""
    try:
        condition = calls_condition(
            agent_id=agent_id,
            to=to,
            status=status_,
            ended_by=ended_by,
            data_complete=data_complete,
            created_from=created_from,
            created_to=created_to,
            cursor=cursor,
        )
        names = requested_fields(fields)
    except BadQuery as exc:
        raise _bad(exc) from None
    results = resources.results
    if _wants_csv(request):
        data_fields = await _data_fields(resources, agent_id)
        rows = results.calls(condition, None, None)
        return _csv(
            call_csv_header(data_fields),
            rows,
            lambda document: call_csv_row(document, data_fields),
            "calls",
        )
    documents = [d async for d in results.calls(condition, mongo_projection(names), limit)]
    return {
        "items": [call_item(document, names) for document in documents],
        "next_cursor": _next_cursor(documents, limit, "created_at"),
    }


@router.get("/v1/recipients", responses=CSV_RESPONSE)
@router.get("/v1/recipients.csv", responses=CSV_RESPONSE, include_in_schema=False)
async def list_recipients(
    request: Request,
    resources: Resources,
    agent_id: Annotated[str, Query(min_length=1)],
    opted_out: bool | None = None,
    data_complete: bool | None = None,
    missing: Annotated[
        str | None, Query(pattern=FIELD_NAME, description="Recipients without this data field.")
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """An agent's recipients, latest call first; a page and `next_cursor`, or CSV."""
    try:
        condition = recipients_condition(
            agent_id=agent_id,
            opted_out=opted_out,
            data_complete=data_complete,
            missing=missing,
            cursor=cursor,
        )
    except BadQuery as exc:
        raise _bad(exc) from None
    results = resources.results
    if _wants_csv(request):
        data_fields = await _data_fields(resources, agent_id)
        return _csv(
            recipient_csv_header(data_fields),
            results.recipients(condition, None),
            lambda document: recipient_csv_row(document, data_fields),
            f"recipients-{agent_id}",
        )
    documents = [d async for d in results.recipients(condition, limit)]
    return {
        "items": [_recipient(document) for document in documents],
        "next_cursor": _next_cursor(documents, limit, "last_call_at"),
    }


@router.get("/v1/recipients/{agent_id}/{to}", responses={404: {"description": "Never called."}})
async def get_recipient(
    agent_id: Annotated[str, Path(min_length=1)],
    to: Annotated[str, Path(min_length=1)],
    resources: Resources,
) -> Any:
    document = await resources.results.recipient(agent_id, to)
    if document is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"agent {agent_id!r} has no finished call to {to}"
        )
    return _recipient(document)


def _recipient(document: Document) -> Any:
    return RecipientDocument.model_validate(document).model_dump(mode="json", exclude={"key"})


def _next_cursor(documents: list[Document], limit: int, time_field: str) -> str | None:
    if len(documents) < limit:
        return None
    last = documents[-1]
    return encode_cursor(last[time_field], str(last["_id"]))
