"""Placing a call: the one path every caller takes (the `/v1/calls` API, and
campaigns), with its checks, the `Idempotency-Key`, Twilio's retries and the
`call.created` event.

`CallPlacer.place` refuses with `CallRefused` (an HTTP status and a body that
names the field), so each caller only translates that into its own answer.

Idempotency: gateway holds no state, so a key is claimed through persistence
(the only MongoDB writer; `callbot.persistence.call_claims`). The claim is
keyed by a digest of the API key and the header, and is granted once per
24 h: the winner places the call under a fresh `call_id`, every other request
with that key (a retry, or a concurrent duplicate) waits for the winner's call
document and answers with it. If Twilio refuses the call, or is not reached,
the claim is released so a retry may place it; if Twilio may have placed it
(no answer to a request that was sent), the claim stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import status

from callbot.common.agents import Agent
from callbot.common.contracts import CallClaimed, CallCreated, new_id
from callbot.common.logs import log_context
from callbot.common.messaging import EventPublisher
from callbot.gateway.domain.callback_urls import CallbackUrls
from callbot.gateway.domain.outbound_call import (
    CallRequest,
    create_call_params,
    missing_placeholders,
)
from callbot.gateway.opt_out_check import refuse_opted_out
from callbot.gateway.publishing import publish_best_effort
from callbot.gateway.stored_documents import DocumentReader
from callbot.gateway.twilio_rest import PlacedCall, TwilioApiError, TwilioCalls, TwilioUnreachable

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL_S = 24 * 3600
# How long a duplicate request waits for the first one's call document.
DUPLICATE_WAIT_S = 15.0
_DUPLICATE_POLL_S = 0.1


class CallRefused(Exception):
    """The call was not placed: `status_code` and `detail` say why (HTTP terms)."""

    def __init__(
        self,
        status_code: int,
        detail: Any,
        headers: dict[str, str] | None = None,
        *,
        maybe_placed: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers
        # Twilio got the request but no answer came back: the call may ring.
        self.maybe_placed = maybe_placed


@dataclass(frozen=True)
class CallOutcome:
    call_id: str
    call_sid: str
    status: str
    replayed: bool = False  # the key's first call, not a new one


class CallClaims(Protocol):
    """The `Idempotency-Key` claims, kept by persistence."""

    async def claim(self, key: str, call_id: str, ttl_s: int, request_digest: str) -> CallClaimed:
        """Persistence's answer: who holds the key, and the digest of the
        request that won it; raises `CallRefused` when the claim cannot be
        made now."""
        ...

    async def release(self, key: str, call_id: str) -> None: ...


def idempotency_digest(api_key: str, idempotency_key: str) -> str:
    """Keys are per API key: two clients choosing the same key never collide."""
    caller = hashlib.sha256(api_key.encode()).hexdigest()
    return hashlib.sha256(f"{caller}:{idempotency_key}".encode()).hexdigest()


def request_digest(request: CallRequest) -> str:
    """The request as parsed, not as sent: a retry whose JSON differs only in
    key order, spacing or defaults spelled out is the same request."""
    canonical = json.dumps(
        request.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class CallPlacer:
    def __init__(
        self,
        *,
        documents: DocumentReader,
        twilio: TwilioCalls,
        publisher: EventPublisher,
        claims: CallClaims,
        urls: CallbackUrls,
        default_from: str,
        default_retention_days: int = 0,
        duplicate_wait_s: float = DUPLICATE_WAIT_S,
    ) -> None:
        self._documents = documents
        self._twilio = twilio
        self._publisher = publisher
        self._claims = claims
        self._urls = urls
        self._default_from = default_from
        self._default_retention_days = default_retention_days
        self._duplicate_wait_s = duplicate_wait_s

    async def place(
        self, request: CallRequest, *, api_key: str = "", idempotency_key: str | None = None
    ) -> CallOutcome:
        agent = await self._documents.agent(request.agent_id)
        if agent is None:
            raise CallRefused(status.HTTP_404_NOT_FOUND, f"agent {request.agent_id!r} not found")
        # An opted-out recipient is refused whatever the request holds.
        await refuse_opted_out(request, self._documents)
        if missing := missing_placeholders(agent, request.recipient, request.variables):
            raise CallRefused(status.HTTP_422_UNPROCESSABLE_CONTENT, missing)
        call_id = new_id()
        if idempotency_key is None:
            return await self._place(call_id, agent, request)
        key = idempotency_digest(api_key, idempotency_key)
        digest = request_digest(request)
        claimed = await self._claims.claim(key, call_id, IDEMPOTENCY_TTL_S, digest)
        if not claimed.won:
            if claimed.request_digest and claimed.request_digest != digest:
                raise CallRefused(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"this Idempotency-Key placed call {claimed.call_id} for a different "
                    "request; no call was placed: send a new key for a new call",
                )
            return await self._first_call(claimed.call_id)
        try:
            return await self._place(call_id, agent, request)
        except CallRefused as refused:
            if not refused.maybe_placed:
                await self._claims.release(key, call_id)
            raise

    async def _place(self, call_id: str, agent: Agent, request: CallRequest) -> CallOutcome:
        from_number = request.from_ or self._default_from
        params = create_call_params(
            call_id=call_id, agent=agent, request=request, from_number=from_number, urls=self._urls
        )
        with log_context(call_id=call_id, agent_id=agent.agent_id):
            placed = await self._create_at_twilio(params)
            # Twilio has the call now: a failed publish must not turn into an
            # error answer, or the caller would retry and ring the callee twice.
            # The error log carries the whole event for a replay; until then the
            # call's later events still reach persistence.
            await publish_best_effort(
                self._publisher,
                CallCreated(
                    call_id=call_id,
                    call_sid=placed.sid,
                    agent_id=agent.agent_id,
                    agent_version=agent.version,
                    data_fields=tuple(field.name for field in agent.data_to_fill),
                    to=request.to,
                    from_=from_number,
                    recipient=request.recipient,
                    variables=request.variables,
                    status=placed.status,
                    override_opt_out=request.override_opt_out,
                    # The agent's, else the deployment's (0: kept until deleted).
                    retention_days=agent.retention_days or self._default_retention_days or None,
                ),
                timeout_s=10.0,
                consequence="the call was placed at Twilio anyway; "
                "replay call.created from this line",
            )
            log.info("call placed", extra={"call_sid": placed.sid, "status": placed.status})
        return CallOutcome(call_id=call_id, call_sid=placed.sid, status=placed.status)

    async def _create_at_twilio(self, params: dict[str, Any]) -> PlacedCall:
        try:
            return await self._twilio.create(params)
        except TwilioApiError as exc:
            raise twilio_refusal(exc) from exc
        except TwilioUnreachable as exc:
            raise CallRefused(
                status.HTTP_502_BAD_GATEWAY,
                f"Twilio did not answer: {exc}",
                maybe_placed=exc.maybe_done,
            ) from exc

    async def _first_call(self, call_id: str) -> CallOutcome:
        """The key's call, placed by another request: once its document is stored."""
        deadline = time.monotonic() + self._duplicate_wait_s
        while True:
            call = await self._documents.call(call_id)
            if call is not None and call.call_sid:
                log.info(
                    "Idempotency-Key seen before: answering with its call",
                    extra={"call_id": call_id},
                )
                return CallOutcome(call_id, call.call_sid, call.status or "queued", replayed=True)
            if time.monotonic() >= deadline:
                raise CallRefused(
                    status.HTTP_409_CONFLICT,
                    f"a call with this Idempotency-Key (call_id {call_id}) is being placed, or "
                    "its placing failed without an answer from Twilio; retry in a few seconds. "
                    "No second call is placed for this key within 24 h",
                    headers={"Retry-After": "2"},
                )
            await asyncio.sleep(_DUPLICATE_POLL_S)


def twilio_refusal(exc: TwilioApiError) -> CallRefused:
    """Twilio's refusal, with its code and message, under the status that says
    whose problem it is."""
    detail: dict[str, Any] = {
        "twilio_status": exc.status,
        "twilio_code": exc.code,
        "twilio_message": exc.message,
    }
    if exc.status in (401, 403):
        log.error("Twilio refused callbot's credentials", extra=detail)
        return CallRefused(
            status.HTTP_502_BAD_GATEWAY,
            {
                "message": "Twilio refused callbot's credentials (operator: check TWILIO_*)",
                **detail,
            },
        )
    if exc.status == 429:
        return CallRefused(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"message": "Twilio is rate limiting calls; try again later", **detail},
            headers={"Retry-After": "5"},
        )
    if exc.status < 500:
        return CallRefused(
            status.HTTP_400_BAD_REQUEST, {"message": "Twilio refused the call", **detail}
        )
    return CallRefused(status.HTTP_502_BAD_GATEWAY, {"message": "Twilio failed", **detail})
