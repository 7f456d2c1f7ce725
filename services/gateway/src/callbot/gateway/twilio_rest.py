"""The Twilio REST client: placing calls, redirecting live ones, and reading
a call and its recordings back (the reconciler).

The twilio library is synchronous (requests); every call runs in a worker
thread so the event loop keeps serving webhooks meanwhile. `TWILIO_API_BASE_URL`
replaces `https://api.twilio.com` in every request URL, so the emulator (or a
fake in the tests) can stand in for Twilio.

Retries: Twilio's 429 and 5xx answers and connection errors are retried a few
times with jittered exponential backoff; a 4xx never is (the request itself is
wrong). A read timeout is not retried either: Twilio may have placed the call
already, and a retry would ring the callee twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from callbot.gateway.domain.reconciliation import TwilioCallState, TwilioRecording
from callbot.gateway.metrics import TWILIO_REQUESTS

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
# A slow Twilio must not hold an API caller for long: a connect timeout and a
# read timeout per attempt, and a bound on all attempts together.
REQUEST_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 4
MAX_RETRY_TIME_S = 20.0

T = TypeVar("T")

# The twilio library prefixes Twilio's own message with what it was doing.
_LIBRARY_PREFIX = re.compile(r"^Unable to \w+ record: ")


class TwilioApiError(Exception):
    """Twilio answered with an error (after any retries)."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"Twilio answered {status} (code {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class TwilioUnreachable(Exception):
    """No answer from Twilio: connection failed or timed out (after any retries).

    `maybe_done`: the request was sent but no answer came (a read timeout), so
    Twilio may have done it; a refused connection means it surely did not."""

    def __init__(self, message: str, *, maybe_done: bool = False) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


@dataclass(frozen=True)
class PlacedCall:
    sid: str
    status: str


def _whole_seconds(value: str | int | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _recording_url(uri: str | None) -> str | None:
    """The `RecordingUrl` a recording callback would carry, from the resource's `uri`."""
    if not uri:
        return None
    return TWILIO_API + uri.removesuffix(".json")


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio has no type hints
    """Sends every request to `base_url` instead of `https://api.twilio.com`."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self._base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TwilioRestException):
        status: int = exc.status
        return status == 429 or status >= 500
    # ConnectionError covers refused connections and connect timeouts, but not
    # a read timeout (see the module docstring).
    return isinstance(exc, requests.ConnectionError)


class TwilioCalls:
    """The two Twilio operations gateway needs, async and retried."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        max_backoff_s: float = 2.0,
    ) -> None:
        self._http = BaseUrlHttpClient(base_url, REQUEST_TIMEOUT_S)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._max_attempts = max_attempts
        self._max_backoff_s = max_backoff_s

    async def create(self, params: dict[str, Any]) -> PlacedCall:
        """`calls.create(**params)`; raises `TwilioApiError` or `TwilioUnreachable`."""
        call = await self._retried("create", lambda: self._client.calls.create(**params))
        return PlacedCall(sid=call.sid, status=call.status)

    async def redirect(self, call_sid: str, twiml: str) -> None:
        """Replace what a live call is doing with `twiml`."""
        await self._retried("update", lambda: self._client.calls(call_sid).update(twiml=twiml))

    async def fetch(self, call_sid: str) -> TwilioCallState:
        """`GET /Calls/{sid}`: Twilio's view of a call."""
        call = await self._retried("fetch", lambda: self._client.calls(call_sid).fetch())
        return TwilioCallState(
            sid=call.sid,
            status=call.status,
            duration_s=_whole_seconds(call.duration),
            start_time=call.start_time,
            end_time=call.end_time,
            answered_by=call.answered_by,
        )

    async def recordings(self, call_sid: str) -> list[TwilioRecording]:
        """`GET /Calls/{sid}/Recordings`: the call's recordings (one page: a call
        has one recording, or a few)."""
        listed = await self._retried("recordings", lambda: self._recordings_page(call_sid))
        return [
            TwilioRecording(
                sid=recording.sid,
                status=recording.status,
                duration_s=_whole_seconds(recording.duration),
                url=_recording_url(recording.uri),
                started_at=recording.start_time,
            )
            for recording in listed
        ]

    def _recordings_page(self, call_sid: str) -> list[Any]:
        try:
            return list(self._client.calls(call_sid).recordings.list(limit=20))
        except TwilioRestException:
            raise
        except TwilioException as exc:
            # A list page that is not 200 is a bare TwilioException; make it
            # the error every other request raises.
            response = exc.args[1] if len(exc.args) > 1 else None
            status = getattr(response, "status_code", 500)
            raise TwilioRestException(status, f"recordings of {call_sid}", msg=str(exc)) from exc

    def close(self) -> None:
        if self._http.session is not None:
            self._http.session.close()

    async def _retried(self, operation: str, send: Callable[[], T]) -> T:
        def note_retry(state: RetryCallState) -> None:
            TWILIO_REQUESTS.labels(operation, "retried").inc()
            log.warning(
                "Twilio request failed, retrying",
                extra={
                    "operation": operation,
                    "attempt": state.attempt_number,
                    "error": repr(state.outcome.exception() if state.outcome else None),
                },
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._max_attempts) | stop_after_delay(MAX_RETRY_TIME_S),
            wait=wait_random_exponential(multiplier=0.2, max=self._max_backoff_s),
            before_sleep=note_retry,
            reraise=True,
        )
        try:
            result: T = await retrying(asyncio.to_thread, send)
        except TwilioRestException as exc:
            TWILIO_REQUESTS.labels(operation, "error").inc()
            message = _LIBRARY_PREFIX.sub("", str(exc.msg))
            raise TwilioApiError(exc.status, exc.code, message) from exc
        except requests.RequestException as exc:
            TWILIO_REQUESTS.labels(operation, "unreachable").inc()
            raise TwilioUnreachable(
                f"Twilio {operation}: {exc}", maybe_done=isinstance(exc, requests.ReadTimeout)
            ) from exc
        TWILIO_REQUESTS.labels(operation, "ok").inc()
        return result
