"""Reading and authenticating a Twilio webhook before anything acts on it.

Order: a request without a signature is refused before its body is read;
the body is limited while it streams in (413), parsed as a form (400), and
its signature checked against the PUBLIC URL Twilio called plus the form
(403). Nothing is published or asked before all of that passed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from twilio.request_validator import RequestValidator

from callbot.gateway.domain.callback_urls import CallbackUrls
from callbot.gateway.domain.webhook_form import MalformedWebhook, parse_webhook_form

SIGNATURE_HEADER = "X-Twilio-Signature"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwilioWebhook:
    """A webhook whose signature checked out: its query and form fields."""

    query: Mapping[str, str]
    fields: dict[str, str]

    def query_value(self, name: str) -> str:
        """A query parameter gateway put in the callback URL; 400 if absent."""
        value = self.query.get(name, "")
        if not value:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"the callback URL has no {name} query parameter"
            )
        return value


async def read_twilio_webhook(
    request: Request, validator: RequestValidator, urls: CallbackUrls, max_body_bytes: int
) -> TwilioWebhook:
    """The checked webhook; a refusal (403, 413, 400) is logged at WARNING with
    the path, the reason and the call id from the callback URL (gateway put it there)."""
    try:
        return await _read_checked(request, validator, urls, max_body_bytes)
    except HTTPException as exc:
        log.warning(
            "webhook rejected; nothing acted on",
            extra={
                "path": request.url.path,
                "status_code": exc.status_code,
                "reason": exc.detail,
                "call_id": request.query_params.get("call_id"),
            },
        )
        raise


async def _read_checked(
    request: Request, validator: RequestValidator, urls: CallbackUrls, max_body_bytes: int
) -> TwilioWebhook:
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing {SIGNATURE_HEADER} header")
    body = await _read_limited_body(request, max_body_bytes)
    try:
        fields = parse_webhook_form(body, request.headers.get("content-type"))
    except MalformedWebhook as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    url = urls.signed_url(request.url.path, request.scope["query_string"].decode("latin-1"))
    if not validator.validate(url, fields, signature):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{SIGNATURE_HEADER} does not match this request (checked against {url})",
        )
    return TwilioWebhook(query=request.query_params, fields=fields)


async def _read_limited_body(request: Request, max_bytes: int) -> bytes:
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, f"webhook body larger than {max_bytes} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "Content-Length is not a number")
        if int(declared) > max_bytes:
            raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)
