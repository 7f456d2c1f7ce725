"""Publishing `call.completed` exactly once per call, in effect.

The finalized call document is its own outbox: a terminal status makes it
`status ∈ TERMINAL, completed_published_at = None`, and the status message is
acknowledged as soon as that write is durable. Publication follows in three
steps:

1. claim: one atomic update sets `completed_claimed_at` and returns the
   document; duplicate terminal callbacks, replicas and the sweeper race for
   it and exactly one wins;
2. count the call for its recipient (the `recipients` collection, idempotent),
   publish `call.completed` with the document as claimed, and wait for the
   broker's confirm;
3. mark `completed_published_at`.

A crash or a failed publish between 1 and 3 leaves a claim that goes stale
after `claim_timeout_s`; the sweeper (every `COMPLETED_SWEEP_INTERVAL_S`, and
at start-up) finds such calls and publishes again. Subscribers may therefore
see a duplicate, never a gap; `call_id` is their idempotency key.

Why a summary wait: dialog summarizes an answered call once it hears its
terminal status (`call.summarized`). After the grace period, publication waits
up to `summary_wait_s` more for that summary to be stored, so `call.completed`
usually carries it; a slower summary (the model is slow or failing) does not
hold the event back longer: it is published without, and the summary fills in
the call document when `call.summarized` comes.

Why a grace period: Twilio's status callback (through gateway) and dialog's
`call.ending` and last `call.turn` race on different publishers, and the
status often wins. Publication is scheduled `grace_s` after the terminal
status, so the events still in flight land first and `call.completed` carries
dialog's `ended_by` rather than the `callee_hangup` guess. Once the claim is
taken the document's `ended_by` is frozen (the projection enforces it), so the
event and the document never disagree; a turn that lands even later is still
stored, and a later recording is announced with `call.recording_ready`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Literal, Protocol

from callbot.common.contracts import Event, utcnow
from callbot.common.logs import log_context
from callbot.persistence.domain.completion import awaits_summary, call_completed_event
from callbot.persistence.metrics import COMPLETION_FAILURES, COMPLETIONS_PUBLISHED
from callbot.persistence.recipient_store import RecipientStore
from callbot.persistence.store import CallStore, Clock

log = logging.getLogger(__name__)

Trigger = Literal["finalized", "sweeper"]

SWEEP_BATCH = 100
SUMMARY_POLL_S = 0.1


class EventSink(Protocol):
    """Where events go: `EventPublisher` (broker-confirmed) or a test fake."""

    async def publish(self, event: Event) -> None: ...


class CallCompletionPublisher:
    def __init__(
        self,
        calls: CallStore,
        events: EventSink,
        *,
        grace_s: float,
        claim_timeout_s: float,
        clock: Clock = utcnow,
        recipients: RecipientStore | None = None,
        summary_wait_s: float = 0.0,
    ) -> None:
        self._summary_wait_s = summary_wait_s
        self._calls = calls
        self._recipients = recipients
        self._events = events
        self._grace_s = grace_s
        self._claim_timeout = timedelta(seconds=claim_timeout_s)
        self._clock = clock
        self._scheduled: set[asyncio.Task[None]] = set()

    def schedule(self, call_id: str) -> None:
        """Publish `call.completed` for a call just finalized, after the grace period."""
        task = asyncio.create_task(self._publish_after_grace(call_id), name=f"completed:{call_id}")
        self._scheduled.add(task)
        task.add_done_callback(self._scheduled.discard)

    async def _publish_after_grace(self, call_id: str) -> None:
        await asyncio.sleep(self._grace_s)
        await self._wait_for_summary(call_id)
        await self.publish(call_id, trigger="finalized")

    async def _wait_for_summary(self, call_id: str) -> None:
        """Until the call's summary is stored, for at most `summary_wait_s`."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._summary_wait_s
        while loop.time() < give_up_at:
            try:
                call = await self._calls.get(call_id)
            except Exception:
                return  # publish() meets the same error, logs it and leaves it to the sweeper
            if call is None or not awaits_summary(call):
                return
            await asyncio.sleep(SUMMARY_POLL_S)
        log.info(
            "no summary within the wait; call.completed goes without, call.summarized fills it in",
            extra={"summary_wait_s": self._summary_wait_s},
        )

    async def publish(self, call_id: str, *, trigger: Trigger) -> bool:
        """Claim, publish, mark. False when there was nothing to do (already
        published, or another publisher holds a fresh claim) or it failed; a
        failure is logged and left to the sweeper."""
        now = self._clock()
        try:
            call = await self._calls.claim_completion(
                call_id, now=now, stale_before=now - self._claim_timeout
            )
            if call is None:
                return False
            if self._recipients is not None:
                await self._recipients.record_call(call)
            await self._events.publish(call_completed_event(call))
            await self._calls.mark_completion_published(call_id, now=self._clock())
        except Exception:
            COMPLETION_FAILURES.inc()
            log.exception(
                "call.completed not published; the sweeper retries once the claim is stale",
                extra={"trigger": trigger, "claim_timeout_s": self._claim_timeout.total_seconds()},
            )
            return False
        COMPLETIONS_PUBLISHED.labels(trigger).inc()
        log.info(
            "call.completed published",
            extra={"trigger": trigger, "status": call.status, "ended_by": call.ended_by},
        )
        return True

    async def sweep(self) -> int:
        """Publish every finalized call whose `call.completed` is overdue; returns how many."""
        published = 0
        while True:
            now = self._clock()
            due = await self._calls.completions_due(
                quiet_since=now - timedelta(seconds=self._grace_s),
                stale_before=now - self._claim_timeout,
                limit=SWEEP_BATCH,
            )
            published_now = 0
            for call_id in due:
                with log_context(call_id=call_id):
                    published_now += await self.publish(call_id, trigger="sweeper")
            published += published_now
            # A full batch may hide more; a batch that made no progress means
            # publishing fails right now, and the next sweep will try again.
            if len(due) < SWEEP_BATCH or not published_now:
                return published

    async def run_sweeper(self, interval_s: float) -> None:
        """Sweep now (a crash may have left work behind), then every `interval_s`."""
        while True:
            try:
                republished = await self.sweep()
            except Exception:
                log.exception("completion sweep failed; next try in %.1fs", interval_s)
            else:
                if republished:
                    log.warning(
                        "sweeper published overdue call.completed events",
                        extra={"count": republished},
                    )
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        """Drop scheduled publications: their claims were never taken, so the
        sweeper of this or another replica publishes them."""
        for task in self._scheduled:
            task.cancel()
        await asyncio.gather(*self._scheduled, return_exceptions=True)
