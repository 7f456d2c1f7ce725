"""Finished calls of one recipient, for the recipient projection's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callbot.common.calls import (
    LIVE_TURNS,
    RECORDING_TRANSCRIPT,
    CallbackRequest,
    CallDocument,
    EndedBy,
    SummarySource,
)

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

AGENT = "demo"
TO = "+15550001111"


def finished_call(
    n: int,
    *,
    data: dict[str, Any] | None = None,
    ended_by: EndedBy = "system_complete",
    answered: bool = True,
    agent_id: str = AGENT,
    minutes: int | None = None,
    recipient: dict[str, Any] | None = None,
    complete: bool = False,
    callback: CallbackRequest | None = None,
    fields: tuple[str, ...] = ("name", "email"),
    summary: str | None = None,
    from_recording: bool = False,
) -> CallDocument:
    """Call number `n`, started `minutes` (default `n`) minutes after START."""
    started = START + timedelta(minutes=n if minutes is None else minutes)
    sources: tuple[SummarySource, ...] = (
        (LIVE_TURNS, RECORDING_TRANSCRIPT) if from_recording else (LIVE_TURNS,)
    )
    return CallDocument(
        call_id=f"call-{n:03d}",
        call_sid=f"CA{n:032d}",
        agent_id=agent_id,
        data_fields=fields,
        to=TO,
        status="completed" if answered else "no-answer",
        answered_by="human" if answered else None,
        answered_at=started + timedelta(seconds=5) if answered else None,
        ended_by=ended_by if answered else "no-answer",
        created_at=started,
        ended_at=started + timedelta(seconds=40),
        data_collected=data or {},
        data_complete=complete,
        recipient=recipient or {},
        callback_request=callback,
        summary=summary,
        summary_model="deterministic" if summary else None,
        # A summary from the recording is made minutes after the call, the live one at its end.
        summarized_at=started + timedelta(minutes=10 if from_recording else 1) if summary else None,
        summary_sources=sources if summary else (),
    )


def history() -> list[CallDocument]:
    """Six calls: data corrected over time, one unanswered, a same-minute tie,
    profile updates, an opt-out, and a call after it (an override); from the
    fourth on, the agent also asks for a phone number nobody gives."""
    asks_phone = ("name", "email", "phone")
    return [
        finished_call(1, data={"name": "Ada", "email": None}, recipient={"tier": "gold"}),
        finished_call(2, answered=False),
        finished_call(
            3, data={"email": "ada@example.com"}, complete=True, summary="Ada gave her email."
        ),
        finished_call(
            4,
            data={"name": "Ada Lovelace"},
            minutes=3,
            recipient={"tier": "silver"},
            fields=asks_phone,
        ),
        finished_call(
            5,
            ended_by="opt_out",
            data={"name": "A. Lovelace"},
            fields=asks_phone,
            summary="Ada opted out; the recording confirms it.",
            from_recording=True,
        ),
        finished_call(
            6,
            ended_by="opt_out",
            callback=CallbackRequest(when=None, said="call me next week"),
            fields=asks_phone,
        ),
    ]
