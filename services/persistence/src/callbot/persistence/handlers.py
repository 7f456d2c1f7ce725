"""What persistence does with each message. Plain async functions of contract
models; the stores, the publisher and the retry policy come in as arguments
(wired in `service.py`), so tests run them against the in-memory fakes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from callbot.common.contracts import (
    AgentSave,
    AgentSaved,
    AgentUpdated,
    AnyEvent,
    CallEvent,
    CallRecordingArchived,
    CallRecordingUpdated,
    CallStatusChanged,
    CallSummarized,
    utcnow,
)
from callbot.persistence.completion import EventSink
from callbot.persistence.domain.completion import recording_missed_completion, recording_ready_event
from callbot.persistence.domain.projection import PROJECTED_EVENTS
from callbot.persistence.domain.status import is_terminal
from callbot.persistence.metrics import PUBLISH_TO_WRITE_SECONDS, WRITE_SECONDS, WRITES
from callbot.persistence.recipient_store import RecipientStore
from callbot.persistence.store import AgentStore, CallStore, Clock, RetryWhileUnreachable

log = logging.getLogger(__name__)

# Called once an event's write is durable (benchmarks measure lag with it).
StoredHook = Callable[[CallEvent], None]


class CompletionScheduler(Protocol):
    def schedule(self, call_id: str) -> None: ...


async def store_call_event(
    event: AnyEvent,
    *,
    calls: CallStore,
    completions: CompletionScheduler,
    events: EventSink,
    durably: RetryWhileUnreachable,
    recipients: RecipientStore | None = None,
    on_stored: StoredHook | None = None,
) -> None:
    """Make the event's effect on its call durable, then start what follows:
    `call.completed` after a terminal status, `call.recording_ready` for a
    recording that came after it, the recipient's `last_summary` for a summary
    that came after the call was counted. Returning means the message may be acked."""
    if not isinstance(event, PROJECTED_EVENTS):
        raise TypeError(f"{event.type} reached persistence's queue; it stores only call events")
    started = time.perf_counter()
    await durably(lambda: calls.apply(event))
    WRITE_SECONDS.labels(event.type).observe(time.perf_counter() - started)
    PUBLISH_TO_WRITE_SECONDS.observe((utcnow() - event.occurred_at).total_seconds())
    WRITES.labels(event.type).inc()
    if on_stored is not None:
        on_stored(event)

    if isinstance(event, CallStatusChanged) and is_terminal(event.status):
        completions.schedule(event.call_id)
    elif isinstance(event, CallRecordingUpdated | CallRecordingArchived):
        call = await durably(lambda: calls.get(event.call_id))
        if call is not None and recording_missed_completion(call):
            await events.publish(recording_ready_event(call))
            log.info(
                "recording or its archive arrived after call.completed; "
                "call.recording_ready published",
                extra={"event_type": event.type},
            )
    elif isinstance(event, CallSummarized) and recipients is not None:
        # Counted calls only: a call counted later carries its summary itself
        # (the count reads the call after claiming it, so none is missed).
        call = await durably(lambda: calls.get(event.call_id))
        if call is not None and call.completed_claimed_at is not None:
            await durably(lambda: recipients.record_summary(call))


async def save_agent(
    request: AgentSave, *, agents: AgentStore, events: EventSink, clock: Clock = utcnow
) -> AgentSaved:
    """Write the agent with its version bumped, then tell dialog to drop its copy.
    A MongoDB outage fails the RPC (the caller has a deadline) rather than wait."""
    agent = request.agent
    version = await agents.save(agent, now=clock())
    await events.publish(AgentUpdated(agent_id=agent.agent_id, version=version))
    log.info("agent saved", extra={"agent_id": agent.agent_id, "version": version})
    return AgentSaved(agent_id=agent.agent_id, version=version)
