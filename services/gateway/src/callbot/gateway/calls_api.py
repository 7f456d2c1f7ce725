"""`/v1/calls`: placing a call (through `CallPlacer`, the one path that places
calls), and reading one back."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Response, status
from pydantic import BaseModel

from callbot.common.calls import CallDocument
from callbot.gateway.call_placing import CallRefused
from callbot.gateway.deps import ApiKey, Resources, require_api_key
from callbot.gateway.domain.outbound_call import CallRequest

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/calls", tags=["calls"], dependencies=[Depends(require_api_key)])

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any string of your choice (e.g. a UUID), unique per call you mean to "
        "place. A request repeating a key used with the same API key in the last 24 h "
        "places no call: it answers with the first call (header `Idempotent-Replayed: "
        "true`), even when both arrive at once.",
    ),
]


class CallPlaced(BaseModel):
    call_id: str
    call_sid: str
    status: str


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No such agent."},
        409: {
            "description": "The recipient opted out (send override_opt_out to call anyway), "
            "or the Idempotency-Key's first call is still being placed (retry)."
        },
        422: {
            "description": "Invalid number, or a recipient field or variable the agent's "
            "templates use is missing (`loc` names it)."
        },
        502: {"description": "Twilio failed or refused callbot's credentials."},
        503: {"description": "Twilio rate limiting, or the Idempotency-Key cannot be checked."},
    },
)
async def place_call(
    request: CallRequest,
    resources: Resources,
    api_key: ApiKey,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CallPlaced:
    try:
        outcome = await resources.call_placer.place(
            request, api_key=api_key, idempotency_key=idempotency_key
        )
    except CallRefused as refused:
        raise HTTPException(refused.status_code, refused.detail, refused.headers) from refused
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CallPlaced(call_id=outcome.call_id, call_sid=outcome.call_sid, status=outcome.status)


@router.get("/{call_id}", responses={404: {"description": "No such call."}})
async def get_call(
    call_id: Annotated[str, Path(min_length=1)], resources: Resources
) -> CallDocument:
    call = await resources.documents.call(call_id)
    if call is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {call_id!r} not found")
    return call
