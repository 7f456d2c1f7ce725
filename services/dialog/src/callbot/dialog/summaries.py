"""Summarizing finished calls: dialog owns the model, persistence stores the result.

When a terminal `call.status` reaches the replica that held the call's
session, it makes a summary in the background and publishes `call.summarized`.
With an LLM: one short chat completion with its own budget
(`SUMMARY_TIMEOUT_S`); a slow or failing model gets the deterministic summary
instead, so a call never goes without one. Without an LLM: the deterministic
summary at once. persistence waits a bounded time for it before publishing
`call.completed`; a later one fills in the call document.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from callbot.common.contracts import CallSummarized, Event
from callbot.common.logs import log_context
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.summary import DETERMINISTIC, deterministic_summary, summary_messages

log = logging.getLogger(__name__)


class SummaryModel(Protocol):
    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        """(summary, model name); raises on an error or past `timeout_s`."""
        ...


class EventSink(Protocol):
    async def publish(self, event: Event, *, timeout_s: float = ...) -> None: ...


class CallSummarizer:
    def __init__(self, model: SummaryModel | None, events: EventSink, *, timeout_s: float) -> None:
        self._model = model
        self._events = events
        self._timeout_s = timeout_s
        self._running: set[asyncio.Task[None]] = set()

    def summarize(self, session: Session) -> None:
        """Summarize the finished call in the background and publish `call.summarized`."""
        task = asyncio.create_task(self._summarize(session), name=f"summary:{session.call_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _summarize(self, session: Session) -> None:
        with log_context(call_id=session.call_id):
            try:
                summary, model = await self._make(session)
                event = CallSummarized(call_id=session.call_id, summary=summary, model=model)
                await self._events.publish(event)
                log.info("call.summarized published", extra={"model": model})
            except Exception:
                log.exception("call summary not published; the call keeps no summary")

    async def _make(self, session: Session) -> tuple[str, str]:
        turns, data = list(session.turns), dict(session.data_collected)
        if self._model is not None:
            try:
                messages = summary_messages(turns, data, session.ended_by)
                return await self._model.summarize(messages, self._timeout_s)
            except Exception as exc:
                log.warning(
                    "summary model failed; the deterministic summary is published instead",
                    extra={"error": repr(exc), "timeout_s": self._timeout_s},
                )
        missing = [field.name for field in session.missing_fields(data)]
        return deterministic_summary(turns, data, session.ended_by, missing), DETERMINISTIC

    async def close(self) -> None:
        """Give running summaries a moment, then cancel them (a summary is not
        essential: the call document keeps its transcript)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=2.0)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
