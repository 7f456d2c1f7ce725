"""The opt-out check of `POST /v1/calls`: a recipient who asked this agent not
to call again is refused (409), unless the request overrides it with a reason
(stored on the call as `override_opt_out`)."""

from __future__ import annotations

from fastapi import HTTPException, status

from callbot.gateway.domain.outbound_call import CallRequest
from callbot.gateway.stored_documents import DocumentReader


async def refuse_opted_out(request: CallRequest, documents: DocumentReader) -> None:
    """Raise 409 when the recipient opted out and the request does not override it."""
    if request.override_opt_out:
        return
    recipient = await documents.recipient(request.agent_id, request.to)
    if recipient is None or recipient.opted_out is None:
        return
    raise HTTPException(
        status.HTTP_409_CONFLICT,
        {
            "message": (
                f"{request.to} asked agent {request.agent_id!r} not to call again "
                f"(call {recipient.opted_out.call_id}, {recipient.opted_out.at.isoformat()}); "
                "to call anyway, send override_opt_out with the reason"
            ),
            "opted_out": recipient.opted_out.model_dump(mode="json"),
        },
    )
