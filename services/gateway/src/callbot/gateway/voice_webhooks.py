"""Twilio's voice webhooks: the answered call, each utterance, and the
asynchronous answering-machine result. Every one answers Twilio with valid
TwiML within the dialog deadline, whatever dialog does.

When dialog misses the deadline the callee hears gateway's fallback line, and
`call.fallback` tells persistence so (`domain.fallback`); a machine gets the
agent's voicemail message, rendered by gateway (`stored_voicemail`), stored
the same way once it is played. A webhook for a call callbot never placed is
an orphan (`placed_calls`): TwiML that hangs up, and nothing asked of dialog
or published."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException, Response, status
from starlette.background import BackgroundTask

from callbot.common.calls import is_machine
from callbot.common.contracts import (
    CallAnswered,
    CallAnsweredBy,
    CallFallbackSpoken,
    DialogReply,
    DialogStart,
    DialogTurn,
    utcnow,
)
from callbot.common.logs import log_context
from callbot.common.transport import ConversationRelayTransport
from callbot.gateway.deps import Resources, Webhook
from callbot.gateway.domain.callback_urls import (
    AMD_STATUS_PATH,
    ANSWER_PATH,
    PROCESS_SPEECH_PATH,
)
from callbot.gateway.domain.fallback import (
    greeting_fallback,
    greeting_fallback_spoken,
    turn_fallback,
    turn_fallback_spoken,
    voicemail_hangup,
)
from callbot.gateway.domain.relay import relay_socket_url, render_relay_twiml
from callbot.gateway.domain.twiml import render_hangup_twiml, render_reply_twiml
from callbot.gateway.domain.webhook_form import optional_float, required_field
from callbot.gateway.placed_calls import record_orphan
from callbot.gateway.publishing import (
    publish_best_effort,
    publish_fallback_spoken,
    publish_or_503,
)
from callbot.gateway.resources import GatewayResources
from callbot.gateway.stored_voicemail import stored_voicemail_fallback
from callbot.gateway.twilio_rest import TwilioApiError, TwilioUnreachable
from callbot.gateway.twiml_response import TwimlResponse

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@router.post(ANSWER_PATH, response_class=TwimlResponse)
async def answered(webhook: Webhook, resources: Resources) -> TwimlResponse:
    call_id = webhook.query_value("call_id")
    agent_id = webhook.query_value("agent_id")
    call_sid = required_field(webhook.fields, "CallSid")
    answered_by = webhook.fields.get("AnsweredBy") or None
    with log_context(call_id=call_id, call_sid=call_sid):
        if not await resources.placed_calls.placed(call_id):
            return _orphan_hangup(call_id, "answer", ANSWER_PATH)
        start = DialogStart(
            call_id=call_id,
            agent_id=agent_id,
            call_sid=call_sid,
            to=webhook.fields.get("To") or None,
            from_=webhook.fields.get("From") or None,
            answered_by=answered_by,
        )
        # Both within the deadline, side by side: the callee is waiting.
        reply, _ = await asyncio.gather(
            resources.dialog.ask(start),
            publish_best_effort(
                resources.publisher,
                CallAnswered(call_id=call_id, call_sid=call_sid, answered_by=answered_by),
                timeout_s=resources.settings.dialog_deadline_ms / 1000,
                consequence="the call goes on; its answer time is missing from the document",
            ),
        )
        if reply is not None:
            return await _twiml(call_id, reply, resources)
        if is_machine(answered_by):
            return await _voicemail_fallback_twiml(call_id, agent_id, resources)
        return _fallback_twiml(
            greeting_fallback(call_id), greeting_fallback_spoken(call_id, utcnow()), resources
        )


@router.post(PROCESS_SPEECH_PATH, response_class=TwimlResponse)
async def process_speech(webhook: Webhook, resources: Resources) -> TwimlResponse:
    call_id = webhook.query_value("call_id")
    seq = _seq(webhook.query_value("seq"))
    with log_context(call_id=call_id, seq=seq):
        turn = DialogTurn(
            call_id=call_id,
            seq=seq,
            speech=webhook.fields.get("SpeechResult", ""),
            confidence=optional_float(webhook.fields, "Confidence"),
            after_fallback=webhook.query.get("after") == "fallback",
        )
        reply = await resources.dialog.ask(turn)
        if reply is not None:
            return await _twiml(call_id, reply, resources)
        # dialog answers a call it knows; without its answer, ask MongoDB.
        if not await resources.placed_calls.placed(call_id):
            return _orphan_hangup(call_id, "speech", PROCESS_SPEECH_PATH)
        return _fallback_twiml(
            turn_fallback(call_id, seq), turn_fallback_spoken(turn, utcnow()), resources
        )


@router.post(AMD_STATUS_PATH, status_code=status.HTTP_204_NO_CONTENT)
async def machine_detection_result(webhook: Webhook, resources: Resources) -> Response:
    call_id = webhook.query_value("call_id")
    agent_id = webhook.query_value("agent_id")
    call_sid = required_field(webhook.fields, "CallSid")
    answered_by = webhook.fields.get("AnsweredBy") or None
    with log_context(call_id=call_id, call_sid=call_sid, answered_by=answered_by):
        if not await resources.placed_calls.placed(call_id):
            record_orphan(call_id, "amd", AMD_STATUS_PATH)
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        if is_machine(answered_by):
            await _leave_voicemail(resources, call_id, agent_id, call_sid, answered_by)
        if answered_by is not None:
            # call.answered went out with the answer webhook: this is who answered.
            await publish_or_503(
                resources.publisher,
                CallAnsweredBy(call_id=call_id, call_sid=call_sid, answered_by=answered_by),
            )
        return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _leave_voicemail(
    resources: GatewayResources, call_id: str, agent_id: str, call_sid: str, answered_by: str | None
) -> None:
    """The greeting is already playing to a machine: ask dialog for the
    voicemail reply (it knows the call was greeted) and redirect the live call.
    Without dialog's reply in time, gateway leaves the agent's message itself,
    and `call.fallback` stores it once the call took it."""
    start = DialogStart(
        call_id=call_id, agent_id=agent_id, call_sid=call_sid, answered_by=answered_by
    )
    reply = await resources.dialog.ask(start)
    spoken: CallFallbackSpoken | None = None
    if reply is None:
        fallback = await stored_voicemail_fallback(resources.documents, call_id, agent_id)
        reply, spoken = fallback or (voicemail_hangup(call_id), None)
    twiml = render_reply_twiml(
        reply,
        resources.urls.process_speech(call_id, reply.next_seq),
        await resources.agent_audio.url(reply.play),
    )
    try:
        await resources.twilio.redirect(call_sid, twiml)
    except (TwilioApiError, TwilioUnreachable) as exc:
        # Typically the call ended meanwhile (Twilio 21220); nothing left to redirect.
        log.warning(
            "could not redirect the call to the voicemail message", extra={"error": str(exc)}
        )
        return
    log.info("machine answered: call redirected to the voicemail message")
    if spoken is not None:
        await publish_fallback_spoken(resources.publisher, spoken)


def _fallback_twiml(
    reply: DialogReply, spoken: CallFallbackSpoken, resources: GatewayResources
) -> TwimlResponse:
    """The fallback reply, listening after it with `after=fallback`; `call.fallback`
    is published once the answer is sent (Starlette runs the background task)."""
    action = resources.urls.process_speech(reply.call_id, reply.next_seq, after_fallback=True)
    publish = BackgroundTask(publish_fallback_spoken, resources.publisher, spoken)
    return TwimlResponse(render_reply_twiml(reply, action), background=publish)


async def _voicemail_fallback_twiml(
    call_id: str, agent_id: str, resources: GatewayResources
) -> TwimlResponse:
    """A machine answered and dialog gave no voicemail message in time: the
    agent's own, then hang up; `call.fallback` once the answer is sent."""
    fallback = await stored_voicemail_fallback(resources.documents, call_id, agent_id)
    if fallback is None:
        return TwimlResponse(render_hangup_twiml(voicemail_hangup(call_id)))
    reply, spoken = fallback
    publish = BackgroundTask(publish_fallback_spoken, resources.publisher, spoken)
    audio_url = await resources.agent_audio.url(reply.play)
    return TwimlResponse(render_hangup_twiml(reply, audio_url), background=publish)


def _orphan_hangup(call_id: str, kind: str, path: str) -> TwimlResponse:
    record_orphan(call_id, kind, path)
    return TwimlResponse(
        render_hangup_twiml(DialogReply(call_id=call_id, say="", action="hangup", next_seq=1))
    )


async def _twiml(call_id: str, reply: DialogReply, resources: GatewayResources) -> TwimlResponse:
    transport = reply.transport
    if isinstance(transport, ConversationRelayTransport) and reply.action == "gather":
        # The conversation goes on over the call's relay WebSocket.
        urls = resources.urls
        return TwimlResponse(
            render_relay_twiml(
                socket_url=relay_socket_url(urls.public_base, call_id),
                call_id=call_id,
                transport=transport,
                language=reply.language,
                greeting=reply.say,
                action_url=urls.relay_ended(call_id),
            )
        )
    action = resources.urls.process_speech(call_id, reply.next_seq)
    audio_url = await resources.agent_audio.url(reply.play)
    return TwimlResponse(render_reply_twiml(reply, action, audio_url))


def _seq(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"seq must be a positive integer, got {raw!r}"
        )
    return int(raw)
