"""Twilio's status and recording callbacks: each becomes one event, and
Twilio gets its 204 only once the broker has confirmed that event. A callback
for a call callbot never placed (`placed_calls`) gets its 204 and no event."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from callbot.common.logs import log_context
from callbot.gateway.deps import Resources, Webhook
from callbot.gateway.domain.callback_events import call_status_event, recording_event
from callbot.gateway.domain.callback_urls import CALL_STATUS_PATH, RECORDING_STATUS_PATH
from callbot.gateway.placed_calls import record_orphan
from callbot.gateway.publishing import publish_or_503

router = APIRouter(include_in_schema=False)


@router.post(CALL_STATUS_PATH, status_code=status.HTTP_204_NO_CONTENT)
async def call_status(webhook: Webhook, resources: Resources) -> Response:
    call_id = webhook.query_value("call_id")
    with log_context(call_id=call_id):
        if await resources.placed_calls.placed(call_id):
            await publish_or_503(resources.publisher, call_status_event(call_id, webhook.fields))
        else:
            record_orphan(call_id, "status", CALL_STATUS_PATH)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(RECORDING_STATUS_PATH, status_code=status.HTTP_204_NO_CONTENT)
async def recording_status(webhook: Webhook, resources: Resources) -> Response:
    call_id = webhook.query_value("call_id")
    with log_context(call_id=call_id):
        if await resources.placed_calls.placed(call_id):
            await publish_or_503(resources.publisher, recording_event(call_id, webhook.fields))
        else:
            record_orphan(call_id, "recording", RECORDING_STATUS_PATH)
        return Response(status_code=status.HTTP_204_NO_CONTENT)
