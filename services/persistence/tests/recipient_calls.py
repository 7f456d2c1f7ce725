"""Finished calls of one recipient, for the recipient projection's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callbot.common.calls import CallbackRequest, CallDocument, EndedBy

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
) -> CallDocument:
    """Call number `n`, started `minutes` (default `n`) minutes after START."""
    started = START + timedelta(minutes=n if minutes is None else minutes)
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
    )


def history() -> list[CallDocument]:
    """Six calls: data corrected over time, one unanswered, a same-minute tie,
    profile updates, an opt-out, and a call after it (an override); from the
    fourth on, the agent also asks for a phone number nobody gives."""
    asks_phone = ("name", "email", "phone")
    return [
        finished_call(1, data={"name": "Ada", "email": None}, recipient={"tier": "gold"}),
        finished_call(2, answered=False),
        finished_call(3, data={"email": "ada@example.com"}, complete=True),
        finished_call(
            4,
            data={"name": "Ada Lovelace"},
            minutes=3,
            recipient={"tier": "silver"},
            fields=asks_phone,
        ),
        finished_call(5, ended_by="opt_out", data={"name": "A. Lovelace"}, fields=asks_phone),
        finished_call(
            6,
            ended_by="opt_out",
            callback=CallbackRequest(when=None, said="call me next week"),
            fields=asks_phone,
        ),
    ]
