"""The state of one live call, and the exchanges that change it.

A `Session` is built once per call (agent, recipient, variables and past
conversations are loaded then and never again) or rebuilt from the call
document by another replica. Decisions are computed as `Exchange` values
first and applied with `commit` only once their events are published, so a
failed publish never leaves the session ahead of the call document.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from callbot.common.agents import Agent, DataField, render_template
from callbot.common.calls import CallbackRequest, CallDocument, EndedBy, Turn
from callbot.common.fallback_lines import fallback_line_at
from callbot.dialog.domain.past_calls import PastConversation


@dataclass(frozen=True)
class Ending:
    ended_by: EndedBy
    reason: str
    callback_request: CallbackRequest | None = None


@dataclass(frozen=True)
class Rejection:
    """A recorded value (or tool call) that was not accepted, told to the model next turn."""

    field: str | None
    value: object
    reason: str


@dataclass(frozen=True)
class Exchange:
    """The turns one request adds (user and assistant, or the assistant alone),
    with the collected data after them and the ending they bring, if any."""

    turns: tuple[Turn, ...]
    data_collected: dict[str, Any]
    data_complete: bool
    ending: Ending | None = None
    rejections: tuple[Rejection, ...] = ()

    @property
    def spoken(self) -> Turn:
        return self.turns[-1]


@dataclass
class Session:
    call_id: str
    agent: Agent
    recipient: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    past_conversations: tuple[PastConversation, ...] = ()
    turns: list[Turn] = field(default_factory=list)
    data_collected: dict[str, Any] = field(default_factory=dict)
    # What earlier calls collected (the recipient record), for the agent's fields.
    known_data: dict[str, Any] = field(default_factory=dict)
    ended_by: EndedBy | None = None
    rejections: tuple[Rejection, ...] = ()

    @classmethod
    def from_document(
        cls,
        document: CallDocument,
        agent: Agent,
        past_conversations: tuple[PastConversation, ...],
    ) -> Session:
        session = cls(
            call_id=document.call_id,
            agent=agent,
            recipient=dict(document.recipient),
            variables=dict(document.variables),
            past_conversations=past_conversations,
        )
        session.catch_up(document)
        return session

    def catch_up(self, document: CallDocument) -> None:
        """Take the turns and data another replica added (persisted in `document`)."""
        document_is_current = document_next_seq(document) >= self.next_seq
        self.turns = _merge_turns(self.turns, document.turns)
        if document_is_current:
            self.data_collected = dict(document.data_collected)
            self.ended_by = document.ended_by or self.ended_by

    def render(self, template: str) -> str:
        return render_template(
            template,
            agent_name=self.agent.name,
            recipient=self.recipient,
            variables=self.variables,
        )

    @property
    def next_seq(self) -> int:
        return self.turns[-1].seq + 1 if self.turns else 0

    def turn(self, seq: int) -> Turn | None:
        return next((turn for turn in self.turns if turn.seq == seq), None)

    @property
    def answered_at(self) -> datetime | None:
        return self.turns[0].at if self.turns else None

    def missing_fields(self, data: dict[str, Any] | None = None) -> list[DataField]:
        collected = self.data_collected if data is None else data
        return [item for item in self.agent.data_to_fill if item.name not in collected]

    def is_complete(self, data: dict[str, Any]) -> bool:
        """The fields that finish the call are collected: the required ones, or
        every field when none is marked required."""
        fields = self.agent.data_to_fill
        finishing = [item for item in fields if item.required] or list(fields)
        return all(item.name in data for item in finishing)

    def no_input_streak(self, then: Iterable[Turn] = ()) -> int:
        """Empty user turns in a row at the end of the conversation (plus `then`)."""
        streak = 0
        for turn in [*self.turns, *then]:
            if turn.role != "user":
                continue
            streak = streak + 1 if turn.no_input else 0
        return streak

    def heard_fallback(self, seq: int, at: datetime) -> None:
        """The callee heard gateway's fallback line at `seq`, not what this
        session holds there (a reply given after gateway's deadline, or
        nothing): the line takes its place, so the next turn builds on what
        was said, and an ending that came with the replaced line is void (the
        call went on). The data collected from the callee's words stays. A
        fallback line held there already stays (it may be cut where the callee
        spoke over it, `heard_interruption`), and the ending is void all the same."""
        held = self.turn(seq)
        if held is not None and held.seq == self.turns[-1].seq:
            self.ended_by = None
        if held is not None and held.fallback:
            return
        line = Turn(seq=seq, role="assistant", content=fallback_line_at(seq), at=at, fallback=True)
        self.turns = _merge_turns(self.turns, (line,))

    def heard_interruption(self, line: Turn) -> None:
        """The callee spoke over the line at `line.seq`: keep only what they heard."""
        self.turns = _merge_turns(self.turns, (line,))

    def commit(self, exchange: Exchange) -> None:
        self.turns = _merge_turns(self.turns, exchange.turns)
        self.data_collected = dict(exchange.data_collected)
        self.rejections = exchange.rejections
        if exchange.ending is not None:
            self.ended_by = exchange.ending.ended_by


def with_spoken_line(exchange: Exchange, line: str) -> Exchange:
    """The exchange with its spoken line's text replaced by `line`."""
    if line == exchange.spoken.content:
        return exchange
    spoken = exchange.spoken.model_copy(update={"content": line})
    return replace(exchange, turns=(*exchange.turns[:-1], spoken))


def document_next_seq(document: CallDocument) -> int:
    """The seq after the last turn the document holds."""
    return max((turn.seq for turn in document.turns), default=-1) + 1


def _merge_turns(ours: Iterable[Turn], theirs: Iterable[Turn]) -> list[Turn]:
    """Union by seq, in seq order; `theirs` wins where both have a seq, except
    over a line cut where the callee interrupted it (what they heard stays)."""
    by_seq = {turn.seq: turn for turn in ours}
    for turn in theirs:
        held = by_seq.get(turn.seq)
        if held is None or turn.interrupted or not held.interrupted:
            by_seq[turn.seq] = turn
    return [by_seq[seq] for seq in sorted(by_seq)]
