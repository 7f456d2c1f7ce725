"""The reconciler: calls stuck in a non-final state, looked up at Twilio.

Every `RECONCILE_INTERVAL_S`, the replica holding the lease
(`reconciler_lease`) reads the quietest non-final calls, keeps those
non-final longer than Twilio allows (`domain.reconciliation.is_overdue`),
asks Twilio for each (`GET /Calls/{sid}` and its recordings, paced to
`RECONCILE_TWILIO_RPS`) and publishes what Twilio says as the events a
callback would have carried. persistence applies them like any callback and
publishes the one `call.completed`. A failure (Twilio or the broker away)
leaves the call non-final, and the next sweep tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Protocol

from callbot.common.agents import Agent
from callbot.common.calls import TERMINAL_STATUSES, CallDocument
from callbot.common.contracts import CallRecordingUpdated, Event, utcnow
from callbot.common.logs import log_context
from callbot.common.messaging import PublishFailed
from callbot.gateway.domain.outbound_call import RING_TIMEOUT_S
from callbot.gateway.domain.reconciliation import (
    LONGEST_CALL_S,
    NON_FINAL_STATUSES,
    Outcome,
    TwilioCallState,
    TwilioRecording,
    is_overdue,
    reconciling_events,
)
from callbot.gateway.metrics import CALLS_RECONCILED, RECORDINGS_RECONCILED
from callbot.gateway.reconciler_lease import ExclusiveQueueLease
from callbot.gateway.resources import GatewayResources
from callbot.gateway.twilio_rest import TwilioApiError, TwilioUnreachable

log = logging.getLogger(__name__)

TWILIO_NOT_FOUND = 404
# How long gateway's shutdown waits for a sweep in progress.
STOP_WAIT_S = 5.0


class CallReader(Protocol):
    async def quiet_non_final_calls(
        self, statuses: Sequence[str], *, quiet_since: datetime, limit: int
    ) -> list[CallDocument]: ...

    async def agent(self, agent_id: str) -> Agent | None: ...


class TwilioLookup(Protocol):
    async def fetch(self, call_sid: str) -> TwilioCallState: ...

    async def recordings(self, call_sid: str) -> list[TwilioRecording]: ...


class EventSink(Protocol):
    async def publish(self, event: Event) -> None: ...


class Lease(Protocol):
    async def held(self) -> bool: ...

    async def release(self) -> None: ...


class Pacer:
    """At most `per_second` Twilio requests per second from this replica."""

    def __init__(self, per_second: float) -> None:
        self._gap_s = 1.0 / per_second
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self._gap_s


class Reconciler:
    def __init__(
        self,
        calls: CallReader,
        twilio: TwilioLookup,
        events: EventSink,
        *,
        margin_s: float,
        batch: int,
        twilio_rps: float,
        ring_timeout_s: float = RING_TIMEOUT_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._calls = calls
        self._twilio = twilio
        self._events = events
        self._margin_s = margin_s
        self._batch = batch
        self._pacer = Pacer(twilio_rps)
        self._ring_timeout_s = ring_timeout_s
        self._clock = clock

    async def sweep(self) -> Counter[Outcome]:
        """Look up every overdue call of one batch; the outcomes, counted."""
        now = self._clock()
        candidates = await self._calls.quiet_non_final_calls(
            NON_FINAL_STATUSES,
            quiet_since=now - timedelta(seconds=self._margin_s),
            limit=self._batch,
        )
        limits: dict[str | None, float] = {}
        outcomes: Counter[Outcome] = Counter()
        for call in candidates:
            if call.agent_id not in limits:
                limits[call.agent_id] = await self._max_duration_s(call.agent_id)
            overdue = is_overdue(
                call,
                now,
                ring_timeout_s=self._ring_timeout_s,
                max_duration_s=limits[call.agent_id],
                margin_s=self._margin_s,
            )
            if overdue:
                outcome = await self.reconcile(call)
                CALLS_RECONCILED.labels(outcome).inc()
                outcomes[outcome] += 1
        return outcomes

    async def reconcile(self, call: CallDocument) -> Outcome:
        """Bring one call to what Twilio says about it."""
        assert call.call_sid is not None, "is_overdue keeps only calls with a CallSid"
        with log_context(call_id=call.call_id):
            try:
                await self._pacer.wait()
                state = await self._twilio.fetch(call.call_sid)
                if state.status not in TERMINAL_STATUSES:
                    log.info(
                        "reconciler: Twilio says the call is still going; looked at again later",
                        extra={"call_sid": call.call_sid, "twilio_status": state.status},
                    )
                    return "still_active"
                await self._pacer.wait()
                recordings = await self._twilio.recordings(call.call_sid)
            except TwilioApiError as exc:
                if exc.status == TWILIO_NOT_FOUND:
                    log.warning(
                        "reconciler: Twilio does not know this call; it stays as stored",
                        extra={"call_sid": call.call_sid, "error": str(exc)},
                    )
                    return "not_found"
                log.warning("reconciler: Twilio refused the lookup; retried next sweep",
                            extra={"error": str(exc)})  # fmt: skip
                return "failed"
            except TwilioUnreachable as exc:
                log.warning("reconciler: Twilio unreachable; retried next sweep",
                            extra={"error": str(exc)})  # fmt: skip
                return "failed"
            events = reconciling_events(call, state, recordings)
            if not events:
                return "still_active"
            try:
                for event in events:
                    await self._events.publish(event)
            except PublishFailed as exc:
                log.warning("reconciler: event not confirmed; retried next sweep",
                            extra={"error": str(exc)})  # fmt: skip
                return "failed"
            found = sum(1 for event in events if isinstance(event, CallRecordingUpdated))
            RECORDINGS_RECONCILED.inc(found)
            log.info(
                "reconciler: call finalized from Twilio's record",
                extra={
                    "call_sid": call.call_sid,
                    "stored_status": call.status,
                    "twilio_status": state.status,
                    "duration_s": state.duration_s,
                    "recordings_published": found,
                },
            )
            return "finalized"

    async def _max_duration_s(self, agent_id: str | None) -> float:
        agent = None if agent_id is None else await self._calls.agent(agent_id)
        return LONGEST_CALL_S if agent is None else agent.max_duration_s


async def run_reconciler(
    reconciler: Reconciler, lease: Lease, interval_s: float, stop: asyncio.Event
) -> None:
    """Sweep every `interval_s` while this replica holds the lease, until `stop`."""
    try:
        while not stop.is_set():
            try:
                if await lease.held():
                    outcomes = await reconciler.sweep()
                    if outcomes:
                        log.info("reconciler sweep done", extra={"outcomes": dict(outcomes)})
            except Exception:
                # MongoDB away, a broken document: the next sweep tries again.
                log.exception("reconciler sweep failed; next sweep in %s s", interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    finally:
        await lease.release()


@asynccontextmanager
async def reconciler_running(resources: GatewayResources) -> AsyncIterator[None]:
    """The reconciler as a task of the gateway's lifespan (off when
    `RECONCILE_INTERVAL_S` is 0)."""
    settings = resources.settings
    if settings.reconcile_interval_s == 0:
        yield
        return
    reconciler = Reconciler(
        resources.calls,
        resources.twilio,
        resources.publisher,
        margin_s=settings.reconcile_margin_s,
        batch=settings.reconcile_batch,
        twilio_rps=settings.reconcile_twilio_rps,
    )
    lease = ExclusiveQueueLease(
        settings,
        f"{resources.topology.namespace}.reconciler.lease",
        f"gateway-{os.getpid()}",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_reconciler(reconciler, lease, settings.reconcile_interval_s, stop), name="reconciler"
    )
    try:
        yield
    finally:
        # Let a sweep in progress finish its call (never half a connection
        # open); one stuck on Twilio or MongoDB is cancelled.
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_S)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
