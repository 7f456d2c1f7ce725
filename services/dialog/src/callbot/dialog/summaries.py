"""Summarizing finished calls: dialog owns the model, persistence stores the result.

When a terminal `call.status` reaches the replica that held the call's
session, it makes a summary in the background and publishes `call.summarized`.
With an LLM: one short chat completion with its own budget
(`SUMMARY_TIMEOUT_S`); a slow or failing model gets the deterministic summary
instead, so a call never goes without one. Without an LLM: the deterministic
summary at once. persistence waits a bounded time for it before publishing
`call.completed`; a later one fills in the call document.

When the media worker announces the recording's transcript
(`call.recording_transcribed`, on a queue every replica shares), the
summary is remade from the stored call's live turns and that transcript and
published with both `sources`; persistence ranks it above the live turns'
alone. It is made once per transcript: a redelivered or duplicated event
finds the stored summary already made from it and publishes nothing. A
transcription that fails for good announces no transcript, so the summary
stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from callbot.common.agents import Agent
from callbot.common.calls import (
    LIVE_TURNS,
    RECORDING_TRANSCRIPT,
    CallDocument,
    EndedBy,
    SummarySource,
    Turn,
)
from callbot.common.contracts import CallRecordingTranscribed, CallSummarized, Event
from callbot.common.logs import log_context
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.summary import (
    DETERMINISTIC,
    RecordingEvidence,
    deterministic_summary,
    summary_messages,
)

log = logging.getLogger(__name__)


class SummaryModel(Protocol):
    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        """(summary, model name); raises on an error or past `timeout_s`."""
        ...


class EventSink(Protocol):
    async def publish(self, event: Event, *, timeout_s: float = ...) -> None: ...


class StoredCalls(Protocol):
    """dialog's reads a remade summary needs (`DialogStore` provides them)."""

    async def load_call(self, call_id: str) -> CallDocument | None: ...

    async def load_agent(self, agent_id: str) -> Agent | None: ...


@dataclass(frozen=True)
class CallFacts:
    """What a summary is made from."""

    turns: list[Turn]
    data: dict[str, Any]
    ended_by: EndedBy | None
    missing: list[str]
    recording: RecordingEvidence | None = None

    @property
    def sources(self) -> tuple[SummarySource, ...]:
        return (LIVE_TURNS,) if self.recording is None else (LIVE_TURNS, RECORDING_TRANSCRIPT)


def summarized_from(call: CallDocument, event: CallRecordingTranscribed) -> bool:
    """The stored summary was made with this transcript (or a later one): it is
    ranked as the recording's, and made after this transcript was."""
    return (
        RECORDING_TRANSCRIPT in call.summary_sources
        and call.summarized_at is not None
        and call.summarized_at >= event.transcript.transcribed_at
    )


class CallSummarizer:
    def __init__(
        self,
        model: SummaryModel | None,
        events: EventSink,
        *,
        timeout_s: float,
        calls: StoredCalls | None = None,
    ) -> None:
        self._model = model
        self._events = events
        self._timeout_s = timeout_s
        self._calls = calls
        self._running: set[asyncio.Task[None]] = set()

    def summarize(self, session: Session) -> None:
        """Summarize the finished call in the background and publish `call.summarized`."""
        task = asyncio.create_task(self._summarize(session), name=f"summary:{session.call_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _summarize(self, session: Session) -> None:
        with log_context(call_id=session.call_id):
            try:
                data = dict(session.data_collected)
                missing = [field.name for field in session.missing_fields(data)]
                facts = CallFacts(list(session.turns), data, session.ended_by, missing)
                await self._publish(session.call_id, facts)
            except Exception:
                log.exception("call summary not published; the call keeps no summary")

    async def summarize_recording(self, event: CallRecordingTranscribed) -> None:
        """Remake the call's summary with the recording's transcript and publish
        it; raises when it could not (the event is redelivered)."""
        if self._calls is None:
            raise RuntimeError("the summarizer was built without the stored calls to read")
        call = await self._calls.load_call(event.call_id)
        if call is None or not call.turns:
            log.info("no stored conversation for this transcript (erased?); no summary remade")
            return
        if summarized_from(call, event):
            log.info("the summary already used this transcript; not remade")
            return
        agent = await self._calls.load_agent(call.agent_id) if call.agent_id else None
        fields = agent.data_to_fill if agent is not None else ()
        missing = [field.name for field in fields if field.name not in call.data_collected]
        recording = RecordingEvidence(event.transcript, event.data_review)
        facts = CallFacts(
            list(call.turns), dict(call.data_collected), call.ended_by, missing, recording
        )
        await self._publish(call.call_id, facts)

    async def _publish(self, call_id: str, facts: CallFacts) -> None:
        summary, model = await self._make(facts)
        event = CallSummarized(call_id=call_id, summary=summary, model=model, sources=facts.sources)
        await self._events.publish(event)
        log.info("call.summarized published", extra={"model": model, "sources": facts.sources})

    async def _make(self, facts: CallFacts) -> tuple[str, str]:
        if self._model is not None:
            try:
                messages = summary_messages(
                    facts.turns, facts.data, facts.ended_by, facts.recording
                )
                return await self._model.summarize(messages, self._timeout_s)
            except Exception as exc:
                log.warning(
                    "summary model failed; the deterministic summary is published instead",
                    extra={"error": repr(exc), "timeout_s": self._timeout_s},
                )
        summary = deterministic_summary(
            facts.turns, facts.data, facts.ended_by, facts.missing, facts.recording
        )
        return summary, DETERMINISTIC

    async def close(self) -> None:
        """Give running summaries a moment, then cancel them (a summary is not
        essential: the call document keeps its transcript)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=2.0)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
