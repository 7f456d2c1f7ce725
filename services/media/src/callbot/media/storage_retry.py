"""Waiting out an object-storage outage: retry until it answers, or until the service stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from callbot.common.object_storage import ObjectStorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryWhileStorageAway:
    """Runs an object-storage operation until storage answers, backing off
    exponentially (capped at `max_backoff_s`), with no overall limit: the
    message in hand stays unacknowledged and does not count against its
    delivery limit. Once `stopping` is set the last error is raised, so the
    message is requeued for another worker. Other errors are raised at once."""

    def __init__(
        self, stopping: asyncio.Event, *, first_backoff_s: float = 0.2, max_backoff_s: float = 5.0
    ) -> None:
        self._stopping = stopping
        self._wait = wait_exponential(multiplier=first_backoff_s, max=max_backoff_s)

    async def __call__(self, operation: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ObjectStorageUnavailable),
            wait=self._wait,
            stop=lambda _state: self._stopping.is_set(),
            before_sleep=_log_unavailable,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises the last error")


def _log_unavailable(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "object storage unreachable; retrying, the recording event stays unacknowledged",
        extra={
            "attempt": state.attempt_number,
            "retry_in_s": round(state.upcoming_sleep, 2),
            "error": str(error),
        },
    )
