"""`/v1/campaigns` and `/v1/suppressions`: creating and steering campaigns,
reading their progress and attempts.

Gateway reads campaigns and attempts from MongoDB; every change goes to the
campaigns service (RPC `campaigns.rpc`), their only writer. A campaign is
created as a draft, its list sent in chunks of `CHUNK_ROWS` as it is parsed
(an upload of any length in bounded memory), then started; if anything fails
on the way (a bad CSV row, the service away), the draft is discarded: nothing
half-created is ever dialed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from callbot.common.agents import Agent
from callbot.common.campaigns import (
    CAMPAIGN_RESPONSE_ADAPTER,
    CampaignAck,
    CampaignAddRecipients,
    CampaignControl,
    CampaignCreate,
    CampaignDiscard,
    CampaignSettings,
    CampaignStart,
    RecipientRow,
    SuppressionsAdd,
    added,
)
from callbot.common.contracts import CampaignCounters, Message, RpcFailure, new_id
from callbot.common.messaging import RpcError, RpcTimeout
from callbot.gateway.campaign_documents import ATTEMPT_FIELDS
from callbot.gateway.deps import Resources, require_api_key
from callbot.gateway.domain.outbound_call import (
    e164_number,
    missing_placeholders,
    missing_variables,
)
from callbot.gateway.domain.recipient_rows import BadRecipientRow, csv_rows, json_rows
from callbot.gateway.resources import GatewayResources

log = logging.getLogger(__name__)

router = APIRouter(tags=["campaigns"], dependencies=[Depends(require_api_key)])

CHUNK_ROWS = 1000
MAX_JSON_RECIPIENTS = 10_000
MAX_ROWS = 1_000_000
RPC_TIMEOUT_S = 30.0

CampaignId = Annotated[str, Path(min_length=1, max_length=64)]


class CampaignCreateRequest(CampaignSettings):
    """A campaign with its recipients as JSON objects: `to`, optional
    `timezone`, every other key a recipient field. Longer lists: CSV upload."""

    recipients: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_JSON_RECIPIENTS)


class CampaignView(BaseModel):
    campaign_id: str
    state: str
    settings: CampaignSettings
    counters: CampaignCounters
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SuppressionsRequest(BaseModel):
    numbers: list[str] = Field(min_length=1, max_length=MAX_JSON_RECIPIENTS)
    reason: str = Field(default="", max_length=200)


class SuppressionsAdded(BaseModel):
    added: int
    rejected: list[dict[str, Any]]


_CREATE_DOC = (
    "Send `application/json` (the campaign and `recipients`), or `multipart/form-data` "
    "with a `campaign` part (the same JSON without `recipients`) and a `recipients` "
    "file: CSV with a header row, `to` required, `timezone` optional, other columns "
    "become recipient fields."
)


@router.post(
    "/v1/campaigns",
    status_code=status.HTTP_201_CREATED,
    description=_CREATE_DOC,
    responses={
        422: {"description": "Bad settings, unknown agent, or a bad CSV row (line named)."},
        503: {"description": "The campaigns service did not answer; nothing was created."},
    },
)
async def create_campaign(request: Request, resources: Resources) -> CampaignView:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=4) as form:
            settings = _parse(CampaignSettings, _text_part(form.get("campaign")), "campaign")
            upload = form.get("recipients")
            if not isinstance(upload, UploadFile):
                raise _invalid(["body", "recipients"], "attach the recipients CSV file")
            lines = io.TextIOWrapper(upload.file, encoding="utf-8", newline="")
            return await create_from_rows(settings, csv_rows(lines), resources)
    body = await request.body()
    payload = _parse(CampaignCreateRequest, body, None)
    settings = CampaignSettings.model_validate(payload.model_dump(exclude={"recipients"}))
    return await create_from_rows(settings, json_rows(payload.recipients), resources)


async def create_from_rows(
    settings: CampaignSettings, rows: Iterator[RecipientRow], resources: GatewayResources
) -> CampaignView:
    """Create, fill and start a campaign (the API and the console alike); raises
    `RequestValidationError` for bad settings or rows, `HTTPException` else."""
    agent = await resources.documents.agent(settings.agent_id)
    if agent is None:
        raise _invalid(["body", "agent_id"], f"agent {settings.agent_id!r} not found")
    if missing := missing_variables(agent, settings.variables):
        raise _invalid(["body", "variables"], f"agent {agent.agent_id!r} needs variables {missing}")
    campaign_id = new_id()
    await _rpc(resources, CampaignCreate(campaign_id=campaign_id, settings=settings))
    try:
        total = 0
        # Each chunk's ack counts its rows: the start need not count the list.
        counters = CampaignCounters()
        checked = _placeholders_given(rows, agent, settings.variables)
        while chunk := await asyncio.to_thread(_take, checked, CHUNK_ROWS):
            total += len(chunk)
            if total > MAX_ROWS:
                raise BadRecipientRow(chunk[-1].row, f"more than {MAX_ROWS} recipients")
            added_rows = await _rpc(
                resources, CampaignAddRecipients(campaign_id=campaign_id, recipients=tuple(chunk))
            )
            counters = added(counters, added_rows.counters or CampaignCounters())
        if total == 0:
            raise BadRecipientRow(1, "no recipients: the list has a header and no rows")
        ack = await _rpc(resources, CampaignStart(campaign_id=campaign_id))
    except BaseException as exc:
        await _discard(resources, campaign_id)
        if isinstance(exc, BadRecipientRow):
            raise _invalid(["body", "recipients", exc.line], exc.problem) from None
        if isinstance(exc, UnicodeDecodeError):
            raise _invalid(["body", "recipients"], "the CSV is not UTF-8 text") from None
        raise
    log.info("campaign created", extra={"campaign_id": campaign_id, "rows": total})
    return CampaignView(
        campaign_id=campaign_id,
        state=ack.state or "running",
        settings=settings,
        counters=counters,
    )


def _placeholders_given(
    rows: Iterator[RecipientRow], agent: Agent, variables: dict[str, Any]
) -> Iterator[RecipientRow]:
    """The rows, each checked to give every `{recipient.<key>}` the agent's
    templates use: a row without one is refused at upload (line named), not
    discovered at dialing time as a call gateway refuses."""
    for row in rows:
        if missing := missing_placeholders(agent, row.fields, variables):
            keys = ", ".join(f"`{error['loc'][-1]}`" for error in missing)
            raise BadRecipientRow(
                row.row,
                f"no {keys} for this recipient: agent {agent.agent_id!r} says it to the callee",
            )
        yield row


def _take(rows: Iterator[RecipientRow], size: int) -> list[RecipientRow]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            break
    return chunk


async def _discard(resources: GatewayResources, campaign_id: str) -> None:
    try:
        await _rpc(resources, CampaignDiscard(campaign_id=campaign_id))
    except HTTPException:
        # The draft stays behind, never started: it is never dialed.
        log.error("could not discard a draft campaign", extra={"campaign_id": campaign_id})


@router.get("/v1/campaigns/{campaign_id}", responses={404: {"description": "No such campaign."}})
async def get_campaign(campaign_id: CampaignId, resources: Resources) -> CampaignView:
    document = await resources.campaigns.campaign(campaign_id)
    if document is None or document.get("state") == "draft":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"campaign {campaign_id!r} not found")
    return CampaignView(
        campaign_id=campaign_id,
        state=document["state"],
        settings=CampaignSettings.model_validate(document["settings"]),
        counters=await resources.campaigns.counters(campaign_id),
        created_at=document.get("created_at"),
        updated_at=document.get("updated_at"),
    )


async def control_campaign(
    campaign_id: str, action: str, resources: GatewayResources
) -> CampaignView:
    view = await get_campaign(campaign_id, resources)  # 404 before asking the service
    ack = await _rpc(resources, CampaignControl(campaign_id=campaign_id, action=action))
    return view.model_copy(
        update={"state": ack.state or view.state, "counters": ack.counters or view.counters}
    )


_CONTROL_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such campaign."},
    409: {"description": "Not possible in the campaign's state (e.g. resuming a canceled one)."},
}


@router.post("/v1/campaigns/{campaign_id}/pause", responses=_CONTROL_RESPONSES)
async def pause_campaign(campaign_id: CampaignId, resources: Resources) -> CampaignView:
    """No new calls; calls in progress end normally; retries are still scheduled."""
    return await control_campaign(campaign_id, "pause", resources)


@router.post("/v1/campaigns/{campaign_id}/resume", responses=_CONTROL_RESPONSES)
async def resume_campaign(campaign_id: CampaignId, resources: Resources) -> CampaignView:
    return await control_campaign(campaign_id, "resume", resources)


@router.post("/v1/campaigns/{campaign_id}/cancel", responses=_CONTROL_RESPONSES)
async def cancel_campaign(campaign_id: CampaignId, resources: Resources) -> CampaignView:
    """Every recipient not yet called is `canceled`; calls in progress end normally."""
    return await control_campaign(campaign_id, "cancel", resources)


@router.get(
    "/v1/campaigns/{campaign_id}/attempts",
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON page, or every row as CSV."},
        404: {"description": "No such campaign."},
    },
)
async def list_attempts(
    campaign_id: CampaignId,
    resources: Resources,
    after: Annotated[int, Query(ge=0, description="Rows after this one (list order).")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    """Where each recipient stands, in list order: a page of JSON (`next_after`
    continues it), or with `format=csv` every row, streamed."""
    await get_campaign(campaign_id, resources)
    if format == "csv":
        rows = resources.campaigns.attempts(campaign_id, after_row=after, limit=None)
        return StreamingResponse(
            _csv_lines(rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{campaign_id}.csv"'},
        )
    items = [
        item
        async for item in resources.campaigns.attempts(campaign_id, after_row=after, limit=limit)
    ]
    next_after = items[-1]["row"] if len(items) == limit else None
    return {"items": items, "next_after": next_after}


async def _csv_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    columns = [field for field in ATTEMPT_FIELDS if field != "fields"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*columns, "attempts", "fields"])
    async for row in rows:
        writer.writerow(
            [
                *(_cell(row.get(column)) for column in columns),
                len(row.get("tries") or []),
                json.dumps(row.get("fields") or {}, default=str),
            ]
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@router.post(
    "/v1/suppressions",
    description="JSON `{numbers, reason}`, or `text/csv` with a header row holding `to`.",
)
async def add_suppressions(request: Request, resources: Resources) -> SuppressionsAdded:
    """Numbers never to call, in any campaign (checked again before every call)."""
    if request.headers.get("content-type", "").startswith("text/csv"):
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            numbers = [(row.row, row.to) for row in csv_rows(io.StringIO(text, newline=""))]
        except BadRecipientRow as exc:
            raise _invalid(["body", exc.line], exc.problem) from None
        reason = request.query_params.get("reason", "")
    else:
        payload = _parse(SuppressionsRequest, await request.body(), None)
        numbers = list(enumerate(payload.numbers, start=1))
        reason = payload.reason
    valid: list[str] = []
    rejected: list[dict[str, Any]] = []
    for position, number in numbers:
        try:
            valid.append(e164_number(number))
        except ValueError as exc:
            rejected.append({"row": position, "to": number, "problem": str(exc)})
    for start in range(0, len(valid), CHUNK_ROWS):
        await _rpc(
            resources,
            SuppressionsAdd(numbers=tuple(valid[start : start + CHUNK_ROWS]), reason=reason),
        )
    return SuppressionsAdded(added=len(valid), rejected=rejected)


async def _rpc(resources: GatewayResources, request: Message) -> CampaignAck:
    try:
        reply = await resources.rpc.call(
            resources.topology.campaigns_rpc_queue,
            request,
            CAMPAIGN_RESPONSE_ADAPTER,
            timeout_s=RPC_TIMEOUT_S,
        )
    except RpcTimeout as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the campaigns service did not answer in time; retry",
            headers={"Retry-After": "5"},
        ) from exc
    except RpcError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if isinstance(reply, RpcFailure):
        code = {"not_found": 404, "bad_request": 409}.get(reply.code, 502)
        raise HTTPException(code, f"campaigns: {reply.message}")
    return reply


def _text_part(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    raise _invalid(["body", "campaign"], "send the campaign settings as a JSON form field")


def _parse(model: type[Any], body: bytes, part: str | None) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        prefix = ["body", part] if part else ["body"]
        raise RequestValidationError(
            [{**error, "loc": (*prefix, *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def _invalid(loc: list[Any], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])
