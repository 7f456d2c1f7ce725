"""Handlers and the completion outbox against the in-memory store: no I/O."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from pymongo.errors import AutoReconnect

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    AgentSave,
    AgentUpdated,
    CallCompleted,
    CallEvent,
    CallRecordingReady,
    CallSummarized,
    Event,
    utcnow,
)
from callbot.persistence.completion import CallCompletionPublisher
from callbot.persistence.handlers import save_agent, store_call_event
from callbot.persistence.recipient_store import InMemoryRecipientStore
from callbot.persistence.store import InMemoryAgentStore, InMemoryCallStore, RetryWhileUnreachable

if TYPE_CHECKING:
    from conftest import CallScript


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: type[Event]) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]


class Persistence:
    """The handler wired to fakes, as service.py wires it to MongoDB and RabbitMQ."""

    def __init__(self, grace_s: float = 0.0) -> None:
        self.calls = InMemoryCallStore()
        self.recipients = InMemoryRecipientStore()
        self.sink = RecordingSink()
        self.completions = CallCompletionPublisher(
            self.calls,
            self.sink,
            grace_s=grace_s,
            claim_timeout_s=60,
            recipients=self.recipients,
        )
        self.stopping = asyncio.Event()

    async def handle(self, event: CallEvent) -> None:
        await store_call_event(
            event,  # type: ignore[arg-type]  # every CallEvent the tests send is an AnyEvent
            calls=self.calls,
            completions=self.completions,
            events=self.sink,
            durably=RetryWhileUnreachable(self.stopping),
            recipients=self.recipients,
        )

    async def settle(self) -> None:
        """Let scheduled publications run."""
        for _ in range(20):
            await asyncio.sleep(0)


@pytest.fixture
def persistence() -> Persistence:
    return Persistence()


async def test_call_completed_is_published_once_with_the_final_document(
    persistence: Persistence, script: CallScript
) -> None:
    for event in [*script.whole_call(), script.status("completed", 3, 31, duration=42)]:
        await persistence.handle(event)
    await persistence.settle()
    completed = persistence.sink.of_type(CallCompleted)
    assert len(completed) == 1
    call = completed[0].call  # type: ignore[attr-defined]
    assert isinstance(call, CallDocument)
    assert (call.status, call.ended_by, call.duration_s) == ("completed", "system_complete", 42)
    stored = await persistence.calls.get(script.call_id)
    assert stored is not None
    assert stored.completed_published_at is not None


async def test_the_recipient_counts_the_call_before_call_completed_goes_out(
    persistence: Persistence, script: CallScript
) -> None:
    for event in script.whole_call():
        await persistence.handle(event)
    await persistence.settle()
    [completed] = persistence.sink.of_type(CallCompleted)
    call = completed.call  # type: ignore[attr-defined]
    recipient = await persistence.recipients.get(call.agent_id, call.to)
    assert recipient is not None
    assert (recipient.total_calls, recipient.answered_calls) == (1, 1)
    assert recipient.known_data() == call.data_collected
    assert recipient.last_outcome is not None
    assert recipient.last_outcome.ended_by == "system_complete"
    assert recipient.profile == {"name": "Ada"}


async def test_a_summary_remade_from_the_recording_after_completion_reaches_the_recipient(
    persistence: Persistence, script: CallScript
) -> None:
    for event in script.whole_call():
        await persistence.handle(event)
    await persistence.settle()
    [completed] = persistence.sink.of_type(CallCompleted)
    call = completed.call  # type: ignore[attr-defined]
    await persistence.handle(
        CallSummarized(
            call_id=script.call_id,
            summary="Ada gave everything; the recording agrees.",
            model="deterministic",
            sources=("live_turns", "recording_transcript"),
        )
    )
    recipient = await persistence.recipients.get(call.agent_id, call.to)
    assert recipient is not None
    assert recipient.last_summary is not None
    assert recipient.last_summary.summary == "Ada gave everything; the recording agrees."
    assert recipient.last_summary.sources == ("live_turns", "recording_transcript")
    assert recipient.total_calls == 1


async def test_call_completed_waits_a_bounded_time_for_the_summary(script: CallScript) -> None:
    persistence = Persistence()
    persistence.completions = CallCompletionPublisher(
        persistence.calls, persistence.sink, grace_s=0, claim_timeout_s=60, summary_wait_s=5
    )
    for event in script.whole_call():
        await persistence.handle(event)
    await asyncio.sleep(0.05)
    assert persistence.sink.of_type(CallCompleted) == []  # waiting for the summary
    await persistence.handle(
        CallSummarized(call_id=script.call_id, summary="Ada gave everything.", model="m")
    )
    await asyncio.sleep(0.3)
    [completed] = persistence.sink.of_type(CallCompleted)
    assert completed.call.summary == "Ada gave everything."  # type: ignore[attr-defined]


async def test_call_completed_goes_without_a_summary_that_does_not_come(
    script: CallScript,
) -> None:
    persistence = Persistence()
    persistence.completions = CallCompletionPublisher(
        persistence.calls, persistence.sink, grace_s=0, claim_timeout_s=60, summary_wait_s=0.2
    )
    for event in script.whole_call():
        await persistence.handle(event)
    await asyncio.sleep(0.5)
    [completed] = persistence.sink.of_type(CallCompleted)
    assert completed.call.summary is None  # type: ignore[attr-defined]
    await persistence.handle(
        CallSummarized(call_id=script.call_id, summary="Late but kept.", model="m")
    )
    stored = await persistence.calls.get(script.call_id)
    assert stored is not None
    assert stored.summary == "Late but kept."


async def test_the_grace_period_lets_a_late_ending_land_first(script: CallScript) -> None:
    persistence = Persistence(grace_s=0.05)
    await persistence.handle(script.status("completed", 3, 31, duration=42))
    await persistence.handle(script.ending("user_goodbye"))
    await asyncio.sleep(0.1)
    [completed] = persistence.sink.of_type(CallCompleted)
    assert completed.call.ended_by == "user_goodbye"  # type: ignore[attr-defined]


async def test_a_recording_after_completion_is_announced(
    persistence: Persistence, script: CallScript
) -> None:
    await persistence.handle(script.status("completed", 3, 31, duration=42))
    await persistence.settle()
    assert persistence.sink.of_type(CallRecordingReady) == []
    await persistence.handle(script.recording("completed"))
    [ready] = persistence.sink.of_type(CallRecordingReady)
    assert ready.recording.status == "completed"  # type: ignore[attr-defined]


async def test_a_recording_before_completion_travels_in_call_completed(
    persistence: Persistence, script: CallScript
) -> None:
    await persistence.handle(script.recording("completed"))
    await persistence.handle(script.status("completed", 3, 31, duration=42))
    await persistence.settle()
    assert persistence.sink.of_type(CallRecordingReady) == []
    [completed] = persistence.sink.of_type(CallCompleted)
    assert completed.call.recording is not None  # type: ignore[attr-defined]


async def test_the_sweeper_publishes_what_a_crash_left_behind(
    persistence: Persistence, script: CallScript
) -> None:
    # Finalized, but the process died before the scheduled publication ran.
    await persistence.calls.apply(script.status("completed", 3, 31, duration=42))
    later = CallCompletionPublisher(
        persistence.calls,
        persistence.sink,
        grace_s=0,
        claim_timeout_s=60,
        clock=lambda: utcnow() + timedelta(seconds=1),
    )
    assert await later.sweep() == 1
    assert await later.sweep() == 0
    assert len(persistence.sink.of_type(CallCompleted)) == 1


async def test_a_failed_publish_is_retried_by_the_sweeper_after_the_claim_goes_stale(
    persistence: Persistence, script: CallScript
) -> None:
    class BrokerDown(RecordingSink):
        async def publish(self, event: Event) -> None:
            raise ConnectionError("broker unreachable")

    await persistence.calls.apply(script.status("completed", 3, 31, duration=42))
    failing = CallCompletionPublisher(
        persistence.calls, BrokerDown(), grace_s=0, claim_timeout_s=60
    )
    assert await failing.publish(script.call_id, trigger="finalized") is False
    after_timeout = CallCompletionPublisher(
        persistence.calls,
        persistence.sink,
        grace_s=0,
        claim_timeout_s=60,
        clock=lambda: utcnow() + timedelta(seconds=61),
    )
    assert await after_timeout.sweep() == 1
    assert len(persistence.sink.of_type(CallCompleted)) == 1


async def test_closing_cancels_scheduled_publications(script: CallScript) -> None:
    persistence = Persistence(grace_s=60)
    await persistence.handle(script.status("completed", 3, 31, duration=42))
    await persistence.completions.close()
    assert persistence.sink.events == []


async def test_an_unreachable_store_is_retried_until_it_answers() -> None:
    attempts = 0

    async def flaky_write() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise AutoReconnect("connection refused")
        return "stored"

    assert await RetryWhileUnreachable(asyncio.Event())(flaky_write) == "stored"
    assert attempts == 4


async def test_waiting_for_the_store_ends_on_stop_with_the_error() -> None:
    stopping = asyncio.Event()

    async def unreachable() -> None:
        stopping.set()
        raise AutoReconnect("connection refused")

    with pytest.raises(AutoReconnect):
        await RetryWhileUnreachable(stopping)(unreachable)


async def test_a_write_that_succeeds_wakes_the_writes_backing_off() -> None:
    # Backing off for an hour: only the wake-up can finish the first write in time.
    durably = RetryWhileUnreachable(asyncio.Event(), first_backoff_s=3600, max_backoff_s=3600)
    first_attempt_failed = asyncio.Event()

    async def write_during_the_outage() -> str:
        if not first_attempt_failed.is_set():
            first_attempt_failed.set()
            raise AutoReconnect("connection refused")
        return "late write stored"

    async def write_after_the_outage() -> str:
        return "stored"

    waiting = asyncio.create_task(durably(write_during_the_outage))
    await first_attempt_failed.wait()  # resumes once that write is asleep in its back-off

    assert await durably(write_after_the_outage) == "stored"
    assert await asyncio.wait_for(waiting, timeout=10) == "late write stored"


async def test_other_errors_are_not_retried() -> None:
    attempts = 0

    async def buggy() -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("turn")

    with pytest.raises(KeyError):
        await RetryWhileUnreachable(asyncio.Event())(buggy)
    assert attempts == 1


async def test_saving_an_agent_bumps_its_version_and_announces_it() -> None:
    agents, sink = InMemoryAgentStore(), RecordingSink()
    agent = Agent(agent_id="support", name="Support", greeting="Hi!", prompt="Help.")
    first = await save_agent(AgentSave(agent=agent), agents=agents, events=sink)
    second = await save_agent(AgentSave(agent=agent), agents=agents, events=sink)
    assert (first.version, second.version) == (1, 2)
    assert sink.events == [
        AgentUpdated(
            agent_id="support",
            version=1,
            message_id=sink.events[0].message_id,
            occurred_at=sink.events[0].occurred_at,
        ),
        AgentUpdated(
            agent_id="support",
            version=2,
            message_id=sink.events[1].message_id,
            occurred_at=sink.events[1].occurred_at,
        ),
    ]
