"""Earlier calls between the same agent and number, cut down for the prompt.

Each earlier call contributes its summary when it has one, else its last few
turns; the whole context is capped so a long history cannot crowd out the
live conversation (or the model's context window).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callbot.common.calls import CallDocument

TURNS_PER_CALL = 6
MAX_LINE_CHARS = 300
MAX_SUMMARY_CHARS = 600
CHARS_PER_TOKEN = 4  # the usual estimate for English text
MAX_CONTEXT_CHARS = 4000


@dataclass(frozen=True)
class PastConversation:
    """One earlier call, already cut to size."""

    call_id: str
    created_at: datetime | None
    ended_by: str | None
    summary: str | None
    lines: tuple[str, ...] = ()
    data_collected: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        when = self.created_at.date().isoformat() if self.created_at else "unknown date"
        header = f"Call on {when}" + (f" (ended: {self.ended_by})" if self.ended_by else "")
        parts = [header + ":"]
        if self.data_collected:
            collected = ", ".join(f"{key}={value}" for key, value in self.data_collected.items())
            parts.append(f"  data collected: {collected}")
        if self.summary:
            parts.append(f"  summary: {self.summary}")
        parts.extend(f"  {line}" for line in self.lines)
        return "\n".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summarise_past_call(document: CallDocument) -> PastConversation:
    if document.summary:
        return PastConversation(
            call_id=document.call_id,
            created_at=document.created_at,
            ended_by=document.ended_by,
            summary=_clip(document.summary, MAX_SUMMARY_CHARS),
            data_collected=document.data_collected,
        )
    spoken = [turn for turn in sorted(document.turns, key=lambda t: t.seq) if not turn.no_input]
    lines = tuple(
        f"{turn.role}: {_clip(turn.content, MAX_LINE_CHARS)}" for turn in spoken[-TURNS_PER_CALL:]
    )
    return PastConversation(
        call_id=document.call_id,
        created_at=document.created_at,
        ended_by=document.ended_by,
        summary=None,
        lines=lines,
        data_collected=document.data_collected,
    )


def summarise_past_calls(
    documents: Iterable[CallDocument], token_budget: int = MAX_CONTEXT_CHARS // CHARS_PER_TOKEN
) -> tuple[PastConversation, ...]:
    """Newest first, as many whole calls as fit in `token_budget` (estimated
    at `CHARS_PER_TOKEN` characters a token)."""
    max_chars = token_budget * CHARS_PER_TOKEN
    kept: list[PastConversation] = []
    used = 0
    for document in documents:
        conversation = summarise_past_call(document)
        size = len(conversation.describe())
        if used + size > max_chars:
            break
        kept.append(conversation)
        used += size
    return tuple(kept)
