"""Retrying a call to an outside service (Twilio, the transcription endpoint)
with exponential backoff, each retry logged with what failed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)


def with_backoff(
    *,
    retryable: Callable[[BaseException], bool],
    attempts: int,
    first_backoff_s: float,
    max_backoff_s: float,
    what: str,
) -> AsyncRetrying:
    """Up to `attempts` tries of what `retryable` says may pass, pausing
    `first_backoff_s` then twice as long each time (at most `max_backoff_s`);
    the last error is raised."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            f"{what} failed; retrying",
            extra={
                "attempt": state.attempt_number,
                "retry_in_s": round(state.upcoming_sleep, 2),
                "error": str(error),
            },
        )

    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_backoff_s, max=max_backoff_s),
        before_sleep=log_retry,
        reraise=True,
    )
