"""The two ways gateway publishes an event, by what a lost event would cost."""

from __future__ import annotations

import logging

from fastapi import HTTPException, status

from callbot.common.contracts import CallFallbackSpoken, Event
from callbot.common.messaging import EventPublisher, PublishFailed

log = logging.getLogger(__name__)

# What the callee heard instead of dialog's reply is published for long enough
# to outlast a broker restart: dialog often misses the deadline because the
# broker is away. The callee never waits on it.
FALLBACK_PUBLISH_TIMEOUT_S = 30.0


async def publish_or_503(publisher: EventPublisher, event: Event) -> None:
    """For callbacks whose only effect is the event: answer only after the
    broker confirmed it, else 503 so Twilio's debugger shows the failure."""
    try:
        await publisher.publish(event)
    except PublishFailed as exc:
        log.error("event not confirmed; answering 503", extra={"error": str(exc)})
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the event broker did not confirm the event"
        ) from exc


async def publish_best_effort(
    publisher: EventPublisher, event: Event, *, timeout_s: float, consequence: str
) -> bool:
    """For events that go with something that already happened (a call placed,
    a call answered): the caller's answer must not fail because of them. A
    failure is logged as an error with the whole event, so it can be replayed."""
    try:
        await publisher.publish(event, timeout_s=timeout_s)
    except PublishFailed as exc:
        log.error(
            f"event not confirmed; {consequence}",
            extra={"error": str(exc), "event": event.model_dump(mode="json", by_alias=True)},
        )
        return False
    return True


async def publish_fallback_spoken(publisher: EventPublisher, spoken: CallFallbackSpoken) -> bool:
    """`call.fallback`: the callee heard gateway's fallback line instead of
    dialog's reply (Gather and ConversationRelay alike)."""
    return await publish_best_effort(
        publisher,
        spoken,
        timeout_s=FALLBACK_PUBLISH_TIMEOUT_S,
        consequence="the stored transcript lacks the fallback line the callee heard",
    )
