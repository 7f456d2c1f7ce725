"""Test doubles and builders for dialog's tests (imported by name: see conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument, Turn
from callbot.common.contracts import Event
from callbot.dialog.domain.actions import ModelAnswer, ModelUnavailable
from callbot.dialog.domain.passages import Passage
from callbot.dialog.domain.session import Session
from callbot.dialog.streamed_speech import StreamedSpeech

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

AGENT_DOCUMENT: dict[str, Any] = {
    "_id": "acme",
    "name": "Acme Support",
    "greeting": "Hi {recipient.name}, this is Ava from {agent.name}. What is your full name?",
    "prompt": "You are Ava from {agent.name}, calling {recipient.name} about {variables.topic}.",
    "few_shot": [
        {"role": "user", "content": "Sure, it's Grace Hopper."},
        {"role": "assistant", "content": "Thank you, Grace. What email should we use?"},
    ],
    "data_to_fill": [
        {"name": "full_name", "description": "full name", "type": "string"},
        {"name": "email", "description": "email address", "type": "email"},
        {"name": "callback_phone", "description": "callback phone number", "type": "phone"},
    ],
    "completion_message": "Thank you, {recipient.name}, I have everything. Goodbye!",
    "goodbye_message": "Thanks for your time. Goodbye!",
    "voicemail_message": "Hello, this is {agent.name}. We will call back.",
    "max_no_input": 3,
    "max_turns": 30,
    "max_duration_s": 300,
    "llm": {"timeout_s": 1.0},
    "past_calls": 3,
}


def make_agent(**changes: Any) -> Agent:
    return Agent.model_validate({**AGENT_DOCUMENT, **changes})


def make_call(
    call_id: str = "call-1",
    *,
    turns: Iterable[Turn] = (),
    status: str = "in-progress",
    created_at: datetime = T0,
    **fields: Any,
) -> CallDocument:
    return CallDocument.model_validate(
        {
            "_id": call_id,
            "call_sid": f"CA{call_id}",
            "agent_id": "acme",
            "to": "+14155550100",
            "recipient": {"name": "Ada"},
            "variables": {"topic": "your account"},
            "status": status,
            "created_at": created_at,
            "turns": [turn.model_dump() for turn in turns],
            **fields,
        }
    )


def make_session(agent: Agent | None = None, turns: Iterable[Turn] = (), **fields: Any) -> Session:
    return Session(
        call_id="call-1",
        agent=agent or make_agent(),
        recipient={"name": "Ada"},
        variables={"topic": "your account"},
        turns=list(turns),
        **fields,
    )


def said(seq: int, content: str, at: datetime = T0, *, no_input: bool = False) -> Turn:
    role = "assistant" if seq % 2 == 0 else "user"
    return Turn(seq=seq, role=role, content=content, at=at, no_input=no_input)


class ManualClock:
    """Wall-clock time the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingEvents:
    """An event sink that keeps what was published, in order."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, event: Event, *, timeout_s: float = 10.0) -> None:
        self.published.append(event)


class ScriptedModel:
    """A conversation model answering from a script; `None` means it failed.

    Given a `StreamedSpeech`, it streams its text word by word, then its tool
    calls (as a model does); with `hold_after_words` set, it waits on `go` after
    that many words, so a test can cancel it mid-answer."""

    def __init__(
        self, answers: Iterable[ModelAnswer | None] = (), hold_after_words: int | None = None
    ) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[Turn], Turn]] = []
        self.passages: list[list[Passage]] = []  # what each call had in its context
        self.hold_after_words = hold_after_words
        self.holding = asyncio.Event()
        self.go = asyncio.Event()

    async def answer(
        self,
        session: Session,
        heard: Turn,
        budget_s: float,
        speech: StreamedSpeech | None = None,
        passages: Sequence[Passage] = (),
    ) -> ModelAnswer:
        self.calls.append((list(session.turns), heard))
        self.passages.append(list(passages))
        answer = self.answers.pop(0) if self.answers else ModelAnswer(text="OK.")
        if answer is None:
            raise ModelUnavailable("scripted failure")
        if speech is not None:
            speech.begin_completion()
            for index, word in enumerate(answer.text.split(" ")):
                if index == self.hold_after_words:
                    self.holding.set()
                    await self.go.wait()
                await speech.model_text(word if index == 0 else f" {word}")
            if answer.actions:
                await speech.end_of_text()
        return answer
