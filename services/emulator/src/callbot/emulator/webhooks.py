"""Signed webhook requests, sent the way Twilio sends them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from callbot.emulator.records import WebhookKind, WebhookRecord

# Twilio waits this long for a webhook answer before giving up.
TWILIO_WEBHOOK_TIMEOUT_S = 15.0
# Twilio's error codes for webhooks that fail.
HTTP_RETRIEVAL_FAILURE = 11200
HTTP_CONNECTION_FAILURE = 11205
CALLBACK_ERROR = 15003


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with form ``params``."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def request_target(url: str, method: str, params: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The URL Twilio requests and the form it posts.

    A GET carries the parameters in its query string and signs that whole URL with no
    form; a POST signs the URL as given plus the form parameters.
    """
    if method == "GET" and params:
        separator = "&" if "?" in url else "?"
        return url + separator + urlencode(params), {}
    return url, dict(params)


@dataclass(frozen=True)
class WebhookFailure:
    code: int
    message: str


DroppableCallback = Literal["status", "recording", "amd"]
DROPPED = "dropped by the emulator (POST /_control/callbacks)"


class WebhookSender:
    """Sends signed webhooks; each is recorded in ``into`` as soon as it leaves.
    Callbacks of a kind in ``dropped`` are recorded but never sent."""

    def __init__(self, auth_token: str, client: httpx.AsyncClient) -> None:
        self.auth_token = auth_token
        self._client = client
        self.dropped: frozenset[str] = frozenset()

    async def fetch_media(self, url: str) -> FetchedMedia | WebhookFailure:
        return await fetch_media(self._client, url)

    async def send(
        self,
        into: list[WebhookRecord],
        kind: WebhookKind,
        url: str,
        method: str,
        params: Mapping[str, str],
        *,
        at_s: float,
    ) -> tuple[WebhookRecord, WebhookFailure | None]:
        target, form = request_target(url, method, params)
        signature = twilio_signature(self.auth_token, target, form)
        record = WebhookRecord(
            kind=kind,
            url=target,
            method=method,
            params=dict(params),
            signature=signature,
            at_s=at_s,
        )
        into.append(record)
        if kind in self.dropped:
            record.error = DROPPED
            return record, None
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        started = time.perf_counter()
        failure: WebhookFailure | None = None
        try:
            if method == "GET":
                response = await self._client.get(target, headers=headers)
            else:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                response = await self._client.post(target, content=urlencode(form), headers=headers)
        except asyncio.CancelledError:
            # The call moved on (an API update, a hang-up) while this request was in flight.
            record.error = "abandoned: the call moved on before the answer came"
            raise
        except httpx.TimeoutException:
            record.error = f"no answer within {self._client.timeout.read} s"
            failure = WebhookFailure(HTTP_CONNECTION_FAILURE, f"{method} {target}: {record.error}")
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            failure = WebhookFailure(HTTP_CONNECTION_FAILURE, f"{method} {target}: {record.error}")
        else:
            record.status_code = response.status_code
            record.response_body = response.text
            if response.is_error:
                record.error = f"HTTP {response.status_code}"
                failure = WebhookFailure(
                    HTTP_RETRIEVAL_FAILURE,
                    f"{method} {target} answered HTTP {response.status_code}",
                )
        finally:
            record.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return record, failure


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    content_type: str | None


async def fetch_media(client: httpx.AsyncClient, url: str) -> FetchedMedia | WebhookFailure:
    """What Twilio does for `<Play>`: a plain GET of the audio (unsigned: the URL
    itself must grant access, e.g. a presigned one)."""
    try:
        response = await client.get(url, headers={"User-Agent": "TwilioProxy/1.1"})
    except httpx.HTTPError as exc:
        return WebhookFailure(HTTP_CONNECTION_FAILURE, f"GET {url}: {type(exc).__name__}: {exc}")
    if response.is_error:
        return WebhookFailure(
            HTTP_RETRIEVAL_FAILURE, f"GET {url} answered HTTP {response.status_code}"
        )
    return FetchedMedia(response.content, response.headers.get("content-type"))
