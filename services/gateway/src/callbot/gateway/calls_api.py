"""`/v1/calls`: placing a call, and reading one back."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel

from callbot.common.calls import CallDocument
from callbot.common.contracts import CallCreated, new_id
from callbot.common.logs import log_context
from callbot.gateway.deps import Resources, require_api_key
from callbot.gateway.domain.outbound_call import (
    CallRequest,
    create_call_params,
    missing_variables,
)
from callbot.gateway.opt_out_check import refuse_opted_out
from callbot.gateway.publishing import publish_best_effort
from callbot.gateway.twilio_rest import TwilioApiError, TwilioUnreachable

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/calls", tags=["calls"], dependencies=[Depends(require_api_key)])


class CallPlaced(BaseModel):
    call_id: str
    call_sid: str
    status: str


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No such agent."},
        409: {"description": "The recipient opted out (send override_opt_out to call anyway)."},
        422: {"description": "Invalid number, or a variable the agent needs is missing."},
        502: {"description": "Twilio failed or refused callbot's credentials."},
    },
)
async def place_call(request: CallRequest, resources: Resources) -> CallPlaced:
    agent = await resources.documents.agent(request.agent_id)
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {request.agent_id!r} not found")
    if missing := missing_variables(agent, request.variables):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"agent {agent.agent_id!r} needs variables {missing} that the request does not give",
        )
    await refuse_opted_out(request, resources.documents)
    call_id = new_id()
    from_number = request.from_ or resources.settings.twilio_from_number
    params = create_call_params(
        call_id=call_id,
        agent=agent,
        request=request,
        from_number=from_number,
        urls=resources.urls,
    )
    with log_context(call_id=call_id, agent_id=agent.agent_id):
        try:
            placed = await resources.twilio.create(params)
        except TwilioApiError as exc:
            raise _twilio_error_answer(exc) from exc
        except TwilioUnreachable as exc:
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, f"Twilio did not answer: {exc}"
            ) from exc
        # Twilio has the call now: a failed publish must not turn into an error
        # answer, or the caller would retry and ring the callee twice. The error
        # log carries the whole event for a replay; until then the call's later
        # events still reach persistence, only the creation details are missing.
        await publish_best_effort(
            resources.publisher,
            CallCreated(
                call_id=call_id,
                call_sid=placed.sid,
                agent_id=agent.agent_id,
                agent_version=agent.version,
                to=request.to,
                from_=from_number,
                recipient=request.recipient,
                variables=request.variables,
                status=placed.status,
                override_opt_out=request.override_opt_out,
            ),
            timeout_s=10.0,
            consequence="the call was placed at Twilio anyway; replay call.created from this line",
        )
        log.info("call placed", extra={"call_sid": placed.sid, "status": placed.status})
        return CallPlaced(call_id=call_id, call_sid=placed.sid, status=placed.status)


@router.get("/{call_id}", responses={404: {"description": "No such call."}})
async def get_call(
    call_id: Annotated[str, Path(min_length=1)], resources: Resources
) -> CallDocument:
    call = await resources.documents.call(call_id)
    if call is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {call_id!r} not found")
    return call


def _twilio_error_answer(exc: TwilioApiError) -> HTTPException:
    """Twilio's refusal, with its code and message, under the status that says
    whose problem it is."""
    detail: dict[str, Any] = {
        "twilio_status": exc.status,
        "twilio_code": exc.code,
        "twilio_message": exc.message,
    }
    if exc.status in (401, 403):
        log.error("Twilio refused callbot's credentials", extra=detail)
        return HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            {
                "message": "Twilio refused callbot's credentials (operator: check TWILIO_*)",
                **detail,
            },
        )
    if exc.status == 429:
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"message": "Twilio is rate limiting calls; try again later", **detail},
            headers={"Retry-After": "5"},
        )
    if exc.status < 500:
        return HTTPException(
            status.HTTP_400_BAD_REQUEST, {"message": "Twilio refused the call", **detail}
        )
    return HTTPException(status.HTTP_502_BAD_GATEWAY, {"message": "Twilio failed", **detail})
