"""The ConversationRelay edge: the call's WebSocket and its `<Connect action>`.

The handshake is checked before the socket is accepted: its
`X-Twilio-Signature` must sign the public socket URL (`wss://` under
`PUBLIC_URL`, with the `call_id` query gateway put in the TwiML); without one,
or with a wrong one, the handshake is refused with 403 and nothing is read,
asked or published.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from callbot.common.contracts import DialogReply
from callbot.gateway.deps import Webhook
from callbot.gateway.domain.callback_urls import RELAY_ENDED_PATH
from callbot.gateway.domain.relay import (
    RELAY_HANDOFF_ADAPTER,
    RELAY_SOCKET_PATH,
    signed_socket_url,
)
from callbot.gateway.domain.twiml import render_hangup_twiml
from callbot.gateway.relay_conversation import RelayConversation
from callbot.gateway.resources import GatewayResources
from callbot.gateway.twiml_response import TwimlResponse
from callbot.gateway.webhook_request import SIGNATURE_HEADER

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# Closing a WebSocket before accepting it makes the server answer the
# handshake with HTTP 403; the code itself is then never sent.
_POLICY_VIOLATION = 1008


@router.websocket(RELAY_SOCKET_PATH)
async def relay_socket(websocket: WebSocket) -> None:
    resources: GatewayResources = websocket.app.state.resources
    call_id = websocket.query_params.get("call_id", "")
    refusal = _refusal(websocket, resources, call_id)
    if refusal is not None:
        log.warning(
            "relay handshake refused (403); nothing read or published",
            extra={"reason": refusal, "call_id": call_id or None},
        )
        await websocket.close(code=_POLICY_VIOLATION)
        return
    await websocket.accept()
    await RelayConversation(websocket, call_id, resources).run()


def _refusal(websocket: WebSocket, resources: GatewayResources, call_id: str) -> str | None:
    signature = websocket.headers.get(SIGNATURE_HEADER)
    if not signature:
        return f"missing {SIGNATURE_HEADER} header"
    query = websocket.scope["query_string"].decode("latin-1")
    url = signed_socket_url(resources.urls.public_base, websocket.url.path, query)
    if not resources.validator.validate(url, {}, signature):
        return f"{SIGNATURE_HEADER} does not match this handshake (checked against {url})"
    if not call_id:
        return "the socket URL has no call_id query parameter"
    return None


@router.post(RELAY_ENDED_PATH, response_class=TwimlResponse)
async def relay_ended(webhook: Webhook) -> TwimlResponse:
    """The relay session ended. Ended by gateway (`end`): say the closing line
    from `HandoffData`, then hang up. Ended otherwise (the socket dropped, an
    error): hang up; the call is finalized from its status callbacks."""
    call_id = webhook.query_value("call_id")
    raw = webhook.fields.get("HandoffData", "")
    try:
        handoff = RELAY_HANDOFF_ADAPTER.validate_json(raw) if raw else None
    except ValidationError:
        handoff = None
    if handoff is None or handoff.call_id != call_id:
        log.warning(
            "relay session ended without our handoff; hanging up",
            extra={"call_id": call_id, "session_status": webhook.fields.get("SessionStatus")},
        )
        return TwimlResponse(render_hangup_twiml(_closing(call_id, "")))
    reply = _closing(call_id, handoff.say, handoff.voice, handoff.language)
    return TwimlResponse(render_hangup_twiml(reply))


def _closing(
    call_id: str, say: str, voice: str | None = None, language: str | None = None
) -> DialogReply:
    line = DialogReply(call_id=call_id, say=say, action="hangup", next_seq=1)
    return line.model_copy(
        update={"voice": voice or line.voice, "language": language or line.language}
    )
